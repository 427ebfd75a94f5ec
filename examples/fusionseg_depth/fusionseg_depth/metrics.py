"""Depth-completion scores on fusionseg's regression metrics: RMSE, MAE (disparity px), bad1, bad3 (%)."""

from __future__ import annotations

import numpy as np
import torch

from fusionseg.models.metrics import regression_metrics

THRESHOLDS = (1.0, 3.0)
"""Disparity errors (px) whose exceedance rates are reported as ``bad1`` and ``bad3`` (% of scored pixels)."""


def depth_scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Scores of ``pred`` (H, W) against ``truth`` (H, W) px over the pixels where the truth is finite.

    Invalid ground-truth pixels (NaN/inf) are never scored. Keys: rmse, mae, bad1, bad3.
    """
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {truth.shape} differ in size; crop to match.")
    valid = np.isfinite(truth)
    if not np.isfinite(pred[valid]).all():
        raise ValueError("the prediction has NaN/inf at scored pixels; fill every valid pixel.")
    metrics = regression_metrics(THRESHOLDS)
    metrics.update(torch.from_numpy(pred[valid].astype(np.float64)), torch.from_numpy(truth[valid].astype(np.float64)))
    values = metrics.compute()
    return {name: round(float(values[name]), 4) for name in ("rmse", "mae", "bad1", "bad3")}
