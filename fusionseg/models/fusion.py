"""Fusion modules: combine image nodes and (already encoded) point nodes of a `SegGraph`.

``fu(graph) -> (M_image_nodes, fu.out_dim)``. ``graph[point].x`` must already be encoded to
``point_dim`` features; ``graph[image_node_type].x`` has ``image_dim`` features. Distances are
in pixels (edge_attr column 0, or computed from ``pos`` where an edge type has no edge_attr).

- ``early``:  the paper's scheme, one zero-padded homogeneous graph (`fusionseg.graphs.to_homogeneous`).
- ``hetero``: typed message passing over the four schema edge types, one backbone per edge type.
- ``cross-attention``: image backbone, then each image node attends over its nearest points.
- ``late``:   image backbone and point MLP, mixed per node by a learned gate.
- ``image-only``: the image backbone alone (the BSE-only baseline).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.data import HeteroData
from torch_geometric.utils import scatter, softmax

import fusionseg.graphs
from fusionseg.contracts import ContractError
from fusionseg.errors import FusionSegError
from fusionseg.graphs.schema import NEAR, PIXEL, POINT, REGION, TO, edge_types
from fusionseg.models.backbones import Backbone
from fusionseg.registry import BACKBONES, FUSIONS


class FusionError(FusionSegError):
    """Bad fusion configuration or graph; the message names the problem and the fix."""


def edge_distance(graph: HeteroData, edge_type: tuple[str, str, str]) -> Tensor:
    """Distance in pixels of each edge of ``edge_type``, (E,): edge_attr column 0, else from node ``pos``."""
    store = graph[edge_type]
    if "edge_attr" in store:
        return store.edge_attr[:, 0]
    src, dst = store.edge_index
    return (graph[edge_type[0]].pos[src] - graph[edge_type[2]].pos[dst]).norm(dim=-1)


def point_to_image_edges(graph: HeteroData, img: str) -> tuple[Tensor, Tensor]:
    """(2, E) edges point -> image node and their distances (E,), for propagating point information.

    Prefers ``(img, "to", point)`` reversed: every image node then hears from its k nearest points.
    ``(point, "to", img)`` (each point's k nearest image nodes) reaches only k nodes per point, so
    it is used only when the graph has no image -> point edges.
    """
    forward, reverse = (POINT, TO, img), (img, TO, POINT)
    if reverse in graph.edge_types:
        return graph[reverse].edge_index.flip(0), edge_distance(graph, reverse)
    if forward in graph.edge_types:
        return graph[forward].edge_index, edge_distance(graph, forward)
    raise FusionError(f"The graph has neither {forward} nor {reverse} edges; build it with cross edges (k > 0).")


def image_context_of_points(graph: HeteroData, img: str, h_img: Tensor) -> Tensor:
    """(N, D) image embedding of the node nearest each point (zeros for points without such an edge).

    Lets attention compare a pixel with what the image looks like *at* the measured point, so a
    point in another grain (other BSE level, across a boundary) can be told from one in the same.
    """
    n = graph[POINT].num_nodes
    forward = (POINT, TO, img)
    if forward not in graph.edge_types or graph[forward].edge_index.numel() == 0:
        return h_img.new_zeros(n, h_img.shape[1])
    (src, dst), dist = graph[forward].edge_index, edge_distance(graph, forward)
    weight = softmax(-dist, src, num_nodes=n)  # nearest node dominates; ties share
    return scatter(weight[:, None] * h_img[dst], src, dim=0, dim_size=n, reduce="sum")


class DistanceEncoding(nn.Module):
    """MLP of log1p(distance in pixels) -> (E, dim)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(1, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, distance: Tensor) -> Tensor:
        return self.mlp(torch.log1p(distance.abs())[:, None])


class Fusion(nn.Module):
    """Base: argument checks, the image backbone factory, graph validation."""

    out_dim: int

    def __init__(
        self,
        image_dim: int,
        point_dim: int,
        hidden_channels: int,
        image_node_type: str = PIXEL,
        backbone: str = "sage",
        backbone_kwargs: dict[str, Any] | None = None,
        num_layers: int = 3,
    ) -> None:
        super().__init__()
        if min(image_dim, point_dim, hidden_channels, num_layers) < 1:
            raise FusionError(
                f"image_dim, point_dim, hidden_channels and num_layers must be >= 1, got "
                f"{image_dim}, {point_dim}, {hidden_channels}, {num_layers}."
            )
        if image_node_type not in (PIXEL, REGION):
            raise FusionError(f"image_node_type must be {PIXEL!r} or {REGION!r}, got {image_node_type!r}.")
        self.image_dim, self.point_dim, self.hidden = image_dim, point_dim, hidden_channels
        self.img = image_node_type
        self.backbone_name = backbone
        self.backbone_kwargs = dict(backbone_kwargs or {})
        self.backbone_kwargs.setdefault("num_layers", num_layers)
        self.num_layers = int(self.backbone_kwargs["num_layers"])
        self.out_dim = hidden_channels

    def make_backbone(self, in_channels: int, **override: Any) -> Backbone:
        """A ``BACKBONES`` entry (or class_path) built with the one signature of `fusionseg.contracts.Backbone`."""
        kwargs = {"edge_dim": 1, **self.backbone_kwargs, **override}
        net = BACKBONES.create(self.backbone_name, in_channels=in_channels, hidden_channels=self.hidden, **kwargs)
        width = getattr(net, "out_channels", None)
        if not isinstance(width, int) or not callable(net):
            raise ContractError(
                f"backbone {self.backbone_name!r} built a {type(net).__name__} without an int out_channels attribute "
                "(its output width) or not callable as backbone(x, edge_index, edge_attr); see "
                "fusionseg.contracts.Backbone."
            )
        return net

    def check(self, graph: HeteroData) -> None:
        """Raise `FusionError` if node types or feature widths do not match the module."""
        for nt, dim, fix in ((self.img, self.image_dim, "image_dim"), (POINT, self.point_dim, "point_dim")):
            if nt not in graph.node_types:
                raise FusionError(
                    f"The graph has no {nt!r} nodes (node types: {graph.node_types}); "
                    f"set image_node_type to match the graph builder."
                )
            x = graph[nt].x
            if x.dim() != 2 or x.shape[1] != dim:
                raise FusionError(
                    f"graph[{nt!r}].x has shape {tuple(x.shape)} but the fusion expects {dim} columns ({fix}); "
                    "encode point spectra before fusion and set image_dim/point_dim from the data."
                )

    def image_branch(self, backbone: Backbone, graph: HeteroData, x: Tensor | None = None) -> Tensor:
        """Run ``backbone`` on the image-image edges, (M, hidden); ``x`` defaults to the image features."""
        et = (self.img, NEAR, self.img)
        x = graph[self.img].x if x is None else x
        if getattr(backbone, "grid_native", False):  # convolution over the pixel lattice
            return backbone.forward_grid(x, graph)
        if et not in graph.edge_types:
            raise FusionError(f"The graph has no {et} edges; the image branch needs them.")
        edge_attr = edge_distance(graph, et)[:, None] if getattr(backbone, "supports_edge_attr", True) else None
        return backbone(x, graph[et].edge_index, edge_attr)


@FUSIONS.register("early")
class EarlyFusion(Fusion):
    """Repka et al. (2025): image and point nodes in one graph, features zero-padded to image_dim + point_dim.

    ``point_height``: px above the image plane at which points sit for cross-edge lengths (the paper's code: 5).
    """

    def __init__(
        self, image_dim: int, point_dim: int, hidden_channels: int, point_height: float = 5.0, **kwargs: Any
    ) -> None:
        super().__init__(image_dim, point_dim, hidden_channels, **kwargs)
        if point_height < 0:
            raise FusionError(f"point_height must be >= 0 (pixels above the image plane), got {point_height}.")
        self.point_height = float(point_height)
        self.backbone = self.make_backbone(image_dim + point_dim)
        require_graph_backbone(self.backbone, self.backbone_name, "early")
        self.out_dim = self.backbone.out_channels

    def forward(self, graph: HeteroData) -> Tensor:
        self.check(graph)
        to_homogeneous = getattr(fusionseg.graphs, "to_homogeneous", None)
        if to_homogeneous is None:
            raise FusionError("fusionseg.graphs.to_homogeneous is missing; early fusion needs it.")
        homo = to_homogeneous(graph, self.point_height)
        edge_attr = homo.edge_attr[:, :1] if getattr(homo, "edge_attr", None) is not None else None
        if not getattr(self.backbone, "supports_edge_attr", True):
            edge_attr = None
        out = self.backbone(homo.x, homo.edge_index, edge_attr)
        return out[: int(homo.num_image_nodes)]


@FUSIONS.register("hetero")
class HeteroFusion(Fusion):
    """Per-type input Linear to hidden, then ``num_layers`` rounds of typed message passing over the four edge types.

    Each round runs one single-layer ``backbone`` (from ``BACKBONES``, the one signature every fusion uses) per
    edge type on that edge type's graph: for edges between two node types, source and destination nodes are
    stacked into one node set and the destination rows kept. Then x <- LayerNorm(x + dropout(relu(sum over
    incoming edge types))). Point -> image messages run over each image node's k nearest points
    (`point_to_image_edges`), so every node hears one. ``backbone_kwargs`` (``heads``, ``dropout``, ...) go
    to every per-type backbone; ``dropout`` is also applied after each round.
    """

    def __init__(self, image_dim: int, point_dim: int, hidden_channels: int, **kwargs: Any) -> None:
        super().__init__(image_dim, point_dim, hidden_channels, **kwargs)
        p = float(self.backbone_kwargs.get("dropout", 0.0))
        self.edge_types = list(edge_types(self.img).values())
        self.lin_in = nn.ModuleDict(
            {self.img: nn.Linear(image_dim, self.hidden), POINT: nn.Linear(point_dim, self.hidden)}
        )
        self.convs = nn.ModuleList(
            nn.ModuleDict({"__".join(et): self.make_backbone(self.hidden, num_layers=1) for et in self.edge_types})
            for _ in range(self.num_layers)
        )
        for conv in self.convs[0].values():
            require_graph_backbone(conv, self.backbone_name, "hetero")
        self.norms = nn.ModuleList(
            nn.ModuleDict({nt: nn.LayerNorm(self.hidden) for nt in (self.img, POINT)}) for _ in range(self.num_layers)
        )
        self.dropout = nn.Dropout(p)

    def forward(self, graph: HeteroData) -> Tensor:
        self.check(graph)
        x = {nt: lin(graph[nt].x) for nt, lin in self.lin_in.items()}
        present = [et for et in self.edge_types if et in graph.edge_types]
        edges = {et: (graph[et].edge_index, edge_distance(graph, et)[:, None]) for et in present}
        if (POINT, TO, self.img) in present:  # every image node hears its k nearest points, not only k per point
            edge_index, d = point_to_image_edges(graph, self.img)
            edges[POINT, TO, self.img] = (edge_index, d[:, None])
        for convs, norms in zip(self.convs, self.norms, strict=True):
            out: dict[str, Tensor] = {}
            for (src, rel, dst), (edge_index, dist) in edges.items():
                h = typed_messages(convs["__".join((src, rel, dst))], x[src], x[dst], edge_index, dist, src == dst)
                out[dst] = out[dst] + h if dst in out else h
            x = {nt: norms[nt](h + self.dropout(torch.relu(out[nt]))) if nt in out else h for nt, h in x.items()}
        return x[self.img]


def typed_messages(
    backbone: nn.Module, x_src: Tensor, x_dst: Tensor, edge_index: Tensor, dist: Tensor, same: bool
) -> Tensor:
    """A homogeneous ``backbone`` over one edge type: (M_dst, out). Two node types are stacked (sources first)."""
    edge_attr = dist if getattr(backbone, "supports_edge_attr", True) else None
    if same:
        return backbone(x_dst, edge_index, edge_attr)
    shifted = torch.stack([edge_index[0], edge_index[1] + len(x_src)])
    return backbone(torch.cat([x_src, x_dst]), shifted, edge_attr)[len(x_src) :]


def require_graph_backbone(backbone: nn.Module, name: str, fusion: str) -> None:
    """A backbone running only on the pixel lattice (``grid_native``) cannot pass messages on an edge list."""
    if getattr(backbone, "grid_native", False):
        raise FusionError(
            f"backbone {name!r} runs on the pixel lattice only (grid_native) and cannot serve the {fusion!r} fusion, "
            "which passes messages along graph edges; use a GNN backbone (sage, gcn, gat, ...) or another fusion "
            "(cross-attention, late, image-only)."
        )


class PointAttention(nn.Module):
    """Multi-head attention of image nodes (queries) over their point edges (keys/values).

    logits_ij = q_i . (k_j + e_ij) / sqrt(d), out_i = sum_j a_ij (v_j + e_ij), with e_ij a learned
    encoding of the distance in pixels (`DistanceEncoding` then a linear map), then a gated skip
    (as PyG ``TransformerConv(beta=True)``). When every image node has the same number k of point
    edges listed node by node — what the builders produce for ``cross_k`` nearest points —
    attention runs on dense (M, k) tensors in chunks of ``chunk`` nodes: no scatter (several
    times faster on CPU) and per-edge tensors only one chunk at a time (bounded memory on large
    fields). Otherwise PyG's segment softmax + scatter.
    """

    chunk = 65536

    def __init__(self, hidden: int, heads: int, distance_dim: int) -> None:
        super().__init__()
        if hidden % heads:
            raise FusionError(f"hidden_channels={hidden} must be divisible by attention_heads={heads}.")
        self.heads, self.dh = heads, hidden // heads
        self.q, self.k, self.v = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)
        self.distance = DistanceEncoding(distance_dim)
        self.e = nn.Linear(distance_dim, hidden, bias=False)
        self.skip = nn.Linear(hidden, hidden)
        self.beta = nn.Linear(3 * hidden, 1, bias=False)

    def edge_encoding(self, dist: Tensor) -> Tensor:
        """(..., heads, dh) encoding of distances in pixels."""
        return self.e(self.distance(dist.reshape(-1))).view(*dist.shape, self.heads, self.dh)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, dist: Tensor) -> Tensor:
        """q (m, H, dh); k, v (m, kn, H, dh); dist (m, kn) -> (m, H, dh)."""
        e = self.edge_encoding(dist)
        logits = (q[:, None] * (k + e)).sum(-1) / self.dh**0.5
        return (logits.softmax(1)[..., None] * (v + e)).sum(1)

    def forward(self, h_pt: Tensor, h_img: Tensor, edge_index: Tensor, dist: Tensor) -> Tensor:
        src, dst = edge_index  # point -> image node
        m, hd = h_img.shape[0], (self.heads, self.dh)
        q = self.q(h_img).view(m, *hd)
        k_pt, v_pt = self.k(h_pt).view(-1, *hd), self.v(h_pt).view(-1, *hd)
        kn = dst.numel() // max(m, 1)
        if kn and dst.numel() == m * kn and bool((dst.view(m, kn) == dst[::kn, None]).all()):
            order, nbr, d = dst[::kn], src.view(m, kn), dist.view(m, kn)
            parts = [
                self._attend(q[order[i : i + self.chunk]], k_pt[nbr[i : i + self.chunk]],
                             v_pt[nbr[i : i + self.chunk]], d[i : i + self.chunk])
                for i in range(0, m, self.chunk)
            ]  # fmt: skip
            out = torch.zeros_like(q).index_copy(0, order, torch.cat(parts))
        else:
            e = self.edge_encoding(dist)
            logits = (q[dst] * (k_pt[src] + e)).sum(-1) / self.dh**0.5
            attn = softmax(logits, dst, num_nodes=m)
            out = scatter(attn[..., None] * (v_pt[src] + e), dst, dim=0, dim_size=m, reduce="sum")
        out = out.reshape(m, -1)
        skip = self.skip(h_img)
        beta = torch.sigmoid(self.beta(torch.cat([out, skip, out - skip], -1)))
        return beta * skip + (1 - beta) * out


