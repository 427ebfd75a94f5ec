"""The domain-free point encoder: point features passed through (optionally scaled per point)."""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from fusionseg.contracts import ContractError, PointEncoder
from fusionseg.registry import POINT_ENCODERS


@POINT_ENCODERS.register("identity", "raw")
class IdentityEncoder(PointEncoder):
    """Features (N, in_dim) as they are (``normalise="total"``: divided by each row's sum); ``out_dim = in_dim``.

    ``in_dim`` comes from the data (``Sample.point_features`` width, linked by the CLI).
    """

    def __init__(self, in_dim: int, normalise: Literal["none", "total"] = "none") -> None:
        super().__init__()
        if isinstance(in_dim, bool) or not isinstance(in_dim, int) or in_dim <= 0:
            raise ContractError(f"identity encoder: in_dim must be the point feature width (> 0), got {in_dim!r}.")
        if normalise not in ("none", "total"):
            raise ContractError(f"identity encoder: normalise must be 'none' or 'total', got {normalise!r}.")
        self.out_dim, self.normalise = in_dim, normalise

    def encode(self, features: Tensor) -> Tensor:
        if features.dim() != 2 or features.shape[1] != self.out_dim:
            raise ContractError(f"identity encoder expects (N, {self.out_dim}) features, got {tuple(features.shape)}.")
        features = features.float()
        return features if self.normalise == "none" else features / features.sum(1, keepdim=True).clamp_min(1e-12)
