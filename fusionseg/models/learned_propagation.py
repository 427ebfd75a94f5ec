"""`LearnedDiffusion`: the refiner's class scores diffused over the region graph with learned affinities.

A CSPN/NLSPN-style propagation on regions instead of pixels: each region's class probabilities are replaced,
step after step, by a learned mix of its own starting estimate and its neighbours' current estimate, weighted by
affinities an edge MLP predicts from the image (contrast across the boundary, boundary length, distance) and from
the network (how much the two regions' predictions differ). Regions holding measured points are reset to their
points' labels at every step (the points re-inserted), so what a point measured flows out along the image and
stops at its edges. Every step is a sparse gather and scatter: torch on CPU or GPU, differentiable end to end.

Hand-written rather than PyG's ``APPNP``/``MessagePassing``: the reset of seeded regions and the learned per-region
keep gate sit inside each step, and ``index_add_`` is the whole of the scatter (one line).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from fusionseg.registry import PROPAGATIONS

EDGE_FEATURES = ("contrast", "contrast_raw", "log_walker_weight", "log_smoother_weight", "log_distance")
"""Per-edge image features `fusionseg.models.prior_features.classic_features` computes (dimensionless); the
network's own disagreement across the edge is added by `LearnedDiffusion`."""
EPS = 1e-6  # probability floor before the log (a class diffusion never reached scores log(1e-6) = -13.8)


@PROPAGATIONS.register("diffusion", "learned-diffusion")
class LearnedDiffusion(nn.Module):
    """``steps`` steps of learned edge-aware diffusion of class probabilities over the region graph.

    ``forward`` takes the refiner's (F, R) region scores over the F classes a field's points found and returns
    ``scores + mix * log p`` with ``p`` the diffused probabilities; ``mix`` starts at ``initial_mix`` (learned),
    so the refiner's own scores stay the floor the training starts from.
    """

    def __init__(self, steps: int = 16, hidden_channels: int = 16, initial_mix: float = 0.5) -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"propagation steps must be >= 1, got {steps}.")
        self.steps = int(steps)
        self.edge_mlp = nn.Sequential(
            nn.Linear(len(EDGE_FEATURES) + 1, hidden_channels), nn.GELU(), nn.Linear(hidden_channels, 1)
        )
        self.keep_gate = nn.Linear(2, 1)  # per region: how much of its own estimate it keeps (CSPN's 1 - sum kappa)
        nn.init.constant_(self.keep_gate.bias, -1.0)
        if initial_mix <= 0:
            raise ValueError(f"initial_mix must be > 0 (softplus of a parameter), got {initial_mix}.")
        self.mix = nn.Parameter(torch.tensor(float(initial_mix)).expm1().log())  # softplus(mix) = initial_mix

    def affinities(self, edges: Tensor, edge_features: Tensor, network_prob: Tensor) -> Tensor:
        """(E,) positive affinity of each undirected edge from its image features and the network's disagreement
        (L1 distance of the two regions' class probabilities, 0..2)."""
        a, b = edges
        disagree = (network_prob[a] - network_prob[b]).abs().sum(-1, keepdim=True)
        return nn.functional.softplus(self.edge_mlp(torch.cat([edge_features, disagree], -1))).squeeze(-1)

    def forward(
        self, scores: Tensor, edges: Tensor, edge_features: Tensor, network_prob: Tensor, seed_share: Tensor
    ) -> Tensor:
        """(F, R) scores after diffusion. ``edges`` (2, E) region pairs; ``edge_features`` (E, len(EDGE_FEATURES));
        ``network_prob`` (R, K) the network's class probabilities per region; ``seed_share`` (F, R) each seeded
        region's share of its points per class (0 where no point)."""
        f, r = scores.shape
        if f <= 1 or edges.shape[1] == 0:
            return scores
        weight = self.affinities(edges, edge_features, network_prob)
        src = torch.cat([edges[0], edges[1]])
        dst = torch.cat([edges[1], edges[0]])
        weight = torch.cat([weight, weight])
        degree = torch.zeros(r, dtype=weight.dtype, device=weight.device).index_add_(0, dst, weight)
        start = scores.softmax(0).T  # (R, F)
        entropy = -(start * start.clamp_min(EPS).log()).sum(-1) / math.log(f)
        keep = torch.sigmoid(self.keep_gate(torch.stack([start.max(-1).values, entropy], -1)))  # (R, 1)
        seeded = (seed_share.sum(0) > 0).nonzero().squeeze(-1)
        anchor = seed_share.T[seeded]
        prob = start
        for _ in range(self.steps):
            spread = (prob * EPS).index_add_(0, dst, weight[:, None] * prob[src]) / (degree[:, None] + EPS)
            prob = keep * start + (1 - keep) * spread
            prob = prob.index_put((seeded,), anchor)  # the measured points re-inserted
        return scores + nn.functional.softplus(self.mix) * prob.clamp_min(EPS).log().T


__all__ = ["EDGE_FEATURES", "LearnedDiffusion"]