@FUSIONS.register("cross-attention", "cross")
class CrossAttentionFusion(Fusion):
    """Image backbone, then multi-head attention of each image node over its nearest points.

    Each image node attends over its k nearest points (`PointAttention`). Keys and values are
    point embeddings (spectral MLP + the image embedding at the point's location) plus a learned
    distance encoding; output LayerNorm(image + attention).
    Image nodes without point edges keep their image embedding.
    """

    def __init__(
        self,
        image_dim: int,
        point_dim: int,
        hidden_channels: int,
        attention_heads: int = 4,
        distance_dim: int = 16,
        refine_layers: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(image_dim, point_dim, hidden_channels, **kwargs)
        # Optional second image pass after attention: spreads what points said within grains.
        self.refine = self.make_backbone(hidden_channels, num_layers=refine_layers) if refine_layers else None
        self.backbone = self.make_backbone(image_dim, out_channels=None)
        self.point_mlp = nn.Sequential(
            nn.Linear(point_dim, self.hidden), nn.GELU(), nn.Linear(self.hidden, self.hidden)
        )
        self.context = nn.Linear(self.hidden, self.hidden)
        self.attention = PointAttention(self.hidden, attention_heads, distance_dim)
        self.norm = nn.LayerNorm(self.hidden)

    def forward(self, graph: HeteroData) -> Tensor:
        self.check(graph)
        h_img = self.image_branch(self.backbone, graph)
        edge_index, dist = point_to_image_edges(graph, self.img)
        h_pt = self.point_mlp(graph[POINT].x) + self.context(image_context_of_points(graph, self.img, h_img))
        attended = self.norm(h_img + self.attention(h_pt, h_img, edge_index, dist))
        if self.refine is None:
            return attended
        return attended + self.image_branch(self.refine, graph, x=attended)


@FUSIONS.register("late")
class LateFusion(Fusion):
    """Image backbone and point MLP, mixed per image node by a learned gate.

    Point embeddings reach image node i as sum_j w_ij p_j with w = softmax_j(-d_ij / tau) over its
    point edges (tau learned, pixels). gate = sigmoid(MLP([h_img, p, exp(-d_min / tau), has_point]));
    out = gate * p + (1 - gate) * h_img.
    """

    def __init__(
        self, image_dim: int, point_dim: int, hidden_channels: int, tau_px: float = 5.0, **kwargs: Any
    ) -> None:
        super().__init__(image_dim, point_dim, hidden_channels, **kwargs)
        if tau_px <= 0:
            raise FusionError(f"tau_px (distance scale in pixels) must be > 0, got {tau_px}.")
        self.backbone = self.make_backbone(image_dim, out_channels=None)
        h = self.hidden
        self.point_mlp = nn.Sequential(nn.Linear(point_dim, h), nn.GELU(), nn.Linear(h, h))
        self.log_tau = nn.Parameter(torch.tensor(float(tau_px)).log())
        self.gate = nn.Sequential(nn.Linear(2 * h + 2, h), nn.GELU(), nn.Linear(h, h))

    def forward(self, graph: HeteroData) -> Tensor:
        self.check(graph)
        h_img = self.image_branch(self.backbone, graph)
        (src, dst), dist = point_to_image_edges(graph, self.img)
        m, tau = h_img.shape[0], self.log_tau.exp()
        weight = softmax(-dist / tau, dst, num_nodes=m)
        p = scatter(weight[:, None] * self.point_mlp(graph[POINT].x)[src], dst, dim=0, dim_size=m, reduce="sum")
        has = scatter(torch.ones_like(dist), dst, dim=0, dim_size=m, reduce="max")
        near = scatter(torch.exp(-dist / tau), dst, dim=0, dim_size=m, reduce="max")  # exp(-d_min / tau)
        g = torch.sigmoid(self.gate(torch.cat([h_img, p, near[:, None], has[:, None]], dim=1)))
        return g * p + (1 - g) * h_img


@FUSIONS.register("image-only", "bse-only")
class ImageOnlyFusion(Fusion):
    """The image backbone alone; points are ignored. The image-only baseline (BSE only) and an ablation."""

    def __init__(self, image_dim: int, point_dim: int, hidden_channels: int, **kwargs: Any) -> None:
        super().__init__(image_dim, point_dim, hidden_channels, **kwargs)
        self.backbone = self.make_backbone(image_dim, out_channels=None)

    def forward(self, graph: HeteroData) -> Tensor:
        self.check(graph)
        return self.image_branch(self.backbone, graph)
