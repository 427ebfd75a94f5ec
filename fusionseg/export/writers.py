"""Result files for a segmented field, written atomically (`fusionseg.export.safe_io`).

- ``<name>_phases.tif``: uint16 label ids (TIFF description holds the JSON class table).
- ``<name>_overlay.png``: BSE, predicted phases (with the measured points), legend.
- ``<name>_modal.csv``: modal mineralogy, pixel counts and area % per phase.
- ``metrics.json``: whatever metrics the caller computed.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

import numpy as np

from fusionseg.export.render import phase_map_figure, show_image
from fusionseg.export.safe_io import atomic_path, output_folder
from fusionseg.sample import IGNORE_INDEX, label_counts


def staged_folder(out: Path, inputs: Iterable[Path | None] = (), overwrite: bool = True) -> Any:
    """`fusionseg.export.safe_io.output_folder`, replacing fusionseg's own earlier outputs by default."""
    return output_folder(out, inputs, overwrite)


def _write_text(path: Path, writer: Callable[[IO[str]], None]) -> Path:
    buf = io.StringIO()
    writer(buf)
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())
    return path


def tiff_resolution(pixel_size_um: float | None) -> dict[str, Any]:
    """tifffile keywords for the TIFF resolution tags (pixels per centimetre) of a calibrated image."""
    if not pixel_size_um:
        return {}
    per_cm = 1e4 / pixel_size_um
    return {"resolution": (per_cm, per_cm), "resolutionunit": "CENTIMETER"}


def write_phase_tiff(
    path: Path, labels: np.ndarray, class_names: list[str] | tuple[str, ...], pixel_size_um: float | None = None
) -> Path:
    """Label map as uint16 TIFF (65535 = not measured); JSON class table in the ImageDescription tag;
    resolution tags when ``pixel_size_um`` is known."""
    import tifffile

    description = json.dumps({"class_names": list(class_names), "ignore_value": 65535, "pixel_size_um": pixel_size_um})
    data = np.where(labels == IGNORE_INDEX, 65535, labels).astype(np.uint16)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, data, description=description, metadata=None, **tiff_resolution(pixel_size_um))
    return path


def modal_table(labels: np.ndarray, class_names: list[str] | tuple[str, ...], pixel_size_um: float = 1.0) -> list[dict]:
    """Rows of modal mineralogy: phase, pixel count, area % and area in µm², largest first."""
    counts = label_counts(labels, len(class_names))
    total = max(int(counts.sum()), 1)
    rows = [
        {
            "phase": class_names[k],
            "pixels": int(c),
            "area_percent": round(100.0 * c / total, 4),
            "area_um2": round(float(c) * pixel_size_um**2, 3),
        }
        for k, c in enumerate(counts)
        if c > 0
    ]
    return sorted(rows, key=lambda r: -r["pixels"])


def write_modal_csv(path: Path, rows: list[dict]) -> Path:
    def write(f: IO[str]) -> None:
        w = csv.DictWriter(f, fieldnames=["phase", "pixels", "area_percent", "area_um2"])
        w.writeheader()
        w.writerows(rows)

    return _write_text(path, write)


def write_json(path: Path, payload: Any) -> Path:
    return _write_text(path, lambda f: json.dump(payload, f, indent=2, sort_keys=True))


def save_figure(fig: Any, path: Path, dpi: int = 110) -> Path:
    """Write a matplotlib figure as PNG atomically and free it."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return path


def write_overlay_png(
    path: Path,
    image: np.ndarray,
    labels: np.ndarray,
    class_names: list[str] | tuple[str, ...],
    points: np.ndarray | None = None,
    truth: np.ndarray | None = None,
    title: str = "",
    **details: Any,
) -> Path:
    """BSE | predicted phases (+ measured points) [| true phases], with a legend.

    ``details``: `phase_map_figure`'s ``point_labels``, ``disagree``, ``area_percent``, ``pixel_size_um``.
    """
    panels = {"BSE": image, "predicted phases": labels}
    if truth is not None:
        panels["true phases"] = truth
    fig = phase_map_figure(panels, class_names, points=points, title=title, **details)
    return save_figure(fig, path)


def write_uncertainty_tiff(path: Path, uncertainty: np.ndarray, pixel_size_um: float | None = None) -> Path:
    """Per-pixel uncertainty (1 - confidence, 0..1; NaN = not measured) as a float32 TIFF."""
    import tifffile

    description = json.dumps({"quantity": "uncertainty = 1 - max class probability", "range": [0, 1]})
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, uncertainty.astype(np.float32, copy=False), description=description, metadata=None,
                         **tiff_resolution(pixel_size_um))  # fmt: skip
    return path


def write_uncertainty_png(path: Path, uncertainty: np.ndarray, points: np.ndarray | None = None) -> Path:
    """Uncertainty map (viridis, 0..1) with a colour bar and the measured points."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.4, 4.6))
    im = show_image(ax, uncertainty, cmap="viridis", vmin=0, vmax=1)
    if points is not None and len(points):
        ax.scatter(points[:, 1], points[:, 0], s=3, c="white", edgecolors="black", linewidths=0.3)
    ax.set_title("uncertainty (1 - confidence)")
    ax.axis("off")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return save_figure(fig, path)


