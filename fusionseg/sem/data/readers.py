"""Readers of real SEM data: vendor EDS files (RosettaSciIO), plain folders, the paper's layout.

Every reader returns a `Sample` with the BSE image normalised to [0, 1], the calibration
(`EnergyAxis` in eV, beam energy in keV, pixel size in µm) from the file, and either

* measured points (``point_coords`` (N, 2) (row, col) pixels, ``point_features`` (N, C) counts), or
* a dense spectrum image kept in ``meta.domain.dense_spectra`` ((H, W, C) counts: numpy, or a lazy
  dask array above `LAZY_MIN_BYTES` when the RosettaSciIO reader takes ``lazy=True``) with no points
  yet: `fusionseg.sem.segment.sparse_acquisition` simulates a sparse acquisition from it.

``meta.domain`` (`SemMeta`) also holds ``measured_mask`` ((H, W) bool, pixels with a non-zero spectrum),
``nav_axes`` (the navigation axes as RosettaSciIO dicts), the EDS signal's metadata and ``source_path``.

Supported inputs (`read_input`):

* any file RosettaSciIO reads with an EDS signal: Bruker ``.bcf``, EDAX ``.spd``, JEOL, ``.hspy``
  (needs h5py), ... (plugin picked by extension); the BSE image from the same file (picked by
  title) or a separate TIFF/PNG (``image=``);
* a folder: an image (``bse.png``/``bse.tif``/``image.*``) plus ``eds.npz`` (``coords`` (N, 2)
  (row, col) or ``x``/``y``, ``spectra`` (N, C), or a dense ``spectra`` (H, W, C); calibration keys
  ``offset_ev``, ``scale_ev``, ``beam_energy_kev``) or ``points.csv`` (columns ``x``, ``y`` in pixels and
  either ``spectrum`` = path of an EMSA ``.msa`` file or channel columns ``c0..cN``), and an optional
  ``phases.tif(f)`` target (integer phase ids), as in the code of Repka et al. (2025).
"""

from __future__ import annotations

import csv
import importlib
import inspect
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fusionseg.data.io import split_paths
from fusionseg.errors import FusionSegError
from fusionseg.inference import FieldSize
from fusionseg.registry import DATA_SOURCES
from fusionseg.sample import IGNORE_INDEX, Sample, SampleError, SampleMeta, compact_counts
from fusionseg.sem.meta import EnergyAxis, SemMeta, sem_meta

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
BSE_TITLE_HINTS = ("bse", "asb", "bsd", "backscatter", "cbs", "z contrast", "comp")
IMAGE_NAMES = ("bse", "image", "sem", "se")
DEFAULT_BEAM_KEV = 20.0
LAZY_MIN_BYTES = 256 * 2**20
"""Dense EDS cubes larger than this stay lazy (dask, read chunk by chunk) when the reader supports it."""


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


# ----------------------------------------------------------------------------- RosettaSciIO
def _rsciio_reader(path: Path) -> Any:
    """The ``file_reader`` of the RosettaSciIO plugin for the file's extension."""
    import rsciio

    ext = path.suffix.lstrip(".").lower()
    plugins = [p for p in rsciio.IO_PLUGINS if ext in (e.lower() for e in p["file_extensions"])]
    if not plugins:
        raise ReaderError(
            f"no RosettaSciIO reader handles '.{ext}' files ({path.name}); convert it to a supported format "
            "(.bcf, .spd, .h5oina, .hspy, .msa, ...) or use a folder with an image and points.csv."
        )
    errors = []
    for plugin in plugins:  # several plugins may share an extension (.h5): the first that loads wins
        try:
            return importlib.import_module(plugin["api"]).file_reader
        except ImportError as err:
            errors.append(f"{plugin['name']}: {err}")
    raise ReaderError(f"the RosettaSciIO reader for '.{ext}' cannot be imported ({'; '.join(errors)}); install it.")


