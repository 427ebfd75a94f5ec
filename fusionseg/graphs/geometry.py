"""Pure-geometry pieces of pixel grids (node positions, neighbour edges), cached per grid shape.

Units: positions and distances in pixels, (row, col) order. A strided grid has one node per
``stride x stride`` block; its position is the block centre (the last block may be partial).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from fusionseg.errors import FusionSegError

FOUR = ((0, 1), (1, 0), (0, -1), (-1, 0))
EIGHT = FOUR + ((1, 1), (1, -1), (-1, 1), (-1, -1))


class GraphBuildError(FusionSegError):
    """A graph builder got bad options or input; the message names the problem and the fix."""


@dataclass(frozen=True)
class EdgeBlock:
    """Edges of one neighbour offset: sources are the nodes ``[rows, cols]`` of the node grid."""

    dr: int
    dc: int
    rows: slice
    cols: slice
    start: int
    stop: int


@dataclass(frozen=True)
class GridGeometry:
    """Node grid of an ``h x w`` image at ``stride``; tensors are shared by every graph of that shape.

    Never modify these tensors in place: they are cached (`grid_geometry`) and reused.
    """

    h: int
    w: int
    stride: int
    row_centres: np.ndarray  # (hn,) float64 node row positions in pixels
    col_centres: np.ndarray  # (wn,) float64
    pos: Tensor  # (hn*wn, 2) float32
    pixel_to_node: Tensor  # (h*w,) long
    edge_index: Tensor  # (2, E) long, grouped by offset (see blocks)
    distance: Tensor  # (E, 1) float32, pixels
    blocks: tuple[EdgeBlock, ...]

    @property
    def hn(self) -> int:
        return len(self.row_centres)

    @property
    def wn(self) -> int:
        return len(self.col_centres)

    @property
    def num_nodes(self) -> int:
        return self.hn * self.wn


def block_centres(n: int, stride: int) -> np.ndarray:
    """Centres (pixels) of the blocks ``[i*stride, min((i+1)*stride, n))``."""
    start = np.arange(0, n, stride, dtype=np.float64)
    stop = np.minimum(start + stride, n)
    return (start + stop - 1) / 2


def _offsets(connectivity: int, dilation: tuple[int, ...]) -> list[tuple[int, int]]:
    base = FOUR if connectivity == 4 else EIGHT
    return [(d * dr, d * dc) for d in dilation for dr, dc in base]


def _blocks(hn: int, wn: int, offsets: list[tuple[int, int]]) -> tuple[EdgeBlock, ...]:
    blocks, start = [], 0
    for dr, dc in offsets:
        rows = slice(max(0, -dr), min(hn, hn - dr))
        cols = slice(max(0, -dc), min(wn, wn - dc))
        n = max(0, rows.stop - rows.start) * max(0, cols.stop - cols.start)
        if n:
            blocks.append(EdgeBlock(dr, dc, rows, cols, start, start + n))
            start += n
    return tuple(blocks)


def _shift(s: slice, d: int) -> slice:
    return slice(s.start + d, s.stop + d)


@functools.lru_cache(maxsize=4)
def grid_geometry(
    h: int, w: int, connectivity: int = 8, dilation: tuple[int, ...] = (1,), stride: int = 1
) -> GridGeometry:
    """Positions, pixel->node map and neighbour edges (both directions) of a strided pixel grid.

    Cached per argument tuple (LRU, 4 entries): the geometry does not depend on the image.
    Built with int32 node ids, stored as int64 as the schema requires.
    """
    rc, cc = block_centres(h, stride), block_centres(w, stride)
    hn, wn = len(rc), len(cc)
    ids = np.arange(hn * wn, dtype=np.int32).reshape(hn, wn)
    blocks = _blocks(hn, wn, _offsets(connectivity, dilation))
    n_edges = blocks[-1].stop if blocks else 0
    edge_index = np.empty((2, n_edges), dtype=np.int64)
    distance = np.empty(n_edges, dtype=np.float32)
    for b in blocks:  # loop over <= 8 * len(dilation) offsets, each a vectorised slice copy
        edge_index[0, b.start : b.stop] = ids[b.rows, b.cols].ravel()
        edge_index[1, b.start : b.stop] = ids[_shift(b.rows, b.dr), _shift(b.cols, b.dc)].ravel()
        if stride == 1:  # uniform spacing: one length per offset
            distance[b.start : b.stop] = np.hypot(b.dr, b.dc)
        else:  # the last block may be partial: exact centre-to-centre lengths
            d_row = rc[_shift(b.rows, b.dr)] - rc[b.rows]
            d_col = cc[_shift(b.cols, b.dc)] - cc[b.cols]
            distance[b.start : b.stop] = np.hypot(d_row[:, None], d_col[None, :]).ravel()
    pos = np.stack(np.meshgrid(rc, cc, indexing="ij"), axis=-1).reshape(-1, 2).astype(np.float32)
    if stride == 1:
        pixel_to_node = np.arange(h * w, dtype=np.int64)
    else:
        pixel_to_node = ((np.arange(h) // stride)[:, None] * wn + (np.arange(w) // stride)[None, :]).ravel()
    return GridGeometry(
        h=h,
        w=w,
        stride=stride,
        row_centres=rc,
        col_centres=cc,
        pos=torch.from_numpy(pos),
        pixel_to_node=torch.from_numpy(pixel_to_node.astype(np.int64, copy=False)),
        edge_index=torch.from_numpy(edge_index),
        distance=torch.from_numpy(distance)[:, None],
        blocks=blocks,
    )


def clear_geometry_cache() -> None:
    """Free the cached grid geometries (they can hold GBs for 4096^2 images)."""
    grid_geometry.cache_clear()


def pool_image(image: Tensor, stride: int) -> Tensor:
    """Block means (C, hn, wn) of a (C, H, W) image; partial edge blocks average their own pixels."""
    if stride == 1:
        return image
    return F.avg_pool2d(image[None].float(), stride, stride, ceil_mode=True)[0]


def grid_edge_attr(grid_image: Tensor, geometry: GridGeometry) -> Tensor:
    """(E, 1+C) [distance | |feature difference| per channel] of every grid edge.

    Differences come from shifted slices per offset (no index gathers), written in place.
    """
    c = grid_image.shape[0]
    out = torch.empty(len(geometry.distance), 1 + c, dtype=torch.float32)
    out[:, :1] = geometry.distance
    for b in geometry.blocks:  # one vectorised slice difference per offset
        src = grid_image[:, b.rows, b.cols]
        dst = grid_image[:, _shift(b.rows, b.dr), _shift(b.cols, b.dc)]
        out[b.start : b.stop, 1:] = (dst - src).abs().reshape(c, -1).T
    return out


def normalised_positions(pos: Tensor, h: int, w: int) -> Tensor:
    """(row, col) pixel positions scaled to [0, 1] by (H-1, W-1)."""
    scale = torch.tensor([max(h - 1, 1), max(w - 1, 1)], dtype=torch.float32)
    return pos / scale
