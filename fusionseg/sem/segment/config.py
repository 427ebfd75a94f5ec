"""`segment`'s settings (`SegmentConfig`) and its result (`SegmentResult`): the data every stage reads or fills."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import Tensor

from fusionseg.errors import SegmentError
from fusionseg.inference import OVERLAP_PX, min_tile_px
from fusionseg.sample import Sample
from fusionseg.sem.identify import PointLabels


@dataclass
class SegmentConfig:
    """Per-field training and prediction settings (pixels, seconds)."""

    mode: str = "auto"  # point labelling: auto | library | clusters
    method: str = "model"  # "model" (fusionseg), or a classic method of fusionseg.baselines.CLASSIC_METHODS
    n_clusters: int | None = None
    min_confidence: float = 0.9
    hidden_channels: int = 32
    num_layers: int = 3
    cross_k: int = 4
    pca_components: int = 8
    crop_px: int = 128
    crops_per_batch: int = 4
    batches_per_epoch: int = 8
    max_epochs: int = 25
    patience: int = 6
    lr: float = 0.01
    query_fraction: float = 0.25
    val_fraction: float = 0.15
    min_val_points: int = 50  # fewer held-out points: no early stopping (their loss is too noisy)
    fusion: str = "late"
    num_threads: int | None = None  # torch CPU threads (1 is fastest on a busy machine)
    time_budget_s: float | None = None  # wall-clock cap on per-field training (None: epochs only, reproducible)
    tile_px: int = 512
    overlap_px: int = OVERLAP_PX
    seed: int = 0
    progress: bool = True  # per-field training: Lightning's bar on a terminal, else a line per epoch (stderr)
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    honour_points: bool = True  # confidently identified measured pixels keep their mineral in the map
    held_out_share: float = 0.1  # checkpoint path: share of identified points withheld and scored (QC)
    extrapolate: bool = False  # map pixels outside the EDS-acquired area too (else "not measured")
    fallback_per_field: bool = False  # shipped weights: train on the field when the library names < half the points
    adapt_refiner: bool = True  # fine-tune the checkpoint's refiner on the field's points first (models.adaptation)
    classic_floor: bool = True  # a classic fill replaces the model when the withheld points prove it better
    voids: bool = True  # pores/epoxy from the BSE image's dark mode written into every map (`segment.voids`)
    qc_window_px: int = 1024  # the held-out check maps (blind) a central window at most this large: ~1e3 withheld
    # points at 1 % EDS (standard error of the agreement ~1 %) for a bounded cost on large fields

    def __post_init__(self) -> None:
        """The API's counterpart of the command line's argument checks: impossible settings fail here."""
        checks = {
            "min_confidence": 0 <= self.min_confidence < 1,
            "time_budget_s": self.time_budget_s is None or self.time_budget_s > 0,
            "max_epochs": self.max_epochs >= 1,
            "crop_px": self.crop_px >= 8,
            "overlap_px": self.overlap_px >= 0,
            "tile_px": self.tile_px >= min_tile_px(self.overlap_px),
            "query_fraction": 0 < self.query_fraction < 1,
            "val_fraction": 0 <= self.val_fraction < 1,
            "n_clusters": self.n_clusters is None or self.n_clusters >= 2,
            "qc_window_px": self.qc_window_px >= 32,
        }
        bad = [k for k, ok in checks.items() if not ok]  # NaN fails every comparison, so it lands here too
        if bad:
            raise SegmentError(
                f"SegmentConfig.{bad[0]}={getattr(self, bad[0])!r} is impossible; see the field's range in "
                "`fusionseg segment --help` (e.g. min_confidence in [0, 1), time_budget_s > 0, tile_px >= "
                f"{min_tile_px(self.overlap_px)})."
            )


@dataclass
class SegmentResult:
    """labels (H, W) long class ids into ``class_names``; confidence (H, W) float max probability."""

    labels: Tensor
    confidence: Tensor
    class_names: tuple[str, ...]
    sample: Sample
    mode: str
    point_labels: PointLabels | None = None
    timings: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    model_labels: Tensor | None = None  # the model's map before honouring the points (QC)
    qc: dict[str, Any] = field(default_factory=dict)  # `fusionseg.sem.export.qc.quality_checks`
    acquisition_order: np.ndarray | None = None  # (N, 3) row, col, batch of each point (``--acquire``)


__all__ = ["SegmentConfig", "SegmentResult"]