# Optional dependencies of RosettaSciIO readers, by file extension -> fusionseg extra that installs them.
READER_EXTRAS = {"pts": "jeol", "asw": "jeol", "img": "jeol", "map": "jeol", "eds": "jeol"}


def missing_dependency_message(path: Path, err: ImportError) -> str:
    """A missing optional package named as such, with the pip command that installs it."""
    ext = path.suffix.lstrip(".").lower()
    package = getattr(err, "name", None) or str(err)
    extra = READER_EXTRAS.get(ext)
    fix = f"pip install 'fusionseg[{extra}]'" if extra else f"pip install {package}"
    return f"reading .{ext} files needs the optional package {package!r}, which is not installed: {fix}"


def read_signals(path: Path) -> list[dict]:
    """RosettaSciIO signal dicts of a vendor file (Bruker .bcf through `rsciio.bruker.file_reader`)."""
    path = Path(path)
    if not path.is_file():
        raise ReaderError(f"input {path} does not exist; give an EDS file (.bcf, .spd, ...) or a folder.")
    reader = _rsciio_reader(path)
    lazy = {"lazy": True} if "lazy" in inspect.signature(reader).parameters else {}  # dask: the cube stays on disk
    try:
        signals = reader(str(path), **lazy)
    except ImportError as err:  # an optional dependency of this vendor's reader (JEOL .pts needs numba)
        raise ReaderError(missing_dependency_message(path, err)) from err
    except Exception as err:
        raise ReaderError(
            f"cannot read {path.name}: the file is unreadable or corrupt ({type(err).__name__}: {err}). "
            "Check the file opens in the vendor software, or export it again."
        ) from err
    return signals if isinstance(signals, list) else [signals]


def _title(signal: dict) -> str:
    return str(signal.get("metadata", {}).get("General", {}).get("title", ""))


def _is_eds(signal: dict) -> bool:
    """A signal whose last (signal) axis is an energy axis (keV or eV)."""
    axes = signal.get("axes", [])
    if not axes:
        return False
    units = str(axes[-1].get("units", "")).lower()
    signal_type = str(signal.get("metadata", {}).get("Signal", {}).get("signal_type", "")).upper()
    return units in ("kev", "ev") or signal_type.startswith("EDS")


def energy_axis_from(axis: dict) -> EnergyAxis:
    """`EnergyAxis` in eV from a RosettaSciIO axis dict (which usually gives keV)."""
    units = str(axis.get("units", "")).strip().lower()
    factor = {"kev": 1000.0, "ev": 1.0}.get(units)
    scale, offset = axis.get("scale"), axis.get("offset", 0.0)
    if factor is None or scale is None or not np.isfinite(scale) or scale <= 0 or scale == 1.0 and offset == 0:
        raise ReaderError(
            f"the spectrum axis has no energy calibration (units={axis.get('units')!r}, scale={scale!r}, "
            f"offset={offset!r}); pass energy_axis=EnergyAxis(size, scale_ev, offset_ev) from the acquisition notes."
        )
    return EnergyAxis(size=int(axis["size"]), scale_ev=float(scale) * factor, offset_ev=float(offset) * factor)


def beam_energy_from(metadata: dict) -> float | None:
    """Beam energy in keV from HyperSpy-style metadata (SEM or TEM), or None."""
    inst = metadata.get("Acquisition_instrument", {})
    for key in ("SEM", "TEM"):
        value = inst.get(key, {}).get("beam_energy")
        if value is not None and float(value) > 0:
            return float(value)
    return None


def pixel_size_from(axes: Sequence[dict]) -> float:
    """Pixel size in µm from the navigation axes (1.0 when uncalibrated)."""
    to_um = {"µm": 1.0, "um": 1.0, "micron": 1.0, "nm": 1e-3, "mm": 1e3, "m": 1e6}
    if not axes:
        return 1.0
    factor = to_um.get(str(axes[0].get("units", "")).strip())
    return float(axes[0].get("scale", 1.0)) * factor if factor else 1.0


