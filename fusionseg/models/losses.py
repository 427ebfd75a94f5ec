"""Segmentation losses chosen by name: class-weighted cross-entropy, focal, dice."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusionseg.sample import IGNORE_INDEX


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


class CrossEntropyDice(nn.Module):
    """Cross-entropy plus Dice, a common default for imbalanced phase maps."""

    def __init__(self, weight: Tensor | None = None, ignore_index: int = IGNORE_INDEX, dice_weight: float = 1.0):
        super().__init__()
        self.ce = CrossEntropy(weight, ignore_index)
        self.dice = DiceLoss(ignore_index)
        self.dice_weight = dice_weight

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return self.ce(logits, target) + self.dice_weight * self.dice(logits, target)


LOSSES = {"ce": CrossEntropy, "focal": FocalLoss, "dice": DiceLoss, "ce+dice": CrossEntropyDice}


def create_loss(name: str, class_weights: list[float] | None = None, **kwargs) -> nn.Module:
    """Build a loss by name (``ce``, ``focal``, ``dice``, ``ce+dice``)."""
    if name not in LOSSES:
        raise ValueError(f"Unknown loss {name!r}; choose one of {sorted(LOSSES)}.")
    if class_weights is not None and name != "dice":
        kwargs["weight"] = torch.as_tensor(class_weights, dtype=torch.float32)
    return LOSSES[name](**kwargs)
