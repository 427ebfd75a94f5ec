"""Point-point edges (Delaunay or kNN) and nearest-neighbour helpers. Units: pixels, (row, col).

Duplicated points (identical coordinates) are kept as separate nodes. With Delaunay edges the
triangulation uses the first point of each duplicate set; every other copy is joined only to
that first copy by a distance-0 edge pair. With kNN edges duplicates simply find each other.
Edge sets are unique and symmetric (both directions present).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import Delaunay, QhullError, cKDTree
from torch import Tensor

POINT_EDGE_METHODS = ("delaunay", "knn")


def num_workers() -> int:
    """cKDTree worker threads: follow torch's thread setting (2 on the benchmark machine)."""
    return max(1, torch.get_num_threads())


def empty_edges() -> tuple[Tensor, Tensor]:
    return torch.empty(2, 0, dtype=torch.long), torch.empty(0, 1, dtype=torch.float32)


def symmetric_unique(src: np.ndarray, dst: np.ndarray, n: int) -> np.ndarray:
    """(2, E) int64 unique edges of ``src->dst`` plus ``dst->src``, self loops dropped, sorted."""
    keep = src != dst
    src, dst = src[keep].astype(np.int64), dst[keep].astype(np.int64)
    code = unique_ints(np.concatenate([src * n + dst, dst * n + src]))
    return np.stack([code // n, code % n])


def unique_ints(a: np.ndarray) -> np.ndarray:
    """Sorted unique values of an int array: sort + neighbour mask, ~10x faster than NumPy 2's
    hash-based ``np.unique`` on 10^5..10^7 int64 codes."""
    a = np.sort(a)
    keep = np.empty(len(a), dtype=bool)
    keep[:1] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


def knn_excluding_self(tree: cKDTree, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and distances (Q, k) of the k nearest tree points other than the query itself.

    Assumes query i is tree point i. Ties at distance 0 (duplicates) may hide ``i`` anywhere in
    the k+1 results, so ``i`` is moved last by a stable sort and the first k columns kept.
    """
    dist, idx = tree.query(queries, k=k + 1, workers=num_workers())
    dist, idx = dist.reshape(len(queries), k + 1), idx.reshape(len(queries), k + 1)
    is_self = idx == np.arange(len(queries))[:, None]
    order = np.argsort(is_self, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(idx, order, 1), np.take_along_axis(dist, order, 1)


def _knn_pairs(coords: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    k = min(k, len(coords) - 1)
    idx, _ = knn_excluding_self(cKDTree(coords), coords, k)
    return np.repeat(np.arange(len(coords)), k), idx.ravel()


def _delaunay_pairs(coords: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Triangle sides of the Delaunay triangulation; < 3 or collinear points fall back to kNN."""
    centred = coords - coords.mean(0)
    if len(coords) < 3 or np.linalg.matrix_rank(centred, tol=1e-9 * (1 + np.abs(centred).max())) < 2:
        return _knn_pairs(coords, k)  # collinear: a chain of nearest neighbours instead
    # Points on a pixel lattice are massively co-circular, which slows qhull 2x; a fixed 1e-6
    # relative jitter (triangulation only; distances use the true coordinates) avoids that.
    span = float(np.ptp(coords)) or 1.0
    jitter = np.random.default_rng(0).uniform(-1e-6, 1e-6, coords.shape) * span
    try:
        simplices = Delaunay(coords + jitter).simplices
    except QhullError:  # degenerate despite the rank check: fall back as for collinear points
        return _knn_pairs(coords, k)
    src = simplices[:, [0, 1, 2]].ravel()
    dst = simplices[:, [1, 2, 0]].ravel()
    lonely = np.flatnonzero(np.bincount(src, minlength=len(coords)) == 0)  # left out by qhull (near-duplicates)
    if len(lonely):
        idx, _ = knn_excluding_self(cKDTree(coords), coords[lonely], 1)
        src, dst = np.concatenate([src, lonely]), np.concatenate([dst, idx[:, 0]])
    return src, dst


def _deduplicated_delaunay(xy: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Delaunay pairs over unique coordinates; duplicates are joined to their first copy."""
    n = len(xy)
    keys = np.ascontiguousarray(xy).view(np.complex128).ravel()  # one sortable key per (row, col)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    if len(first) == n:
        return _delaunay_pairs(xy, k) if n > 1 else (np.empty(0, np.int64), np.empty(0, np.int64))
    reps = np.sort(first)  # keep input order: qhull is slower on sorted input
    src, dst = _delaunay_pairs(xy[reps], k) if len(reps) > 1 else (np.empty(0, np.int64), np.empty(0, np.int64))
    src, dst = reps[src], reps[dst]
    twins = np.flatnonzero(first[inverse] != np.arange(n))
    return np.concatenate([src, twins]), np.concatenate([dst, first[inverse[twins]]])


def point_point_edges(coords: Tensor, method: str = "delaunay", k: int = 6) -> tuple[Tensor, Tensor]:
    """Symmetric point-point ``edge_index`` (2, E) and distances (E, 1) in pixels.

    0 or 1 points: no edges. 2 points: one edge pair. Collinear points: kNN (``k``) fallback.
    """
    n = len(coords)
    if n < 2:
        return empty_edges()
    xy = coords.detach().cpu().double().numpy()
    if method == "knn":
        src, dst = _knn_pairs(xy, k)
    else:
        src, dst = _deduplicated_delaunay(xy, k)
    edge_index = torch.from_numpy(symmetric_unique(src, dst, n))
    return edge_index, edge_distance(coords, coords, edge_index)


def edge_distance(
    src_pos: Tensor, dst_pos: Tensor, edge_index: Tensor | None = None, src_is_arange: bool = False
) -> Tensor:
    """Euclidean length (E, 1) float32 in pixels of edges between two position sets.

    ``src_is_arange``: edge i starts at ``src_pos[i]`` (skips gathering M image positions).
    NumPy, not torch: single-threaded gathers avoid OpenMP start-up and contention costs.
    """
    a, b = src_pos.detach().cpu().float().numpy(), dst_pos.detach().cpu().float().numpy()
    if edge_index is not None:
        ei = edge_index.numpy()
        a, b = (a if src_is_arange else a[ei[0]]), b[ei[1]]
    dist = a[:, 0] - b[:, 0]  # column-wise and in place: no (E, 2) temporaries
    dist *= dist
    other = a[:, 1] - b[:, 1]
    other *= other
    dist += other
    return torch.from_numpy(np.sqrt(dist, out=dist)[:, None])


def kdtree_edges(node_pos: Tensor, target_pos: Tensor, k: int) -> Tensor:
    """(2, Q*k) edges from each ``node_pos`` row to its k nearest ``target_pos`` rows (cKDTree)."""
    k = min(k, len(target_pos))
    tree = cKDTree(target_pos.detach().cpu().double().numpy())
    _, idx = tree.query(node_pos.detach().cpu().double().numpy(), k=k, workers=num_workers())
    idx = idx.reshape(len(node_pos), k)
    src = np.repeat(np.arange(len(node_pos), dtype=np.int64), k)
    return torch.from_numpy(np.stack([src, idx.ravel().astype(np.int64)]))
