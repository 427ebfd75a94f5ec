"""Metrics on torchmetrics. Segmentation: mIoU, pixel accuracy, per-class IoU, confusion matrix.
Regression: RMSE, MAE and the percentage of values whose error exceeds given thresholds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torchmetrics import MeanAbsoluteError, MeanSquaredError, Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassJaccardIndex

from fusionseg.sample import IGNORE_INDEX


def segmentation_metrics(num_classes: int, ignore_index: int = IGNORE_INDEX) -> MetricCollection:
    """mIoU (mean over classes present in target or prediction), pixel accuracy, confusion matrix."""
    return MetricCollection(
        {
            "miou": MulticlassJaccardIndex(num_classes, average="macro", ignore_index=ignore_index),
            "pixel_acc": MulticlassAccuracy(num_classes, average="micro", ignore_index=ignore_index),
            "confmat": MulticlassConfusionMatrix(num_classes, ignore_index=ignore_index),
        },
        compute_groups=False,
    )


class ErrorRate(Metric):
    """Percentage (0-100) of values whose absolute error exceeds ``threshold`` (target units),
    e.g. the "bad 1.0" / "bad 3.0" disparity error rates of stereo and depth benchmarks."""

    higher_is_better = False
    full_state_update = False

    def __init__(self, threshold: float, **kwargs) -> None:
        super().__init__(**kwargs)
        if threshold < 0:
            raise ValueError(f"ErrorRate threshold must be >= 0 (target units), got {threshold}.")
        self.threshold = float(threshold)
        self.add_state("bad", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        self.bad += ((preds - target).abs() > self.threshold).sum()
        self.total += target.numel()

    def compute(self) -> Tensor:
        return 100.0 * self.bad / self.total.clamp(min=1)


def threshold_name(threshold: float) -> str:
    """Metric name of an error threshold: 1.0 -> ``bad1``, 0.5 -> ``bad0_5`` (module names take no dots)."""
    return f"bad{threshold:g}".replace(".", "_")


def regression_metrics(thresholds: tuple[float, ...] | list[float] = ()) -> MetricCollection:
    """RMSE, MAE (target units) and, per threshold t, ``bad{t}``: % of values with |error| > t.

    Update with labelled values only (flat predictions and targets; see `labelled` in losses).
    """
    metrics: dict[str, Metric] = {"rmse": MeanSquaredError(squared=False), "mae": MeanAbsoluteError()}
    metrics.update({threshold_name(t): ErrorRate(t) for t in thresholds})
    return MetricCollection(metrics, compute_groups=False)


def iou_from_confusion(confmat: Tensor) -> Tensor:
    """Per-class IoU from a (K, K) confusion matrix (rows = truth); NaN for classes absent from both."""
    confmat = confmat.double()
    tp = confmat.diag()
    union = confmat.sum(0) + confmat.sum(1) - tp
    return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))


def modal_fractions(labels: Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Area fraction of each class in a label map, shape (K,), summing to 1 over labelled pixels."""
    flat = labels.reshape(-1)
    flat = flat[flat != ignore_index]
    counts = torch.bincount(flat, minlength=num_classes).double()
    return counts / counts.sum().clamp(min=1)


def summarise(metrics: dict[str, Tensor], class_names: list[str] | tuple[str, ...]) -> dict:
    """Plain-Python summary of computed metrics: scalars, ``<prefix>pixels`` (pixels scored, over every DDP
    process) and per-class IoU of present classes."""
    out = {k: float(v) for k, v in metrics.items() if v.numel() == 1}
    key, confmat = next(((k, v) for k, v in metrics.items() if k.endswith("confmat")), (None, None))
    if confmat is not None:
        out[key.removesuffix("confmat") + "pixels"] = float(confmat.sum())
        iou = iou_from_confusion(confmat)
        out["per_class_iou"] = {class_names[i]: round(float(v), 4) for i, v in enumerate(iou) if not torch.isnan(v)}
    return out


def confusion_with_unknown(pred: torch.Tensor, truth: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(K + 1, K + 1) confusion matrix (rows = truth) whose last column counts "unknown" predictions."""
    keep = truth != IGNORE_INDEX
    p, t = pred[keep], truth[keep]
    p = torch.where((p < 0) | (p >= num_classes), num_classes, p)
    k1 = num_classes + 1
    return torch.bincount(t * k1 + p, minlength=k1 * k1).view(k1, k1)


def field_metrics(pred: torch.Tensor, truth: torch.Tensor, num_classes: int) -> dict:
    """mIoU, pixel accuracy and modal-area error (mean |area % diff| over classes present) of one field."""
    confmat = confusion_with_unknown(pred, truth, num_classes)
    iou = iou_from_confusion(confmat)[:num_classes]
    pred_known = torch.where((pred < 0) | (pred >= num_classes), IGNORE_INDEX, pred)
    present = modal_fractions(truth, num_classes) + modal_fractions(pred_known, num_classes) > 0
    modal_err = (modal_fractions(pred_known, num_classes) - modal_fractions(truth, num_classes)).abs()[present]
    return {
        "miou": float(np.nanmean(iou.numpy())),
        "pixel_acc": float(confmat.diag().sum() / confmat.sum().clamp(min=1)),
        "modal_area_error_percent": float(100 * modal_err.mean()),
    }


class Scores:
    """Accumulates a split-wide confusion matrix (last column = "unknown") and per-field figures."""

    def __init__(self, num_classes: int) -> None:
        self.k = num_classes
        self.confusion = np.zeros((num_classes, num_classes + 1), dtype=np.int64)
        self.field_miou: list[float] = []
        self.modal_error: list[float] = []

    def add(self, pred: np.ndarray, truth: np.ndarray) -> None:
        """One field's (H, W) predicted and true label maps."""
        pred_t, truth_t = torch.as_tensor(pred), torch.as_tensor(truth)
        self.confusion += confusion_with_unknown(pred_t, truth_t, self.k)[: self.k].numpy()
        m = field_metrics(pred_t, truth_t, self.k)
        self.field_miou.append(m["miou"])
        self.modal_error.append(m["modal_area_error_percent"])

    def summary(self, class_names: Sequence[str]) -> dict:
        """mIoU over classes present in the truth (split-wide), pixel accuracy, per-class IoU, modal error."""
        tp = np.diag(self.confusion[:, : self.k])
        truth = self.confusion.sum(1)
        predicted = self.confusion[:, : self.k].sum(0)
        present = truth > 0
        iou = tp[present] / (truth + predicted - tp)[present]
        return {
            "miou": round(float(iou.mean()), 4),
            "miou_mean_over_fields": round(float(np.mean(self.field_miou)), 4),
            "pixel_acc": round(float(tp.sum() / truth.sum()), 4),
            "modal_area_error_percent": round(float(np.mean(self.modal_error)), 3),
            "per_class_iou": {
                name: round(float(v), 4) for name, v in zip(np.array(class_names)[present], iou, strict=True)
            },
        }
