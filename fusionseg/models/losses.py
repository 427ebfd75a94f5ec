"""Losses chosen by name from the `LOSSES` registry.

Segmentation (logits (P, K), long target (P,), ``IGNORE_INDEX`` skipped): ``ce``, ``focal``, ``dice``,
``ce+dice``. Regression (values (P, K), float target (P,) or (P, K), NaN = unlabelled, skipped):
``l2`` (``mse``), ``l1`` (``mae``), ``smooth-l1`` (``huber``). Plugins register more with
``@LOSSES.register("name")``; the constructor takes the config's ``loss_kwargs``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusionseg.registry import LOSSES
from fusionseg.sample import IGNORE_INDEX


@LOSSES.register("ce", "cross-entropy")
class CrossEntropy(nn.Module):
    """Cross-entropy with optional class weights and label smoothing; skips ``ignore_index``."""

    def __init__(self, weight: Tensor | None = None, ignore_index: int = IGNORE_INDEX, label_smoothing: float = 0.0):
        super().__init__()
        self.register_buffer("weight", weight, persistent=False)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(
            logits, target, weight=self.weight, ignore_index=self.ignore_index, label_smoothing=self.label_smoothing
        )


@LOSSES.register("focal")
class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017): cross-entropy scaled by (1 - p_true)^gamma."""

    def __init__(self, gamma: float = 2.0, weight: Tensor | None = None, ignore_index: int = IGNORE_INDEX):
        super().__init__()
        self.gamma = gamma
        self.register_buffer("weight", weight, persistent=False)
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        keep = target != self.ignore_index
        logits, target = logits[keep], target[keep]
        if target.numel() == 0:
            return logits.sum() * 0.0
        log_p = F.log_softmax(logits, dim=-1)
        ce = F.nll_loss(log_p, target, weight=self.weight, reduction="none")
        p_true = log_p.gather(1, target[:, None]).squeeze(1).exp()
        return ((1 - p_true).pow(self.gamma) * ce).mean()


@LOSSES.register("dice")
class DiceLoss(nn.Module):
    """Soft multi-class Dice loss averaged over classes present in target or prediction."""

    def __init__(self, ignore_index: int = IGNORE_INDEX, smooth: float = 1.0):
        super().__init__()
        self.ignore_index = ignore_index
        self.smooth = smooth

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        keep = target != self.ignore_index
        probs = logits[keep].softmax(-1)
        onehot = F.one_hot(target[keep], logits.shape[-1]).to(probs.dtype)
        inter = (probs * onehot).sum(0)
        denom = probs.sum(0) + onehot.sum(0)
        present = onehot.sum(0) > 0
        dice = (2 * inter + self.smooth) / (denom + self.smooth)
        return 1 - dice[present].mean() if present.any() else logits.sum() * 0.0


@LOSSES.register("ce+dice")
class CrossEntropyDice(nn.Module):
    """Cross-entropy plus Dice, a common default for imbalanced phase maps."""

    def __init__(self, weight: Tensor | None = None, ignore_index: int = IGNORE_INDEX, dice_weight: float = 1.0):
        super().__init__()
        self.ce = CrossEntropy(weight, ignore_index)
        self.dice = DiceLoss(ignore_index)
        self.dice_weight = dice_weight

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return self.ce(logits, target) + self.dice_weight * self.dice(logits, target)


def labelled(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Predictions and float targets at the labelled (non-NaN) entries, both flat (L,).

    ``pred`` (P, K); ``target`` (P,) for K = 1, or (P, K).
    """
    target = target.reshape(pred.shape).to(pred.dtype)
    keep = ~torch.isnan(target)
    return pred[keep], target[keep]


class RegressionLoss(nn.Module):
    """Base of the regression losses: mean of `elementwise` over labelled entries (0 if none)."""

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        p, t = labelled(pred, target)
        return self.elementwise(p, t).mean() if t.numel() else pred.sum() * 0.0


@LOSSES.register("l2", "mse")
class L2Loss(RegressionLoss):
    """Mean squared error over labelled entries (target units squared)."""

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        return (pred - target).square()


@LOSSES.register("l1", "mae")
class L1Loss(RegressionLoss):
    """Mean absolute error over labelled entries (target units); robust to outliers."""

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        return (pred - target).abs()


@LOSSES.register("smooth-l1", "huber")
class SmoothL1Loss(RegressionLoss):
    """Huber-style smooth L1: quadratic below ``beta`` (target units), linear above."""

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        if beta <= 0:
            raise ValueError(f"smooth-l1 needs beta > 0 (target units), got {beta}.")
        self.beta = float(beta)

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        return F.smooth_l1_loss(pred, target, beta=self.beta, reduction="none")


def create_loss(name: str, class_weights: list[float] | None = None, **kwargs) -> nn.Module:
    """Build a loss by registry name (see the module docstring); ``class_weights`` for class losses only."""
    factory = LOSSES.get(name)
    if class_weights is not None:
        if isinstance(factory, type) and issubclass(factory, RegressionLoss):
            raise ValueError(f"class_weights apply to segmentation losses, not to the regression loss {name!r}.")
        if name != "dice":
            kwargs["weight"] = torch.as_tensor(class_weights, dtype=torch.float32)
    return factory(**kwargs)
