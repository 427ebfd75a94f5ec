"""Homogeneous GNN backbones wrapping `torch_geometric.nn.models` (GCN, GraphSAGE, GIN, GAT, GATv2, Transformer).

All share ``bb(x, edge_index, edge_attr=None) -> (M, out_channels or hidden_channels)``, where
``edge_attr`` follows the `SegGraph` schema: (E, A), column 0 = distance in pixels. Layers that
take edge features (GAT, GATv2, Transformer) get ``[log1p(distance), other columns]``; GCN gets
the edge weight ``exp(-distance / mean distance)`` (scale-free across pixel and region graphs);
GraphSAGE and GIN ignore edge attributes.
"""

from __future__ import annotations

from typing import Any, Final

import torch
from torch import Tensor, nn
from torch_geometric.nn import TransformerConv
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.models import GAT, GCN, GIN, GraphSAGE
from torch_geometric.nn.models.basic_gnn import BasicGNN

from fusionseg.errors import FusionSegError
from fusionseg.registry import BACKBONES


class BackboneError(FusionSegError):
    """Bad backbone configuration or input; the message names the problem and the fix."""


class TransformerGNN(BasicGNN):
    """A `BasicGNN` of `TransformerConv` layers (graph transformer, Shi et al. 2021), heads concatenated."""

    supports_edge_weight: Final[bool] = False
    supports_edge_attr: Final[bool] = True
    supports_norm_batch: Final[bool]

    def init_conv(self, in_channels: int | tuple[int, int], out_channels: int, **kwargs: Any) -> MessagePassing:
        heads = kwargs.pop("heads", 1)
        concat = not getattr(self, "_is_conv_to_out", False)
        if concat and out_channels % heads != 0:
            raise BackboneError(f"TransformerConv width {out_channels} must be divisible by heads={heads}.")
        width = out_channels // heads if concat else out_channels
        return TransformerConv(in_channels, width, heads=heads, concat=concat, dropout=self.dropout.p, **kwargs)


def edge_features(edge_attr: Tensor) -> Tensor:
    """Schema edge attributes -> layer edge features: column 0 (distance, pixels) becomes log1p(distance)."""
    return torch.cat([torch.log1p(edge_attr[:, :1].abs()), edge_attr[:, 1:]], dim=1)


def distance_weight(edge_attr: Tensor) -> Tensor:
    """GCN edge weight exp(-d / mean d) from the distance column, (E,)."""
    d = edge_attr[:, 0].abs()
    return torch.exp(-d / d.mean().clamp_min(1e-6))


class Backbone(nn.Module):
    """A PyG `BasicGNN` plus schema-aware edge handling and an optional residual connection.

    ``residual=True`` adds each layer's input to its output where widths match (not with ``jk``).
    ``heads`` and ``edge_dim`` only apply to attention backbones; others accept and ignore them.
    """

    gnn_class: type[BasicGNN]
    attention: bool = False
    extra: dict[str, Any] = {}

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        num_layers: int,
        out_channels: int | None = None,
        dropout: float = 0.0,
        norm: str | None = None,
        jk: str | None = None,
        edge_dim: int | None = None,
        heads: int = 1,
        residual: bool = False,
        act: str = "relu",
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if min(in_channels, hidden_channels, num_layers) < 1:
            raise BackboneError(
                f"in_channels, hidden_channels and num_layers must be >= 1, got "
                f"{in_channels}, {hidden_channels}, {num_layers}."
            )
        if residual and jk is not None:
            raise BackboneError("residual=True and jk are alternatives; pass one of them.")
        if self.attention:
            if hidden_channels % heads != 0:
                raise BackboneError(f"hidden_channels={hidden_channels} must be divisible by heads={heads}.")
            kwargs.update(heads=heads, edge_dim=edge_dim)
        self.gnn = self.gnn_class(
            in_channels,
            hidden_channels,
            num_layers,
            out_channels=out_channels,
            dropout=dropout,
            act=act,
            norm=norm,
            jk=jk,
            **self.extra,
            **kwargs,
        )
        self.out_channels: int = self.gnn.out_channels
        self.residual = residual
        self.edge_dim = edge_dim if self.attention else None
        # True where edge_attr changes the output: as edge features (attention) or edge weights (GCN).
        self.supports_edge_attr: bool = bool(self.gnn.supports_edge_weight or self.edge_dim)

    def _conv_kwargs(self, edge_attr: Tensor | None) -> dict[str, Tensor]:
        if edge_attr is None:
            return {}
        if edge_attr.dim() == 1:
            edge_attr = edge_attr[:, None]
        if self.gnn.supports_edge_weight:
            return {"edge_weight": distance_weight(edge_attr)}
        if self.edge_dim:
            if edge_attr.shape[1] != self.edge_dim:
                raise BackboneError(
                    f"edge_attr has {edge_attr.shape[1]} columns but the backbone was built with "
                    f"edge_dim={self.edge_dim}; pass edge_dim=edge_attr.shape[1] (or edge_attr[:, :1])."
                )
            return {"edge_attr": edge_features(edge_attr)}
        return {}

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None) -> Tensor:
        """Node features (M, in_channels), edges (2, E), optional schema edge_attr (E, A) -> (M, out)."""
        if x.dim() != 2 or x.shape[1] != self.gnn.in_channels:
            raise BackboneError(f"x must be (M, {self.gnn.in_channels}), got {tuple(x.shape)}.")
        kwargs = self._conv_kwargs(edge_attr)
        if not self.residual:
            return self.gnn(x, edge_index, **kwargs)
        return self._forward_residual(x, edge_index, kwargs)

    def _forward_residual(self, x: Tensor, edge_index: Tensor, kwargs: dict[str, Tensor]) -> Tensor:
        # BasicGNN has no residual option, so this repeats its layer loop (convs, norms, act) with a skip.
        g = self.gnn
        for i, (conv, norm) in enumerate(zip(g.convs, g.norms, strict=True)):
            h = conv(x, edge_index, **kwargs)
            if i < g.num_layers - 1:
                h = g.dropout(g.act(norm(h)))
            x = x + h if h.shape == x.shape else h
        return x


@BACKBONES.register("gcn")
class GCNBackbone(Backbone):
    """Graph convolution (Kipf & Welling 2017) with distance edge weights."""

    gnn_class = GCN


@BACKBONES.register("sage", "graphsage")
class SAGEBackbone(Backbone):
    """GraphSAGE, mean aggregation (Hamilton et al. 2017)."""

    gnn_class = GraphSAGE


@BACKBONES.register("gin")
class GINBackbone(Backbone):
    """Graph isomorphism network (Xu et al. 2019)."""

    gnn_class = GIN


@BACKBONES.register("gat")
class GATBackbone(Backbone):
    """Graph attention (Velickovic et al. 2018), distance as edge feature; the paper's backbone."""

    gnn_class = GAT
    attention = True


@BACKBONES.register("gatv2")
class GATv2Backbone(Backbone):
    """GATv2 dynamic attention (Brody et al. 2022)."""

    gnn_class = GAT
    attention = True
    extra = {"v2": True}


@BACKBONES.register("transformer")
class TransformerBackbone(Backbone):
    """Stack of TransformerConv layers (Shi et al. 2021), distance as edge feature."""

    gnn_class = TransformerGNN
    attention = True
