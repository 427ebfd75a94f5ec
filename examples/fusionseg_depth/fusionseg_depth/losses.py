"""``silog``: the scale-invariant log loss of depth estimation (Eigen et al., NIPS 2014), in fusionseg's LOSSES."""

from __future__ import annotations

import torch
from torch import Tensor

from fusionseg.models.losses import RegressionLoss, labelled
from fusionseg.registry import LOSSES


@LOSSES.register("silog", "scale-invariant-log")
class ScaleInvariantLogLoss(RegressionLoss):
    """mean(d^2) - lam * mean(d)^2 with d = log(pred) - log(target) over labelled (non-NaN) entries.

    ``lam`` = 1 ignores a global scale error, 0 is plain log-space L2 (Eigen et al. use 0.5).
    Predictions are clamped to ``eps`` (target units, > 0: depth or disparity).
    """

    def __init__(self, lam: float = 0.5, eps: float = 1e-3) -> None:
        super().__init__()
        if not 0 <= lam <= 1 or eps <= 0:
            raise ValueError(f"silog needs 0 <= lam <= 1 and eps > 0, got lam={lam}, eps={eps}.")
        self.lam, self.eps = float(lam), float(eps)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        p, t = labelled(pred, target)
        if t.numel() == 0:
            return pred.sum() * 0.0
        if (t <= 0).any():
            raise ValueError("silog needs positive targets (depth or disparity); use l1/l2 for signed values.")
        d = torch.log(p.clamp_min(self.eps)) - torch.log(t)
        return d.square().mean() - self.lam * d.mean().square()
