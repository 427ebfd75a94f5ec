"""Per-image self-supervised training through fusionseg's `FusionSegModule` and a Lightning `Trainer`.

The model is the core's pixel-grid pipeline (``grid`` graph, ``cnn`` image backbone over the guidance
channels, which carry the samples as classic completions) with this plugin's ``residual`` head on top
of the multi-scale fast global smoother channel: it learns, on the image's own samples, what the classic
completion misses. (``cross-attention`` of every pixel over its 8 nearest samples also runs here, at
~4x the cost per step, so a quarter of the steps in the 2-minute budget; not measured to the end.)
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from fusionseg.data.datamodule import collate_samples
from fusionseg.models.module import FusionSegModule
from fusionseg_depth.baselines import FGSSettings
from fusionseg_depth.data import (
    DISPARITY_SCALE,
    FGS_CHANNEL,
    GUIDANCE_CHANNELS,
    HideAndPredict,
    Scene,
    full_sample,
    tune_base,
)

MODEL_DEFAULTS: dict[str, Any] = {
    "task": "regression",
    "num_outputs": 1,
    "image_channels": len(GUIDANCE_CHANNELS),
    "point_channels": 1,
    "point_encoder": "identity",
    "graph_builder": "grid",
    "graph_builder_kwargs": {"connectivity": 8, "cross_k": 8},
    "fusion": "image-only",
    "fusion_kwargs": {"num_layers": 4},
    "backbone": "cnn",
    "hidden_channels": 32,
    "head": "residual",
    "head_kwargs": {"base_channel": FGS_CHANNEL, "scale": DISPARITY_SCALE},
    "loss": "smooth-l1",
    "error_thresholds": [1.0, 3.0],
}
"""The depth model (mirrored by ``configs/depth.yaml``'s model section; a test keeps them equal)."""


@dataclass
class TrainSettings:
    """Per-image training budget: ``steps`` optimiser steps of ``batch`` crops of ``crop`` px, ``hide`` hidden."""

    steps: int = 300
    batch: int = 4
    crop: int = 128
    hide: float = 0.5
    lr: float = 3e-3
    seed: int = 0


def build_model(lr: float, **overrides: Any) -> FusionSegModule:
    """`FusionSegModule` with `MODEL_DEFAULTS` (plus ``overrides``) and AdamW at ``lr``."""
    kwargs = copy.deepcopy(MODEL_DEFAULTS) | overrides
    return FusionSegModule(**kwargs, optimizer=lambda params: torch.optim.AdamW(params, lr=lr, weight_decay=1e-4))


def predict_scene(model: FusionSegModule, scene: Scene, fgs: FGSSettings) -> np.ndarray:
    """(H, W) disparity (px) predicted from every sample of ``scene``."""
    return model.predict_samples([full_sample(scene, fgs, None, "motorcycle")])[0]["values"][0].numpy()


def fit_scene(
    scene: Scene,
    settings: TrainSettings,
    fgs: FGSSettings | None = None,
    predict_on: Scene | None = None,
    **model_overrides: Any,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Train on ``scene``'s samples alone (hide and predict), then predict from all of them.

    The prediction is the mean of the image's and its mirror image's (training draws flips too).
    ``predict_on``: predict another scene instead (inductive: trained on one region, applied to another
    with its own samples; the base's settings stay those tuned on ``scene``).

    Returns the (H, W) disparity prediction (px) and facts of the run (steps, wall and CPU seconds of
    tuning the base + training + prediction, the base's settings).
    """
    start, cpu_start = time.perf_counter(), time.process_time()
    L.seed_everything(settings.seed, verbose=False)
    if fgs is None:
        fgs = tune_base(scene, settings.seed)
    data = HideAndPredict(
        scene, fgs, settings.crop, settings.hide, settings.steps * settings.batch, settings.seed, flip=True
    )
    loader = DataLoader(data, batch_size=settings.batch, collate_fn=collate_samples)
    model = build_model(settings.lr, **model_overrides)
    trainer = L.Trainer(
        max_steps=settings.steps, max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, accelerator="cpu", devices=1,
    )  # fmt: skip
    trainer.fit(model, train_dataloaders=loader)
    trained = time.perf_counter() - start
    target = predict_on or scene
    pred = predict_scene(model, target, fgs)
    pred = (pred + predict_scene(model, target.flipped(), fgs)[:, ::-1]) / 2  # trained with flips: average both
    info = {"steps": settings.steps, "batch": settings.batch, "crop": settings.crop, "hide": settings.hide,
            "train_seconds": trained, "seconds": time.perf_counter() - start,
            "cpu_seconds": time.process_time() - cpu_start, "fgs": fgs}  # fmt: skip
    return pred, info
