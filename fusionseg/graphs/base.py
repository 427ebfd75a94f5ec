"""Shared machinery of every graph builder: option checks, point nodes, cross edges, assembly."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fusionseg.graphs.geometry import GraphBuildError
from fusionseg.graphs.points import POINT_EDGE_METHODS, edge_distance, empty_edges, point_point_edges
from fusionseg.graphs.schema import PIXEL, POINT, SegGraph, edge_types
from fusionseg.sample import IGNORE_INDEX, Sample

# Delaunay (qhull) releases the GIL: overlap it with the image side on large point sets.
_THREAD_MIN_POINTS = 2000
_POOLS: dict[int, ThreadPoolExecutor] = {}


def _pool() -> ThreadPoolExecutor:
    """One worker thread per process (a pool inherited through fork, e.g. by DataLoader workers, has no thread)."""
    pid = os.getpid()
    if pid not in _POOLS:
        _POOLS[pid] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fusionseg-graphs")
    return _POOLS[pid]


@dataclass
class ImageNodes:
    """Image side of a graph: node features, positions (pixels), image-image edges, pixel map."""

    x: Tensor  # (M, F) float32
    pos: Tensor  # (M, 2) float32, (row, col) pixels
    edge_index: Tensor  # (2, E) long
    edge_attr: Tensor  # (E, A) float32, column 0 = distance in pixels
    pixel_to_node: Tensor  # (H*W,) long
    y: Tensor | None = None  # (M,) long majority label
    layout: Any = None  # builder-specific geometry for cross edges (grid geometry, region labels)


def check_int(name: str, value: Any, low: int = 1) -> int:
    """``value`` as an int >= ``low`` or a `GraphBuildError` naming the option."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise GraphBuildError(f"{name} must be an integer >= {low}, got {value!r}.")
    return int(value)


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise GraphBuildError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}.")
    return value


def check_sample(sample: Sample) -> None:
    """Cheap structural checks (a `Sample` validated its contents at construction)."""
    if not isinstance(sample, Sample):
        raise GraphBuildError(f"graph builders take a fusionseg.Sample, got {type(sample).__name__}.")
    img = sample.image
    if img.dim() != 3 or min(img.shape) == 0:
        raise GraphBuildError(f"image must be (C, H, W) with all sizes > 0, got {tuple(img.shape)}.")
    if not torch.isfinite(img).all():
        raise GraphBuildError("image contains NaN or inf; fill or mask those pixels before building a graph.")


def majority_label(pixel_to_node: Tensor, target: Tensor, num_nodes: int) -> Tensor:
    """Most frequent non-ignored class of the pixels of each node (vectorised bincount on
    node*K+class); nodes with only ignored pixels get ``IGNORE_INDEX``. A float (regression)
    target gives each node the mean of its labelled (non-NaN) pixels, NaN where it has none."""
    t = target.reshape(-1)
    if t.is_floating_point():
        keep = ~torch.isnan(t)
        total = torch.zeros(num_nodes, dtype=t.dtype).index_add_(0, pixel_to_node[keep], t[keep])
        count = torch.zeros(num_nodes, dtype=t.dtype).index_add_(0, pixel_to_node[keep], torch.ones_like(t[keep]))
        return total / count  # 0 / 0 = NaN: no labelled pixel
    keep = t != IGNORE_INDEX
    k = int(t.max()) + 1 if keep.any() else 1
    counts = torch.bincount(pixel_to_node[keep] * k + t[keep], minlength=num_nodes * k).view(num_nodes, k)
    y = counts.argmax(1)
    y[counts.sum(1) == 0] = IGNORE_INDEX
    return y


class GraphBuilder:
    """Base of the registered builders: ``builder(sample) -> SegGraph`` (see ``schema.py``).

    point_edges: ``"delaunay"`` (paper) or ``"knn"`` (``point_k`` neighbours, symmetrised).
    point_k:     neighbours for kNN point edges and for the collinear-points fallback.
    cross_k:     each point joins its ``cross_k`` nearest image nodes and each image node its
                 ``cross_k`` nearest points (1 = the paper); 0 = no cross edges.
    """

    image_node_type: str = PIXEL

    def __init__(self, point_edges: str = "delaunay", point_k: int = 6, cross_k: int = 1) -> None:
        self.point_edges = check_choice("point_edges", point_edges, POINT_EDGE_METHODS)
        self.point_k = check_int("point_k", point_k)
        self.cross_k = check_int("cross_k", cross_k, low=0)

    def image_feature_dim(self, c: int) -> int:
        """Feature width of image nodes for a ``c``-channel image."""
        raise NotImplementedError

    def build_image(self, sample: Sample) -> ImageNodes:
        """Image nodes and image-image edges of ``sample``."""
        raise NotImplementedError

    def point_to_image(self, coords: Tensor, image: ImageNodes) -> Tensor:
        """(2, N*cross_k) ``point -> image node`` edges."""
        raise NotImplementedError

    def image_to_point(self, coords: Tensor, image: ImageNodes) -> Tensor:
        """(2, M*cross_k) ``image node -> point`` edges."""
        raise NotImplementedError

    def __call__(self, sample: Sample) -> SegGraph:
        check_sample(sample)
        coords = sample.point_coords.float()
        big = len(coords) >= _THREAD_MIN_POINTS
        future = _pool().submit(point_point_edges, coords, self.point_edges, self.point_k) if big else None
        image = self.build_image(sample)
        cross = self._cross_edges(coords, image)
        point_edges = future.result() if future else point_point_edges(coords, self.point_edges, self.point_k)
        return self._assemble(sample, image, point_edges, cross)

    def _cross_edges(self, coords: Tensor, image: ImageNodes) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        if self.cross_k == 0 or len(coords) == 0:
            return empty_edges(), empty_edges()
        p2i = self.point_to_image(coords, image)
        i2p = self.image_to_point(coords, image)
        if self.cross_k == 1:  # sources are 0..M-1 in order: skip gathering M image positions
            i2p_dist = edge_distance(image.pos, coords, i2p, src_is_arange=True)
        else:
            i2p_dist = edge_distance(image.pos, coords, i2p)
        return (p2i, edge_distance(coords, image.pos, p2i)), (i2p, i2p_dist)

    def _assemble(
        self, sample: Sample, image: ImageNodes, point_edges: tuple[Tensor, Tensor], cross: tuple[tuple, tuple]
    ) -> SegGraph:
        img = self.image_node_type
        et = edge_types(img)
        g = SegGraph()
        g[img].x, g[img].pos = image.x, image.pos
        if image.y is not None:
            g[img].y = image.y
        g[POINT].x, g[POINT].pos = sample.point_features, sample.point_coords.float()
        g[POINT].num_nodes = sample.num_points
        if sample.point_target is not None:
            g[POINT].y = sample.point_target
        g[et["image"]].edge_index, g[et["image"]].edge_attr = image.edge_index, image.edge_attr
        g[et["point"]].edge_index, g[et["point"]].edge_attr = point_edges
        p2i, i2p = cross
        g[et["point_to_image"]].edge_index, g[et["point_to_image"]].edge_attr = p2i
        g[et["image_to_point"]].edge_index, g[et["image_to_point"]].edge_attr = i2p
        g.pixel_to_node = image.pixel_to_node
        g.image_size = torch.tensor([[sample.height, sample.width]], dtype=torch.long)
        if sample.target is not None:
            g.pixel_y = sample.target.reshape(-1)
        return g

    def _options(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._options().items())
        return f"{type(self).__name__}({args})"
