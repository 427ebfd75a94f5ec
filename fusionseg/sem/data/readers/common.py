"""What every reader shares: `ReaderError`, grey images normalised to [0, 1], and the checks that turn point
spectra (N, C) or a dense spectrum image (H, W, C) of counts into a `Sample` (`points_sample`, `dense_sample`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from fusionseg.errors import FusionSegError
from fusionseg.sample import Sample, SampleMeta, compact_counts
from fusionseg.sem.meta import sem_meta

log = logging.getLogger(__package__)  # the readers' one logger, as before the split

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
IMAGE_NAMES = ("bse", "image", "sem", "se")
DEFAULT_BEAM_KEV = 20.0


class ReaderError(FusionSegError):
    """An input file cannot be turned into a `Sample`; the message names the problem and the fix."""


# ----------------------------------------------------------------------------- images
def normalise_image(data: np.ndarray) -> np.ndarray:
    """(H, W) float32 in [0, 1]: integers divided by their dtype maximum (as Repka et al. do), floats min-max."""
    data = np.asarray(data)
    if np.iscomplexobj(data) or not (np.issubdtype(data.dtype, np.number) or data.dtype == bool):
        raise ReaderError(f"the image has dtype {data.dtype}; give a real-valued grey image (integers or floats).")
    if data.dtype == bool:
        data = data.astype(np.uint8)
    if data.ndim == 3:  # RGB(A) image: mean of the colour channels
        data = data[..., :3].mean(-1) if data.shape[-1] in (3, 4) else data[0]
    if data.ndim != 2:
        raise ReaderError(f"the image has shape {data.shape}; expected a 2-D grey image (H, W).")
    if np.issubdtype(data.dtype, np.integer):
        return (data / np.iinfo(data.dtype).max).astype(np.float32)
    data = data.astype(np.float32)
    if not np.isfinite(data).all():
        raise ReaderError("the image contains NaN or inf values; fill them before segmenting.")
    lo, hi = float(data.min()), float(data.max())
    return np.zeros_like(data) if hi <= lo else (data - lo) / (hi - lo)


def read_image_file(path: Path) -> np.ndarray:
    """A grey image file (TIFF via tifffile, else scikit-image) as float32 (H, W) in [0, 1]."""
    path = Path(path)
    if not path.is_file():
        raise ReaderError(f"image file {path} does not exist; pass the BSE image with --image PATH.")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            data = tifffile.imread(path)
        else:
            from skimage import io as skio

            data = skio.imread(path)
    except Exception as err:
        raise ReaderError(f"cannot read image {path} ({err}); give a valid TIFF or PNG file.") from err
    return normalise_image(np.squeeze(data))


def dense_sample(image: np.ndarray, cube: np.ndarray, meta: SampleMeta, target: np.ndarray | None = None) -> Sample:
    """A point-free `Sample` holding the dense cube (H, W, C) in ``meta.domain.dense_spectra`` (`SemMeta`)."""
    if cube.ndim != 3:
        raise ReaderError(f"a dense spectrum image must be (H, W, C), got shape {cube.shape}.")
    if cube.shape[:2] != image.shape:
        raise ReaderError(
            f"the EDS map is {cube.shape[0]}x{cube.shape[1]} pixels but the image is {image.shape[0]}x"
            f"{image.shape[1]}; give the BSE image acquired with this map (same pixel grid)."
        )
    if not np.issubdtype(np.dtype(cube.dtype), np.number) or np.iscomplexobj(np.empty(0, cube.dtype)):
        raise ReaderError(f"the EDS map has dtype {cube.dtype}; spectra must be real counts.")
    check_cube(cube)
    measured = np.asarray(cube.sum(-1, dtype=np.float64) > 0)  # zero counts: the beam never stopped there
    if not measured.any():
        raise ReaderError("every spectrum of the EDS map has zero counts; the file holds no EDS signal.")
    sem = sem_meta(meta)
    sem.dense_spectra, sem.measured_mask = cube, measured
    meta.domain = sem
    return Sample(
        image=image[None],
        point_coords=np.zeros((0, 2), np.float32),
        point_features=np.zeros((0, cube.shape[-1]), np.float32),
        meta=meta,
        target=target,
    )


def check_points(coords: np.ndarray, spectra: np.ndarray) -> None:
    """Shapes, finiteness and counts >= 0 of point positions (N, 2) and spectra (N, C), before anything else."""
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise ReaderError(f"point positions must be (N, 2) (row, col), got shape {coords.shape}.")
    if spectra.ndim != 2:
        raise ReaderError(f"point spectra must be (N, channels), got shape {spectra.shape}.")
    if len(coords) != len(spectra):
        raise ReaderError(f"{len(coords)} point positions but {len(spectra)} spectra; give one position per spectrum.")
    for what, arr in (("position", coords), ("spectrum", spectra)):
        if np.issubdtype(arr.dtype, np.integer):  # integers are finite (a file's uint16 counts: no pass over them)
            continue
        bad = ~np.isfinite(arr).all(1)
        if bad.any():
            raise ReaderError(
                f"{int(bad.sum())} point {what}s hold NaN or inf (first: point {int(np.flatnonzero(bad)[0])}); "
                "drop or re-measure those points."
            )
    unsigned = np.issubdtype(spectra.dtype, np.unsignedinteger)
    neg = np.zeros(len(spectra), dtype=bool) if unsigned else (spectra < 0).any(1)
    if neg.any():
        raise ReaderError(
            f"{int(neg.sum())} spectra hold negative counts (first: point {int(np.flatnonzero(neg)[0])}, min "
            f"{float(spectra.min()):g}); X-ray counts are >= 0: export raw counts, not background-subtracted spectra."
        )


def check_cube(cube: Any) -> None:
    """NaN/inf or negative counts anywhere in a dense (H, W, C) spectrum image, row block by row block."""
    step = max(1, int(2**24 // max(1, np.prod(cube.shape[1:]))))  # ~16 M values per block
    for r in range(0, cube.shape[0], step):
        block = np.asarray(cube[r : r + step])
        if not np.isfinite(block).all():
            raise ReaderError(f"the EDS map holds NaN or inf counts (from row {r}); re-export the spectrum image.")
        if block.min() < 0:
            raise ReaderError(
                f"the EDS map holds negative counts (min {float(block.min()):g}, from row {r}); X-ray counts are "
                ">= 0: export raw counts, not background-subtracted data."
            )


def points_sample(
    image: np.ndarray,
    coords: np.ndarray,
    spectra: np.ndarray,
    meta: SampleMeta,
    target: np.ndarray | None = None,
) -> Sample:
    """A `Sample` of measured points; spectra with zero counts are dropped (not measured). ``spectra`` in the file's
    dtype: checked and filtered before the `compact_counts` the `Sample` holds."""
    check_points(coords, spectra)
    h, w = image.shape
    inside = (coords[:, 0] >= -0.5) & (coords[:, 0] <= h - 0.5) & (coords[:, 1] >= -0.5) & (coords[:, 1] <= w - 0.5)
    if not inside.all():
        raise ReaderError(
            f"{int((~inside).sum())} point positions fall outside the {h}x{w} image; positions must be pixels "
            "of this image (x = column, y = row), not stage coordinates."
        )
    measured = spectra.sum(1) > 0
    if not measured.any():
        raise ReaderError("every point spectrum has zero counts; the input holds no EDS signal.")
    if not measured.all():  # only then index: boolean indexing copies every spectrum
        log.warning("dropping %d point spectra with zero counts (not measured)", int((~measured).sum()))
        coords, spectra = coords[measured], spectra[measured]
    spectra = compact_counts(spectra)  # int16 whole counts, else float32
    return Sample(image=image[None], point_coords=coords, point_features=spectra, meta=meta, target=target)