def write_acquisition_csv(path: Path, order: np.ndarray) -> Path:
    """The acquisition order: one row per measured point, ``row,col,step`` (pixels; step 0 = first batch)."""

    def rows(fh: IO[str]) -> None:
        w = csv.writer(fh)
        w.writerow(["row", "col", "step"])
        w.writerows(np.asarray(order, dtype=np.int64).tolist())

    return _write_text(path, rows)


def write_acquisition_png(path: Path, image: np.ndarray, order: np.ndarray) -> Path:
    """The (H, W) image in grey with each measured point coloured by the batch it was measured in."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    order = np.asarray(order, dtype=np.int64).reshape(-1, 3)
    fig, ax = plt.subplots(figsize=(5.4, 4.6))
    show_image(ax, image, cmap="gray")
    steps = order[:, 2] + 1
    dots = ax.scatter(order[:, 1], order[:, 0], s=6, c=steps, cmap="plasma", edgecolors="black", linewidths=0.2,
                      vmin=1, vmax=max(int(steps.max(initial=1)), 2))  # fmt: skip
    ax.set_title(f"where each batch was measured ({len(order)} points)")
    ax.axis("off")
    fig.colorbar(dots, ax=ax, fraction=0.046, label="batch")
    fig.tight_layout()
    return save_figure(fig, path)


def hspy_available() -> bool:
    """RosettaSciIO's .hspy writer needs h5py."""
    import importlib.util

    return importlib.util.find_spec("h5py") is not None


def _append_hspy_signal(path: Path, signal: dict) -> None:
    """Add ``signal`` as another experiment of an existing ``.hspy`` file (``hs.load`` then returns a list).

    RosettaSciIO's ``file_writer`` writes one signal per call and its ``mode="a"`` reaches h5py's
    ``require_dataset`` and fails, so its writer class is driven directly on the open file.
    """
    import h5py
    from rsciio.hspy._api import HyperspyWriter

    with h5py.File(path, "a") as f:
        group = f.require_group("Experiments").require_group(signal["metadata"]["General"]["title"].replace("/", "-"))
        HyperspyWriter(f, signal, group, chunks=None, compression="gzip", write_dataset=True,
                       show_progressbar=False).write()  # fmt: skip


def write_hspy_phase_map(
    path: Path,
    labels: np.ndarray,
    class_names: list[str] | tuple[str, ...],
    axes: list[dict] | None = None,
    title: str = "phase map",
    uncertainty: np.ndarray | None = None,
    original_metadata: dict | None = None,
) -> Path:
    """Phase map as a HyperSpy ``.hspy`` file (``rsciio.hspy.file_writer``) on the input's navigation axes.

    Label ids are int16 (``IGNORE_INDEX`` = -1); the class table is in ``metadata.Sample.phases``.
    ``uncertainty`` (H, W) is a second signal of the file (``hs.load`` returns both); the input's
    ``original_metadata`` is carried. Raises ImportError when h5py is missing (see `hspy_available`).
    """
    from rsciio.hspy import file_writer

    h, w = labels.shape
    names = ("height", "width")
    default = [
        {"name": n, "size": s, "offset": 0.0, "scale": 1.0, "units": "px"} for n, s in zip(names, (h, w), strict=True)
    ]
    use = axes if axes and len(axes) == 2 and [a.get("size") for a in axes] == [h, w] else default
    # A 2-D image: both axes are signal axes (navigate=False), as HyperSpy's Signal2D.
    out_axes = [{k: a[k] for k in ("name", "size", "offset", "scale", "units") if k in a} | {"navigate": False}
                for a in use]  # fmt: skip
    signal = {
        "data": labels.astype(np.int16),
        "axes": out_axes,
        "metadata": {
            "General": {"title": title},
            "Signal": {"signal_type": "", "quantity": "phase id"},
            "Sample": {"phases": {str(k): n for k, n in enumerate(class_names)}},
        },
        "original_metadata": dict(original_metadata or {}),
        "tmp_parameters": {},
        "attributes": {"_lazy": False, "ragged": False},
        "learning_results": {},
        "models": {},
        "package_info": {"name": "fusionseg", "version": "0.1.0"},
    }
    if uncertainty is not None:
        signal["metadata"]["Sample"]["mean_uncertainty"] = float(np.nanmean(uncertainty))
    with atomic_path(path) as tmp:
        file_writer(str(tmp), signal, show_progressbar=False)
        if uncertainty is not None:
            meta = {"General": {"title": f"{title} uncertainty"},
                    "Signal": {"signal_type": "", "quantity": "uncertainty (1 - confidence)"}}  # fmt: skip
            second = {**signal, "data": uncertainty.astype(np.float32, copy=False), "metadata": meta}
            _append_hspy_signal(tmp, second)
    return path
