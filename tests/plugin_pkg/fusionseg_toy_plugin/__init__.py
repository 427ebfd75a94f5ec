"""A third-party package adding one part of each kind to fusionseg via entry points (used by the test suite).

Every part implements a contract of `fusionseg.contracts` and nothing else of the core:

* ``toy-halves`` (data source): images whose left half is dark (class 0) and right half bright (class 1),
  points whose 3 features say their class (noisily);
* ``toy-linear`` (point encoder): a Linear layer whose input width comes from the data;
* ``toy-rows`` (graph builder): one node per pixel, edges along rows only;
* ``toy-mlp`` (backbone): mean-of-neighbours message passing written by hand (not PyG).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from fusionseg.contracts import PointEncoder
from fusionseg.graphs.base import GraphBuilder, ImageNodes
from fusionseg.registry import BACKBONES, DATA_SOURCES, GRAPH_BUILDERS, POINT_ENCODERS
from fusionseg.sample import Sample, SampleMeta


@DATA_SOURCES.register("toy-halves")
class ToyHalves:
    """``num_fields`` fields of ``size``² px, ``point_fraction`` of the pixels measured; one seed per split."""

    def __init__(self, split: str, num_fields: int, seed: int, size: int = 12, point_fraction: float = 0.1) -> None:
        self.split, self.num_fields, self.seed, self.size = split, num_fields, seed, size
        self.n_points = max(2, round(point_fraction * size * size))

    def __len__(self) -> int:
        return self.num_fields

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < self.num_fields:
            raise IndexError(index)
        g = torch.Generator().manual_seed(self.seed * 1000 + index)
        s = self.size
        target = (torch.arange(s) >= s // 2).long().expand(s, s).clone()
        image = 0.2 + 0.6 * target[None].float() + 0.05 * torch.randn(1, s, s, generator=g)
        coords = torch.randint(0, s, (self.n_points, 2), generator=g).float()
        labels = target[coords[:, 0].long(), coords[:, 1].long()]
        feats = nn.functional.one_hot(labels, 3).float() + 0.1 * torch.randn(self.n_points, 3, generator=g)
        meta = SampleMeta(class_names=("dark", "bright"), name=f"{self.split}-{index}")
        return Sample(image, coords, feats, meta=meta, target=target, point_target=labels)


@POINT_ENCODERS.register("toy-linear")
class ToyLinear(PointEncoder):
    """Linear map of the point features; ``in_dim`` is told by the data."""

    def __init__(self, in_dim: int, out_dim: int = 4) -> None:
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.lin = nn.Linear(in_dim, out_dim)

    def encode(self, features: Tensor) -> Tensor:
        return self.lin(features)


@GRAPH_BUILDERS.register("toy-rows")
class ToyRows(GraphBuilder):
    """Pixel nodes (features: the image channels) linked to their left/right neighbours; cross edges to the
    nearest pixel / nearest points."""

    def image_feature_dim(self, c: int) -> int:
        return c

    def build_image(self, sample: Sample) -> ImageNodes:
        h, w = sample.height, sample.width
        rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        pos = torch.stack([rows.reshape(-1), cols.reshape(-1)], 1).float()
        ids = torch.arange(h * w).view(h, w)
        left, right = ids[:, :-1].reshape(-1), ids[:, 1:].reshape(-1)
        edge_index = torch.cat([torch.stack([left, right]), torch.stack([right, left])], 1)
        x = sample.image.reshape(sample.image.shape[0], -1).T.float()
        return ImageNodes(x, pos, edge_index, torch.ones(edge_index.shape[1], 1), torch.arange(h * w), layout=(h, w))

    def point_to_image(self, coords: Tensor, image: ImageNodes) -> Tensor:
        h, w = image.layout
        rc = coords.round().long()
        node = rc[:, 0].clamp(0, h - 1) * w + rc[:, 1].clamp(0, w - 1)
        return torch.stack([torch.arange(len(coords)), node])

    def image_to_point(self, coords: Tensor, image: ImageNodes) -> Tensor:
        nearest = torch.cdist(image.pos, coords.float()).argmin(1)
        return torch.stack([torch.arange(len(image.pos)), nearest])


@BACKBONES.register("toy-mlp")
class ToyMLP(nn.Module):
    """``num_layers`` rounds of h <- relu(W_self h + W_nbr mean of in-neighbours); ignores edge attributes."""

    supports_edge_attr = False

    def __init__(
        self, in_channels: int, hidden_channels: int, num_layers: int = 1, out_channels: int | None = None, **_: object
    ) -> None:
        super().__init__()
        self.out_channels = out_channels or hidden_channels
        widths = [in_channels] + [hidden_channels] * (num_layers - 1) + [self.out_channels]
        self.own = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.nbr = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(widths[:-1], widths[1:], strict=True))

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None) -> Tensor:
        if edge_attr is not None:
            raise AssertionError("supports_edge_attr is False: the fusion must not pass edge_attr")
        for i, (own, nbr) in enumerate(zip(self.own, self.nbr, strict=True)):
            mean = scatter(x[edge_index[0]], edge_index[1], 0, dim_size=len(x), reduce="mean")
            x = own(x) + nbr(mean)
            x = torch.relu(x) if i < len(self.own) - 1 else x
        return x
