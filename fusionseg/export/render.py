"""Pictures of phase maps: a stable colour per class, overlays with legends, logger hooks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fusionseg.sample import IGNORE_INDEX


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


def phase_map_figure(
    panels: dict[str, np.ndarray],
    class_names: list[str] | tuple[str, ...],
    points: np.ndarray | None = None,
    title: str = "",
) -> Any:
    """A matplotlib figure: one panel per entry (grey image or label map) and a class legend.

    ``panels`` maps a title to either a float (H, W) image (shown grey) or an int label map.
    ``points`` (N, 2) (row, col) are drawn on every label panel.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 2.2, 4.4), squeeze=False)
    present: set[int] = set()
    for ax, (name, arr) in zip(axes[0], panels.items(), strict=True):
        if np.issubdtype(arr.dtype, np.integer):
            ax.imshow(colourise(arr, len(class_names)), interpolation="nearest")
            present.update(int(v) for v in np.unique(arr) if v != IGNORE_INDEX)
            if points is not None and len(points):
                ax.scatter(points[:, 1], points[:, 0], s=4, c="white", edgecolors="black", linewidths=0.3)
        else:
            ax.imshow(arr, cmap="gray", interpolation="nearest")
        ax.set_title(name)
        ax.axis("off")
    colours = class_colours(len(class_names))
    handles = [Patch(color=colours[k], label=class_names[k]) for k in sorted(present)]
    fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1 - 2.0 / fig.get_figwidth(), 1))
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
