"""Heads: per-image-node embeddings (M, in_dim) -> logits or values (M, num_outputs)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch_geometric.data import HeteroData
from torch_geometric.nn import Linear as LazyLinear
from torch_geometric.utils import scatter, softmax

from fusionseg.errors import FusionSegError
from fusionseg.graphs.schema import POINT, image_node_type
from fusionseg.models.fusion import DistanceEncoding, point_to_image_edges
from fusionseg.registry import HEADS
from fusionseg.sample import IGNORE_INDEX


class HeadError(FusionSegError):
    """Bad head configuration or input; the message names the problem and the fix."""


def mlp(in_dim: int, out_dim: int, hidden: int | None, dropout: float) -> nn.Module:
    """Linear, or Linear-ReLU-Dropout-Linear when ``hidden`` is given."""
    if min(in_dim, out_dim) < 1 or (hidden is not None and hidden < 1):
        raise HeadError(f"in_dim, num_outputs and hidden must be >= 1, got {in_dim}, {out_dim}, {hidden}.")
    if hidden is None:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, out_dim))
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim))


@HEADS.register("classifier", "linear")
class ClassifierHead(nn.Module):
    """Per-node class logits (M, num_outputs); ``hidden`` adds one hidden layer."""

    def __init__(self, in_dim: int, num_outputs: int, hidden: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = mlp(in_dim, num_outputs, hidden, dropout)

    def forward(self, x: Tensor, graph: HeteroData | None = None) -> Tensor:
        return self.net(x)


@HEADS.register("regression")
class RegressionHead(nn.Module):
    """Per-node continuous values (M, num_outputs), e.g. element intensity maps.

    ``activation``: "none" (any real), "softplus" (non-negative, e.g. counts), "sigmoid" (0..1 fractions).
    """

    ACTIVATIONS = {"none": nn.Identity, "softplus": nn.Softplus, "sigmoid": nn.Sigmoid}

    def __init__(
        self, in_dim: int, num_outputs: int, hidden: int | None = None, dropout: float = 0.0, activation: str = "none"
    ) -> None:
        super().__init__()
        if activation not in self.ACTIVATIONS:
            raise HeadError(f"activation must be one of {sorted(self.ACTIVATIONS)}, got {activation!r}.")
        self.net = nn.Sequential(mlp(in_dim, num_outputs, hidden, dropout), self.ACTIVATIONS[activation]())

    def forward(self, x: Tensor, graph: HeteroData | None = None) -> Tensor:
        return self.net(x)


@HEADS.register("point-assignment", "assignment")
class PointAssignmentHead(nn.Module):
    """Class-agnostic head: each image node softly assigns itself to its nearest points (DESIGN.md).

    a_ij = softmax_j(q_i . k_j / sqrt(key_dim) + b(d_ij)) over the point -> image edges, with
    q from the node embedding, k from the point features (``graph[point].x``, width inferred on
    first call) and b a learned distance bias. Output: log(sum_j a_ij P_j) (M, num_outputs), usable
    as logits; P_j is ``graph[point].prob`` (N, K) if present, else one-hot ``graph[point].y``
    (points labelled ``IGNORE_INDEX`` are skipped). Nodes with no labelled point get a uniform output.
    """

    def __init__(self, in_dim: int, num_outputs: int, key_dim: int = 32, eps: float = 1e-6) -> None:
        super().__init__()
        if min(in_dim, num_outputs, key_dim) < 1:
            raise HeadError(f"in_dim, num_outputs and key_dim must be >= 1, got {in_dim}, {num_outputs}, {key_dim}.")
        self.num_outputs, self.key_dim, self.eps = num_outputs, key_dim, eps
        self.query = nn.Linear(in_dim, key_dim)
        self.key = LazyLinear(-1, key_dim)
        self.distance = DistanceEncoding(8)
        self.distance_bias = nn.Linear(8, 1)

    def point_probs(self, graph: HeteroData) -> tuple[Tensor, Tensor]:
        """Per-point class probabilities (N, K) and a mask of points that have them (N,)."""
        store = graph[POINT]
        if "prob" in store:
            prob = store.prob.float()
            valid = torch.ones(len(prob), dtype=torch.bool, device=prob.device)
        elif "y" in store:
            valid = store.y != IGNORE_INDEX
            prob = nn.functional.one_hot(store.y.clamp_min(0), self.num_outputs).float()
        else:
            raise HeadError("point-assignment needs graph['point'].prob (N, K) or graph['point'].y (N,) point labels.")
        if prob.shape[1] != self.num_outputs:
            raise HeadError(
                f"point probabilities have {prob.shape[1]} classes, head has num_outputs={self.num_outputs}."
            )
        return prob, valid

    def forward(self, x: Tensor, graph: HeteroData) -> Tensor:
        img = image_node_type(graph)
        edge_index, dist = point_to_image_edges(graph, img)
        prob, valid = self.point_probs(graph)
        keep = valid[edge_index[0]]
        (src, dst), dist = edge_index[:, keep], dist[keep]
        q, k = self.query(x), self.key(graph[POINT].x.float())
        logits = (q[dst] * k[src]).sum(-1) / math.sqrt(self.key_dim) + self.distance_bias(self.distance(dist))[:, 0]
        attn = softmax(logits, dst, num_nodes=len(x))
        mixed = scatter(attn[:, None] * prob[src], dst, dim=0, dim_size=len(x), reduce="sum")
        covered = scatter(torch.ones_like(attn), dst, dim=0, dim_size=len(x), reduce="max")[:, None]
        mixed = covered * mixed + (1 - covered) / self.num_outputs
        return torch.log(mixed + self.eps)
