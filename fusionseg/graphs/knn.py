"""``knn``: pixel nodes joined to their k nearest neighbours in (position, scaled intensity) space."""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor

from fusionseg.graphs.base import GraphBuilder, ImageNodes, check_int
from fusionseg.graphs.cross import grid_node_edges, grid_point_edges
from fusionseg.graphs.geometry import GraphBuildError
from fusionseg.graphs.grid import geometry_for, pixel_nodes
from fusionseg.graphs.points import edge_distance, knn_excluding_self, symmetric_unique
from fusionseg.graphs.schema import PIXEL
from fusionseg.registry import GRAPH_BUILDERS
from fusionseg.sample import Sample


@GRAPH_BUILDERS.register("knn")
class KNNGraphBuilder(GraphBuilder):
    """Pixel graph whose edges follow image content, not just the grid.

    k:               neighbours per node, found with one vectorised cKDTree query over
                     (row, col, intensity_scale * channel values); positions in pixels, so
                     ``intensity_scale=10`` makes an intensity step of 0.1 cost as much as 1 pixel.
    symmetric:       add the reverse of every edge (degree >= k); else exactly k out-edges per node.
    stride:          one node per ``stride x stride`` block, as in ``grid``.
    intensity_edges: append |feature difference| per channel to the edge distance.
    add_position:    append normalised (row, col) in [0, 1] to the node features.
    cross_exact:     pixel->nearest point by cKDTree on exact sub-pixel positions (~5x slower at
                     2048^2) instead of a distance transform over the points' nearest pixels
                     (exact for pixel-centred points; otherwise off by at most 1.42 px).
    point_edges, point_k, cross_k: see `GraphBuilder`.

    Cost grows as N log N in pixels (a 3-D tree over every node): meant for tiles, not 4096^2.
    """

    image_node_type = PIXEL

    def __init__(
        self,
        k: int = 8,
        intensity_scale: float = 10.0,
        symmetric: bool = True,
        stride: int = 1,
        intensity_edges: bool = False,
        add_position: bool = False,
        cross_exact: bool = False,
        point_edges: str = "delaunay",
        point_k: int = 6,
        cross_k: int = 1,
    ) -> None:
        super().__init__(point_edges=point_edges, point_k=point_k, cross_k=cross_k)
        self.k = check_int("k", k)
        if not np.isfinite(intensity_scale) or intensity_scale < 0:
            raise GraphBuildError(f"intensity_scale must be a finite number >= 0, got {intensity_scale!r}.")
        self.intensity_scale = float(intensity_scale)
        self.symmetric = bool(symmetric)
        self.stride = check_int("stride", stride)
        self.intensity_edges = bool(intensity_edges)
        self.add_position = bool(add_position)
        self.cross_exact = bool(cross_exact)

    def image_feature_dim(self, c: int) -> int:
        return c + 2 * self.add_position

    def build_image(self, sample: Sample) -> ImageNodes:
        geom = geometry_for(sample.height, sample.width, 4, (), self.stride, cache=True)  # nodes only
        _, x, y = pixel_nodes(sample, geom, self.add_position)
        channels = x[:, : sample.image.shape[0]]
        edge_index = self._knn_edges(geom.pos, channels)
        edge_attr = edge_distance(geom.pos, geom.pos, edge_index)
        if self.intensity_edges:
            edge_attr = torch.cat([edge_attr, (channels[edge_index[1]] - channels[edge_index[0]]).abs()], 1)
        return ImageNodes(x, geom.pos, edge_index, edge_attr, geom.pixel_to_node, y, layout=geom)

    def _knn_edges(self, pos: Tensor, channels: Tensor) -> Tensor:
        m = len(pos)
        k = min(self.k, m - 1)
        if k < 1:
            return torch.empty(2, 0, dtype=torch.long)
        space = torch.cat([pos, self.intensity_scale * channels], 1).double().numpy()
        idx, _ = knn_excluding_self(cKDTree(space), space, k)
        src = np.repeat(np.arange(m, dtype=np.int64), k)
        if self.symmetric:
            return torch.from_numpy(symmetric_unique(src, idx.ravel(), m))
        return torch.from_numpy(np.stack([src, idx.ravel().astype(np.int64)]))

    def point_to_image(self, coords: Tensor, image: ImageNodes) -> Tensor:
        return grid_point_edges(coords, image.layout, self.cross_k)

    def image_to_point(self, coords: Tensor, image: ImageNodes) -> Tensor:
        return grid_node_edges(coords, image.layout, self.cross_k, self.cross_exact)
