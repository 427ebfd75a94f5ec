"""Plain folders (the layout of Repka et al. 2025): an image (``bse.png``/``bse.tif``/``image.*``) plus
``eds.npz`` (points (N, C) with ``coords`` (row, col) or ``x``/``y``, or a dense (H, W, C) map) or ``points.csv``
(``x``, ``y`` in pixels, ``spectrum`` = an EMSA ``.msa`` file or channels ``c0..cN``), calibration in ``offset_ev``,
``scale_ev`` (eV), ``beam_energy_kev`` (keV) or a ``meta.json``, and an optional ``phases.tif(f)`` target."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fusionseg.inference import FieldSize
from fusionseg.sample import IGNORE_INDEX, Sample, SampleMeta
from fusionseg.sem.data.readers.common import (
    DEFAULT_BEAM_KEV,
    IMAGE_NAMES,
    IMAGE_SUFFIXES,
    ReaderError,
    dense_sample,
    points_sample,
    read_image_file,
)
from fusionseg.sem.data.readers.vendor import beam_energy_from, energy_axis_from
from fusionseg.sem.meta import EnergyAxis, SemMeta


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
    position = ["y", "x"] if {"x", "y"} <= set(header) else ["row", "col"] if {"row", "col"} <= set(header) else None
    if position is None:
        raise ReaderError(
            f"{path.name} needs a header row with columns x, y (pixels; or row, col as `segment` writes them) and "
            f"spectrum or c0..cN (or label); its header is {header}."
        )
    if not rows:
        raise ReaderError(f"{path.name} has a header but no data rows; add one row per measured point.")
    rows = [{k.strip(): v for k, v in r.items() if k is not None} for r in rows]
    coords = _csv_numbers(path, rows, position)
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
    if not channels and "label" in header:  # segment's own points.csv: labelled points, no spectra
        return coords, None, {"labels": [(r.get("label") or "").strip() for r in rows]}
    if not channels:
        raise ReaderError(f"{path.name} has neither a 'spectrum' column, channel columns c0..cN nor a 'label' column.")
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
        if spectra is None:
            return labelled_points_sample(img, coords, values["labels"], meta, target, pts_csv)
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


UNLABELLED = ("", "unknown")  # `segment`'s points.csv writes "unknown" for a point no phase was given


def labelled_points_sample(
    image: np.ndarray, coords: np.ndarray, labels: Sequence[str], meta: SampleMeta, target: np.ndarray | None,
    path: Path,
) -> Sample:  # fmt: skip
    """Points given by their phase name and no spectrum (``points.csv`` with ``row,col,label``, as `segment` writes
    it; names such as "unknown (O-Si)" are phases too, "unknown" and empty cells unlabelled): the labels are used as
    given, no identification; classes are the names in order of appearance."""
    h, w = image.shape
    inside = (coords[:, 0] >= -0.5) & (coords[:, 0] <= h - 0.5) & (coords[:, 1] >= -0.5) & (coords[:, 1] <= w - 0.5)
    if not inside.all():
        raise ReaderError(f"{int((~inside).sum())} points of {path.name} fall outside the {h}x{w} image; positions "
                          "must be pixels of this image.")  # fmt: skip
    names = list(dict.fromkeys(lab for lab in labels if lab not in UNLABELLED))
    if not names:
        raise ReaderError(f"{path.name} gives no label but 'unknown'; label some points or add their spectra.")
    ids = np.array([names.index(lab) if lab not in UNLABELLED else IGNORE_INDEX for lab in labels], np.int64)
    del target  # a phases.tif's ids are not these names' classes: it cannot score this map
    meta.class_names = tuple(names)
    return Sample(image=image[None], point_coords=coords.astype(np.float32), point_features=np.zeros((len(ids), 0),
                  np.float32), point_target=ids, meta=meta)  # fmt: skip


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