def pick_image(signals: list[dict], bse_title: str | None = None) -> dict | None:
    """The BSE image among 2-D non-EDS signals: by ``bse_title`` (substring), else a BSE-like title, else the first."""
    images = [s for s in signals if not _is_eds(s) and s["data"].ndim == 2]
    if bse_title is not None:
        chosen = [s for s in images if bse_title.lower() in _title(s).lower()]
        if not chosen:
            titles = ", ".join(repr(_title(s)) for s in images) or "none"
            raise ReaderError(f"no image titled {bse_title!r} in the file (images: {titles}); pick one of those.")
        return chosen[0]
    for hint in BSE_TITLE_HINTS:
        for s in images:
            if hint in _title(s).lower():
                return s
    return images[0] if images else None


def sample_from_signals(
    signals: list[dict],
    image: np.ndarray | None = None,
    bse_title: str | None = None,
    energy_axis: EnergyAxis | None = None,
    beam_energy_kev: float | None = None,
    name: str = "",
) -> Sample:
    """A `Sample` from RosettaSciIO signal dicts: dense cube kept in ``meta.domain``, or measured points."""
    eds = [s for s in signals if _is_eds(s)]
    if not eds:
        titles = ", ".join(repr(_title(s)) for s in signals)
        raise ReaderError(f"the file holds no EDS signal (signals: {titles}); give a file with an EDS spectrum image.")
    eds_signal = max(eds, key=lambda s: s["data"].size)
    data = eds_signal["data"]  # numpy, or a lazy dask array read block by block later
    if hasattr(data, "compute") and data.nbytes <= LAZY_MIN_BYTES:
        data = np.asarray(data)  # small cubes: plain numpy, simpler for every consumer
    axis = energy_axis or energy_axis_from(eds_signal["axes"][-1])
    if data.shape[-1] != axis.size:
        raise ReaderError(f"the EDS data has {data.shape[-1]} channels but its calibration says {axis.size}.")
    if image is None:
        chosen = pick_image(signals, bse_title)
        if chosen is None:
            raise ReaderError("the file holds no electron image; give the BSE image with --image PATH (TIFF/PNG).")
        image = normalise_image(np.asarray(chosen["data"]))
    beam = beam_energy_kev or beam_energy_from(eds_signal.get("metadata", {}))
    if beam is None:
        log.warning("no beam energy in the file's metadata; assuming %.0f keV (override with beam_energy_kev)", 20)
        beam = DEFAULT_BEAM_KEV
    nav_axes = [a for a in eds_signal["axes"][:-1]]
    meta = SampleMeta(
        domain=SemMeta(
            energy_axis=axis,
            beam_energy_kev=float(beam),
            nav_axes=nav_axes,
            eds_metadata=eds_signal.get("metadata", {}),
            original_metadata=eds_signal.get("original_metadata", {}),
        ),
        pixel_size_um=pixel_size_from(nav_axes),
        name=name,
    )
    if data.ndim == 3:
        return dense_sample(image, data, meta)
    data = np.asarray(data)
    raise ReaderError(
        f"the EDS signal has shape {data.shape} (not a spectrum image); for point spectra use a folder with "
        "the image and points.csv listing each spectrum file with its x, y pixel position."
    )


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


# ----------------------------------------------------------------------------- folders
def _find(folder: Path, stems: Sequence[str], suffixes: Sequence[str]) -> Path | None:
    for stem in stems:
        for suffix in suffixes:
            path = folder / f"{stem}{suffix}"
            if path.is_file():
                return path
    return None


