"""Vendor EDS files through RosettaSciIO: Bruker ``.bcf``, EDAX ``.spd``, JEOL, Oxford ``.h5oina``, HyperSpy
``.hspy``, ... (plugin picked by extension). Calibration from the file: energy axis in eV, beam energy in keV,
pixel size in µm; the BSE image picked by title. Dense cubes above `LAZY_MIN_BYTES` stay lazy (dask)."""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fusionseg.sample import Sample, SampleMeta
from fusionseg.sem.data.readers.common import DEFAULT_BEAM_KEV, ReaderError, dense_sample, normalise_image
from fusionseg.sem.meta import EnergyAxis, SemMeta

log = logging.getLogger(__package__)  # the readers' one logger, as before the split

BSE_TITLE_HINTS = ("bse", "asb", "bsd", "backscatter", "cbs", "z contrast", "comp")
LAZY_MIN_BYTES = 256 * 2**20
"""Dense EDS cubes larger than this stay lazy (dask, read chunk by chunk) when the reader supports it."""


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
