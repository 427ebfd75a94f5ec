"""Pictures of phase maps: a stable colour per class, overlays with legends, logger hooks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fusionseg.sample import IGNORE_INDEX, label_counts


def class_colours(num_classes: int) -> np.ndarray:
    """(K, 3) float RGB in [0, 1]; class k always gets the same colour (tab20 + tab20b cycles)."""
    import matplotlib

    cmaps = [matplotlib.colormaps[name] for name in ("tab20", "tab20b", "tab20c")]
    palette = np.concatenate([cmap(np.arange(20))[:, :3] for cmap in cmaps])
    return palette[np.arange(num_classes) % len(palette)]


def colourise(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) float RGB; ignored pixels are black."""
    rgb = class_colours(max(num_classes, 1))[np.clip(labels, 0, None)]
    rgb[labels == IGNORE_INDEX] = 0.0
    return rgb


DISPLAY_PX = 1024
"""Longest side (px) an image panel is handed to matplotlib at: a panel is ~460 px wide at 110 dpi, so a larger
field is subsampled first (every n-th pixel, as ``interpolation="nearest"`` shows it anyway), which saves its full-
size RGB copies (2048² field: overlay 1.6 -> 0.6 s)."""


def show_image(ax: Any, image: np.ndarray, colour: Callable[[np.ndarray], np.ndarray] | None = None,
               **imshow: Any) -> Any:  # fmt: skip
    """``ax.imshow(image, interpolation="nearest", **imshow)`` of an (H, W) array subsampled to at most `DISPLAY_PX`
    per side, then passed through ``colour`` (e.g. `colourise`); the axes keep the field's pixel coordinates."""
    h, w = image.shape[:2]
    step = -(-max(h, w) // DISPLAY_PX)
    small = image[::step, ::step] if colour is None else colour(image[::step, ::step])
    extent = (-0.5, small.shape[1] * step - 0.5, small.shape[0] * step - 0.5, -0.5)  # each shown pixel: a block
    shown = ax.imshow(small, interpolation="nearest", extent=extent, **imshow)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    return shown


def nice_length(span: float) -> float:
    """A round scale-bar length (1, 2 or 5 x 10^k) of about a fifth of ``span``."""
    target = span / 5
    base = 10 ** np.floor(np.log10(target))
    return float(max((m * base for m in (1, 2, 5) if m * base <= target), default=base))


def add_scale_bar(ax: Any, width_px: int, pixel_size_um: float) -> None:
    """A scale bar (µm) in the lower left of an image axis, from the pixel size."""
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    length_um = nice_length(width_px * pixel_size_um)
    label = f"{length_um:g} µm" if length_um < 1000 else f"{length_um / 1000:g} mm"
    bar = AnchoredSizeBar(ax.transData, length_um / pixel_size_um, label, "lower left", pad=0.3, color="white",
                          frameon=True, size_vertical=max(1.0, width_px / 150))  # fmt: skip
    bar.patch.set(facecolor="black", alpha=0.5, edgecolor="none")
    ax.add_artist(bar)


def _draw_points(ax: Any, points: np.ndarray, colours: np.ndarray | None, disagree: np.ndarray | None) -> None:
    """Measured points: filled with their identified phase's colour (white: unclassified); red rings mark
    points whose phase the model's map contradicts."""
    face = np.ones((len(points), 3)) if colours is None else colours
    ax.scatter(points[:, 1], points[:, 0], s=10, c=face, edgecolors="black", linewidths=0.4)
    if disagree is not None and disagree.any():
        p = points[disagree]
        ax.scatter(p[:, 1], p[:, 0], s=40, facecolors="none", edgecolors="red", linewidths=1.0)


def phase_map_figure(
    panels: dict[str, np.ndarray],
    class_names: list[str] | tuple[str, ...],
    points: np.ndarray | None = None,
    title: str = "",
    point_labels: np.ndarray | None = None,
    disagree: np.ndarray | None = None,
    area_percent: dict[str, float] | None = None,
    pixel_size_um: float | None = None,
) -> Any:
    """A matplotlib figure: one panel per entry (grey image or label map) and a class legend.

    ``panels`` maps a title to either a float (H, W) image (shown grey) or an int label map.
    ``points`` (N, 2) (row, col) are drawn on every label panel, coloured by ``point_labels`` (N,) class ids
    (``IGNORE_INDEX``: white), with ``disagree`` (N,) bool ringed in red. ``area_percent`` (class name -> %)
    goes into the legend; ``pixel_size_um`` adds a scale bar to every panel.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    legend_w = 2.2 + 0.05 * max((len(n) for n in class_names), default=0)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + legend_w, 4.4), squeeze=False)
    present: set[int] = set()
    for ax, (name, arr) in zip(axes[0], panels.items(), strict=True):
        if np.issubdtype(arr.dtype, np.integer):
            show_image(ax, arr, lambda shown: colourise(shown, len(class_names)))
            present.update(np.flatnonzero(label_counts(arr)).tolist())
            if points is not None and len(points):
                colours = None
                if point_labels is not None:
                    colours = class_colours(max(len(class_names), 1))[np.clip(point_labels, 0, None)]
                    colours[point_labels == IGNORE_INDEX] = 1.0
                _draw_points(ax, points, colours, disagree)
        else:
            show_image(ax, arr, cmap="gray")
        if pixel_size_um:
            add_scale_bar(ax, arr.shape[1], pixel_size_um)
        ax.set_title(name)
        ax.axis("off")
    colours = class_colours(len(class_names))
    pct = area_percent or {}
    handles = [
        Patch(color=colours[k], label=f"{class_names[k]} {pct[class_names[k]]:.1f} %" if class_names[k] in pct
              else class_names[k])
        for k in sorted(present)
    ]  # fmt: skip
    if point_labels is not None and points is not None and len(points):
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], marker="o", ls="", mfc="white", mec="black", label="measured point"))
        if disagree is not None and disagree.any():
            handles.append(Line2D([], [], marker="o", ls="", mfc="none", mec="red", label="model disagrees"))
    fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1 - (legend_w - 0.2) / fig.get_figwidth(), 1))
    return fig


def log_phase_map(logger: Any, pred: np.ndarray, target: np.ndarray, class_names: Any, step: int) -> None:
    """Send a predicted-vs-true phase map picture to whichever logger is configured.

    TensorBoard and W&B get an image; a CSV logger gets a PNG under ``<log_dir>/phase_maps/``.
    """
    if logger is None:
        return
    import matplotlib.pyplot as plt

    fig = phase_map_figure({"predicted": pred, "true": target}, class_names, title=f"epoch {step}")
    try:
        kind = type(logger).__name__
        if kind == "TensorBoardLogger":
            logger.experiment.add_figure("val/phase_map", fig, global_step=step)
        elif kind == "WandbLogger":
            logger.log_image(key="val/phase_map", images=[fig_to_array(fig)], step=None)
        elif getattr(logger, "log_dir", None):
            out = Path(logger.log_dir) / "phase_maps"
            out.mkdir(parents=True, exist_ok=True)
            fig.savefig(out / f"epoch_{step:03d}.png", dpi=80)
    finally:
        plt.close(fig)


def fig_to_array(fig: Any) -> np.ndarray:
    """Render a matplotlib figure to an (H, W, 3) uint8 array."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