def read_target(path: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    """Integer phase map (H, W) and class names ``phase-<id>`` for ids 0..max (negative = unlabelled)."""
    import tifffile

    try:
        phases = np.asarray(tifffile.imread(path))
    except Exception as err:
        raise ReaderError(f"cannot read the phase map {path} ({err}); give an integer TIFF.") from err
    if not np.issubdtype(phases.dtype, np.integer):
        raise ReaderError(f"the phase map {path.name} has dtype {phases.dtype}; phase ids must be integers.")
    target = np.where(phases < 0, IGNORE_INDEX, phases).astype(np.int64)
    return target, tuple(f"phase-{i}" for i in range(int(target.max()) + 1))


def _calibration(values: dict, n_channels: int, energy_axis: EnergyAxis | None) -> EnergyAxis:
    if energy_axis is not None:
        return energy_axis
    if "offset_ev" not in values or "scale_ev" not in values:
        raise ReaderError(
            "the spectra have no energy calibration; add offset_ev and scale_ev (eV) to eds.npz or a meta.json "
            "beside it, or pass energy_axis=EnergyAxis(size, scale_ev, offset_ev)."
        )
    return EnergyAxis(size=n_channels, scale_ev=_scalar(values, "scale_ev"), offset_ev=_scalar(values, "offset_ev"))


def _scalar(values: dict, key: str) -> float:
    """A calibration number from eds.npz/meta.json; range checks follow in `EnergyAxis`/`SampleMeta`."""
    try:
        return float(np.asarray(values[key]).item())
    except (TypeError, ValueError) as err:
        raise ReaderError(f"calibration value {key}={values[key]!r} is not a single number ({err}).") from None


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as npz:
            return {k: npz[k] for k in npz.files}
    except Exception as err:
        raise ReaderError(f"cannot read {path} ({err}); give a NumPy .npz archive.") from err


def _npz_points(values: dict[str, np.ndarray]) -> tuple[np.ndarray | None, np.ndarray]:
    spectra = values.get("spectra", values.get("features", values.get("eds")))
    if spectra is None:
        raise ReaderError(f"eds.npz has no 'spectra' array (keys: {sorted(values)}); store spectra as 'spectra'.")
    spectra = _numeric(spectra, "spectra")
    if spectra.ndim not in (2, 3) or spectra.shape[-1] == 0:
        raise ReaderError(
            f"eds.npz 'spectra' has shape {spectra.shape}; store point spectra as (N, channels) or a dense map as "
            "(H, W, channels)."
        )
    if "coords" in values:
        return _numeric(values["coords"], "coords").astype(np.float64), spectra
    if "x" in values and "y" in values:
        x, y = _numeric(values["x"], "x").ravel(), _numeric(values["y"], "y").ravel()
        if len(x) != len(y):
            raise ReaderError(f"eds.npz has {len(x)} x but {len(y)} y values; give one (x, y) per spectrum.")
        return np.stack([y, x], 1).astype(np.float64), spectra
    if spectra.ndim != 3:
        raise ReaderError(
            f"eds.npz 'spectra' has shape {spectra.shape} but no 'coords' (or x, y); give point positions, or a "
            "dense (H, W, channels) map."
        )
    return None, spectra


def _numeric(arr: Any, key: str) -> np.ndarray:
    arr = np.asarray(arr)
    if np.iscomplexobj(arr) or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ReaderError(f"eds.npz '{key}' has dtype {arr.dtype}; store real numbers.")
    return arr


def _read_msa(path: Path) -> tuple[np.ndarray, EnergyAxis, float | None]:
    from rsciio.msa import file_reader

    try:
        signal = file_reader(str(path))[0]
    except Exception as err:
        raise ReaderError(f"cannot read the EMSA spectrum {path} ({err}); check the file.") from err
    return (
        np.asarray(signal["data"], np.float64),
        energy_axis_from(signal["axes"][-1]),
        beam_energy_from(signal["metadata"]),
    )


def _read_points_csv(path: Path, energy_axis: EnergyAxis | None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Positions (N, 2) (row, col), spectra (N, C), calibration values from points.csv."""
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            header, rows = reader.fieldnames, list(reader)
    except (UnicodeDecodeError, csv.Error) as err:
        raise ReaderError(f"cannot read {path} as CSV ({err}); save it as UTF-8 comma-separated text.") from err
    header = [h.strip() for h in header or []]
    if not {"x", "y"} <= set(header):
        raise ReaderError(
            f"{path.name} needs a header row with columns x, y (pixels) and spectrum or c0..cN; its header is {header}."
        )
    if not rows:
        raise ReaderError(f"{path.name} has a header but no data rows; add one row per measured point.")
    rows = [{k.strip(): v for k, v in r.items() if k is not None} for r in rows]
    coords = _csv_numbers(path, rows, ["y", "x"])
    if "spectrum" in header:
        for i, r in enumerate(rows):
            if not (r.get("spectrum") or "").strip():
                raise ReaderError(f"{path.name} row {i + 2}, column 'spectrum' is empty; name each point's .msa file.")
        read = [_read_msa(path.parent / r["spectrum"].strip()) for r in rows]
        if len({(len(sp), ax) for sp, ax, _ in read}) > 1:
            raise ReaderError(
                f"the .msa spectra listed in {path.name} differ in channel count or calibration; export them with "
                "the same settings."
            )
        spectra = np.stack([sp for sp, _, _ in read])
        beams = [b for _, _, b in read if b]
        values = {"offset_ev": read[0][1].offset_ev, "scale_ev": read[0][1].scale_ev}
        if beams:
            values["beam_energy_kev"] = beams[0]
        return coords, spectra, values
    channels = sorted((k for k in rows[0] if k.startswith("c") and k[1:].isdigit()), key=lambda k: int(k[1:]))
    if not channels:
        raise ReaderError(f"{path.name} has neither a 'spectrum' column nor channel columns c0..cN.")
    spectra = _csv_numbers(path, rows, channels)
    return coords, spectra, _read_meta_json(path.parent)


def _csv_numbers(path: Path, rows: list[dict], columns: list[str]) -> np.ndarray:
    """(len(rows), len(columns)) float64 of CSV cells; a missing or non-numeric cell names file, row and column."""
    out = np.empty((len(rows), len(columns)))
    for i, row in enumerate(rows):
        for j, col in enumerate(columns):
            cell = row.get(col)
            try:
                out[i, j] = float(cell)
            except (TypeError, ValueError):
                raise ReaderError(
                    f"{path.name} row {i + 2} (line {i + 2} counting the header), column {col!r}: {cell!r} is not a "
                    "number; fix or delete that row."
                ) from None
    return out


def _read_meta_json(folder: Path) -> dict:
    """Calibration values of ``meta.json`` beside the data (empty without one)."""
    path = folder / "meta.json"
    if not path.is_file():
        return {}
    try:
        values = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise ReaderError(f"{path} is not valid JSON ({err}); fix it or delete it.") from err
    if not isinstance(values, dict):
        raise ReaderError(f'{path} must hold a JSON object such as {{"offset_ev": -470, "scale_ev": 10}}.')
    return values


def read_folder(
    folder: Path,
    image: Path | None = None,
    energy_axis: EnergyAxis | None = None,
    beam_energy_kev: float | None = None,
) -> Sample:
    """A `Sample` from a folder: image + (eds.npz | points.csv) + optional phases.tif(f) target.

    Without any spectra the Sample has no points (an image-only field, e.g. the public Repka field);
    ``meta.domain.has_eds`` says which.
    """
    folder = Path(folder)
    img_path = Path(image) if image else _find(folder, IMAGE_NAMES, IMAGE_SUFFIXES)
    if img_path is None:
        raise ReaderError(f"no image in {folder} (looked for bse.png, bse.tif, image.png, ...); pass --image PATH.")
    img = read_image_file(img_path)
    target, class_names = None, ()
    phases = _find(folder, ("phases", "labels", "target"), (".tiff", ".tif"))
    if phases is not None:
        target, class_names = read_target(phases)
        if target.shape != img.shape:
            raise ReaderError(f"{phases.name} is {target.shape} but the image is {img.shape}; they must match.")
    source = {"source_path": str(folder)}
    meta = SampleMeta(class_names=class_names, name=folder.name, domain=SemMeta(has_eds=False, **source))
    npz, pts_csv = folder / "eds.npz", folder / "points.csv"
    if npz.is_file():
        values = {**_read_meta_json(folder), **_read_npz(npz)}
        coords, spectra = _npz_points(values)
    elif pts_csv.is_file():
        coords, spectra, values = _read_points_csv(pts_csv, energy_axis)
    else:
        empty = np.zeros((0, 2), np.float32)
        return Sample(image=img[None], point_coords=empty, point_features=empty[:, :0], meta=meta, target=target)
    beam = beam_energy_kev or (_scalar(values, "beam_energy_kev") if "beam_energy_kev" in values
                               else DEFAULT_BEAM_KEV)  # fmt: skip
    axis = _calibration(values, spectra.shape[-1], energy_axis)
    meta.domain = SemMeta(axis, beam, has_eds=True, **source)  # checks beam energy > 0
    if coords is None:
        return dense_sample(img, spectra, meta, target)
    return points_sample(img, coords, spectra, meta, target)


def peek_folder_size(folder: Path, image: Path | None = None) -> FieldSize | None:
    """A folder field's `FieldSize` from its files' headers (the image's shape, ``eds.npz``'s spectra array), without
    reading their data, so a memory budget too small for the field is refused before the read (which alone may
    exceed it: 8.4 GiB for an 8192² field while spectra were read into float32). Integer counts of 16 bits or fewer
    are taken to fit int16 (`compact_counts`); the check after the read is exact. None when the headers do not say
    (points.csv, an unreadable file: the read then reports the problem)."""
    folder = Path(folder)
    img_path = Path(image) if image else _find(folder, IMAGE_NAMES, IMAGE_SUFFIXES)
    npz = folder / "eds.npz"
    if img_path is None or not npz.is_file():
        return None
    try:
        height, width = _image_shape(img_path)
        shape, dtype = _npz_array_header(npz, ("spectra", "features", "eds"))
    except Exception:  # a header we cannot parse: the full read names the problem
        return None
    if len(shape) == 3:  # a dense (H, W, C) map: held in memory whole, with its measured mask
        return FieldSize(height, width, 0, int(np.prod(shape)) * dtype.itemsize + height * width, folder.name)
    compact = np.issubdtype(dtype, np.integer) and dtype.itemsize <= 2  # `compact_counts` (uint16: if <= 32767)
    return FieldSize(height, width, int(np.prod(shape)), 0, folder.name, 2 if compact else 4, dtype.itemsize)


def _image_shape(path: Path) -> tuple[int, int]:
    """(H, W) of an image file from its header (TIFF: tifffile's first series; others: Pillow), as
    `normalise_image` will read it: a trailing axis of 3-4 is colour, another leading axis a stack (first image)."""
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        with tifffile.TiffFile(path) as tif:
            shape = tuple(n for n in tif.series[0].shape if n != 1)  # np.squeeze
    else:
        from PIL import Image

        with Image.open(path) as img:
            shape = (img.height, img.width)
    if len(shape) == 3:
        shape = shape[:2] if shape[-1] in (3, 4) else shape[1:]
    height, width = shape
    return int(height), int(width)


def _npz_array_header(path: Path, keys: Sequence[str]) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of the first of ``keys`` stored in an ``.npz`` archive, from its ``.npy`` header."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        key = next(k for k in keys if f"{k}.npy" in archive.namelist())
        with archive.open(f"{key}.npy") as member:
            version = np.lib.format.read_magic(member)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(member)
    return tuple(shape), np.dtype(dtype)


# ----------------------------------------------------------------------------- entry point
def read_input(
    path: str | Path,
    image: str | Path | None = None,
    bse_title: str | None = None,
    energy_axis: EnergyAxis | None = None,
    beam_energy_kev: float | None = None,
) -> Sample:
    """Read any supported input (vendor EDS file, ``.hspy``, folder) into a `Sample`.

    Args:
        path: EDS file or folder.
        image: separate BSE/SE image (TIFF/PNG) on the EDS map's pixel grid; overrides the file's image.
        bse_title: pick the file's image whose title contains this (default: a BSE-like title).
        energy_axis / beam_energy_kev: override the file's calibration (eV) / beam energy (keV).
    """
    path = Path(path)
    try:
        if path.is_dir():
            return read_folder(path, image, energy_axis, beam_energy_kev)
        img = read_image_file(Path(image)) if image is not None else None
        signals = read_signals(path)
        try:
            sample = sample_from_signals(signals, img, bse_title, energy_axis, beam_energy_kev, name=path.stem)
        except (ReaderError, SampleError):
            raise
        except Exception as err:  # lazy vendor data decoded here: a truncated copy fails inside the decompressor
            raise ReaderError(
                f"cannot read {path.name}: its data are damaged, truncated or corrupt ({type(err).__name__}: {err}). "
                "Copy the file again from the acquisition computer, or export it again from the vendor software."
            ) from err
    except SampleError as err:  # the data read fine but are not physical: say which input
        raise ReaderError(f"{path}: {err}") from err
    sem = sem_meta(sample.meta)
    sem.source_path = str(path)
    sample.meta.domain = sem
    return sample


@DATA_SOURCES.register("eds-file", "sem-file")
class EDSFileSource:
    """Registered data source over real files: ``DATA_SOURCES.create("eds-file", paths=[...])[i] -> Sample``.

    Extra keyword arguments (``image``, ``bse_title``, ``energy_axis``, ``beam_energy_kev``) go to
    `read_input`. Through `FusionSegDataModule` (``split``, ``num_fields``, ``seed``) each split serves
    its own files (`fusionseg.data.io.split_paths`: disjoint shares, ``split_shares``, or ``paths`` as a
    mapping split -> files); dense files are subsampled at ``eds_fraction`` by ``sampler``.
    """

    def __init__(
        self,
        paths: str | Path | Sequence[str | Path] | Mapping[str, Sequence[str | Path]],
        eds_fraction: float | None = None,
        sampler: str = "random",
        seed: int = 0,
        num_fields: int | None = None,
        split: str | None = None,
        split_shares: dict[str, float] | None = None,
        **read_kwargs: Any,
    ) -> None:
        if isinstance(paths, (str, Path)):
            paths = [paths]
        listed = paths if isinstance(paths, Mapping) else [Path(p) for p in paths]
        self.paths = split_paths(listed, split, num_fields, split_shares)
        self.eds_fraction, self.sampler, self.seed = eds_fraction, sampler, seed
        self.read_kwargs = read_kwargs

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Sample:
        sample = read_input(self.paths[index], **self.read_kwargs)
        if sem_meta(sample.meta).dense_spectra is not None and self.eds_fraction:
            from fusionseg.sem.data.acquisition import sparse_acquisition

            sample = sparse_acquisition(
                sample, fraction=self.eds_fraction, sampler=self.sampler, seed=self.seed + index
            )
        return sample


@DATA_SOURCES.register("sem-folder", "repka-folder")
class FolderSource(EDSFileSource):
    """Registered data source over folders (image + eds.npz/points.csv + phases.tiff)."""


__all__ = [
    "EDSFileSource",
    "FolderSource",
    "ReaderError",
    "beam_energy_from",
    "dense_sample",
    "energy_axis_from",
    "normalise_image",
    "pick_image",
    "points_sample",
    "read_folder",
    "read_image_file",
    "read_input",
    "read_signals",
    "sample_from_signals",
]
