"""Classic propagation of point labels on a region graph: the image's pixels grouped into regions.

The pixel-level classic fills of `fusionseg.baselines` solve one linear system or run one front per
class over every pixel (a 2048² field: minutes). On a graph whose nodes are image regions that follow
its edges (superpixels: the graph builder's own image nodes), the same ideas cost a sparse
LDL^T factorisation of ~2e5 unknowns and a Dijkstra per class (a 2048² field: a few seconds in all).

Regions are an ``(H, W)`` int array of labels ``0..R-1``. Edges join regions that touch (4-connected
pixel pairs); each edge carries the pixel pairs of its boundary, so the random walker on regions is
scikit-image's pixel walker with every region contracted to one node (infinite weights inside it).
Libraries do the work (qdldl's sparse LDL^T, scipy's ``csgraph.dijkstra`` and ``cKDTree``); only the graph
assembly is ours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph
from scipy.spatial import cKDTree

VOTE_FLOOR = 1e-4  # a classic vote share below this is "no"


def spd_solve(matrix: sparse.spmatrix, rhs: np.ndarray) -> np.ndarray:
    """(n, k) solution of the symmetric positive definite ``matrix`` (n, n) for each column of ``rhs`` (n, k): one
    sparse LDL^T factorisation (qdldl, AMD ordering), then k triangular solves. On a 2048² field's region graph it
    factorises in 2.7 s where SuperLU's LU took 3.6 s (the walker: 0.85 s against 1.36 s), to 1e-12."""
    import qdldl

    if rhs.shape[1] == 0:
        return np.zeros(rhs.shape)
    solver = qdldl.Solver(sparse.triu(matrix, format="csc"), upper=True)
    return np.stack([solver.solve(np.ascontiguousarray(column)) for column in rhs.T], 1)


@dataclass(frozen=True)
class RegionGraph:
    """Regions of an image and how they touch. Sizes in pixels, positions in pixels (row, col).

    ``mean`` (C, R) region means of the image scaled to [0, 1]; ``edges`` (2, E) unique region pairs
    (a < b); ``walker_weight`` (E,) summed random-walker weights of the boundary's pixel pairs;
    ``smoother_weight`` (E,) summed fast-global-smoother weights of the same pairs.
    """

    regions: np.ndarray
    size: np.ndarray
    centroid: np.ndarray
    mean: np.ndarray
    edges: np.ndarray
    walker_weight: np.ndarray
    smoother_weight: np.ndarray

    @property
    def num_regions(self) -> int:
        return len(self.size)


def region_graph(unit_image: np.ndarray, regions: np.ndarray, beta: float, sigma_color: float) -> RegionGraph:
    """The `RegionGraph` of ``unit_image`` (C, H, W) in [0, 1] over ``regions`` (H, W) labels 0..R-1.

    ``beta``: scikit-image's random-walker edge penalty (its scaling: exp(-beta / (10 std) * |dI|^2));
    ``sigma_color``: the fast global smoother's edge sensitivity in grey levels of 0-255 (exp(-|dI| / sigma)).
    """
    c, h, w = unit_image.shape
    flat = regions.ravel()
    r = int(flat.max()) + 1
    size = np.bincount(flat, minlength=r).astype(np.float64)
    safe = np.maximum(size, 1.0)
    rr, cc = np.divmod(np.arange(h * w), w)
    centroid = np.stack([np.bincount(flat, rr, r), np.bincount(flat, cc, r)], 1) / safe[:, None]
    mean = np.stack([np.bincount(flat, ch.ravel(), r) / safe for ch in unit_image])
    a_parts, b_parts, d2_parts, d1_parts = [], [], [], []
    for axis in (0, 1):  # vertical then horizontal neighbour pairs
        lo = [slice(None)] * 2
        hi = [slice(None)] * 2
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        ra, rb = regions[tuple(lo)], regions[tuple(hi)]
        cut = ra != rb
        diff = unit_image[(slice(None), *lo)][:, cut] - unit_image[(slice(None), *hi)][:, cut]  # (C, n)
        a_parts.append(ra[cut])
        b_parts.append(rb[cut])
        d2_parts.append((diff**2).sum(0))
        d1_parts.append(np.abs(diff).mean(0))
    a, b = np.concatenate(a_parts), np.concatenate(b_parts)
    d2, d1 = np.concatenate(d2_parts), np.concatenate(d1_parts)
    lo_r, hi_r = np.minimum(a, b), np.maximum(a, b)
    code, inverse = np.unique(lo_r.astype(np.int64) * r + hi_r, return_inverse=True)
    std = float(unit_image.std()) * np.sqrt(c) or 1.0  # scikit-image divides beta by 10 std (and sqrt(C))
    walker = np.bincount(inverse, np.exp(-beta / (10 * std) * d2), len(code)) + 1e-10
    smoother = np.bincount(inverse, np.exp(-d1 * 255.0 / sigma_color), len(code)) + 1e-10
    edges = np.stack([code // r, code % r])
    return RegionGraph(regions, size, centroid, mean, edges, walker, smoother)


def _laplacian(graph: RegionGraph, weight: np.ndarray) -> sparse.csc_matrix:
    r = graph.num_regions
    a, b = graph.edges
    adj = sparse.coo_matrix((np.concatenate([weight, weight]), (np.concatenate([a, b]), np.concatenate([b, a]))),
                            shape=(r, r)).tocsr()  # fmt: skip
    return (sparse.diags(np.asarray(adj.sum(1)).ravel()) - adj).tocsc()


def region_walker(graph: RegionGraph, seed_share: np.ndarray) -> np.ndarray:
    """(F, R) probability that a walker from each region first reaches a seed of each class.

    ``seed_share`` (F, R): each seeded region's share of its points per class (rows sum to 1 where seeded,
    0 elsewhere): the Dirichlet boundary values. Regions no seed can reach get an even share.
    """
    f, r = seed_share.shape
    seeded = seed_share.sum(0) > 0
    prob = np.where(seeded[None], seed_share, 1.0 / max(f, 1))
    free = np.flatnonzero(~seeded)
    if len(free) == 0 or f <= 1:
        return np.ones((f, r)) if f == 1 else prob
    lap = _laplacian(graph, graph.walker_weight)
    luu = lap[free][:, free] + sparse.identity(len(free), format="csc") * 1e-9  # seedless islands stay solvable
    rhs = -(lap[free][:, np.flatnonzero(seeded)] @ seed_share[:, seeded].T)  # (U, F)
    x = spd_solve(luu, rhs)
    total = x.sum(1, keepdims=True)
    x = np.where(total > 1e-6, x / np.maximum(total, 1e-12), 1.0 / f)  # an island's walker reaches no seed
    prob[:, free] = x.T
    return prob


def region_smoother(graph: RegionGraph, point_count: np.ndarray, lam: float) -> np.ndarray:
    """(F, R) edge-aware diffusion of each class's point counts, normalised to shares that sum to 1.

    The fast global smoother's objective on regions: minimise sum_r size_r (x_r - s_r)^2 + lam * sum_edges
    w (x_a - x_b)^2 with s_r = points of the class in r / size_r (one sparse solve, every class at once).
    """
    f, r = point_count.shape
    if f == 0:
        return np.zeros((0, r))
    system = sparse.diags(graph.size) + lam * _laplacian(graph, graph.smoother_weight)
    x = spd_solve(system, point_count.T.astype(np.float64))
    x = np.clip(x.T, VOTE_FLOOR, None)
    return x / x.sum(0, keepdims=True)


def region_geodesic(graph: RegionGraph, seed_regions: list[np.ndarray], edge_weight: float) -> np.ndarray:
    """(F, R) shortest path (px) from each region to the nearest seed region of each class.

    A step between touching regions costs the distance of their centroids plus ``edge_weight`` / sqrt(2)
    times the difference of their means (the pixel geodesic's Sobel cost integrated across a step edge).
    """
    r = graph.num_regions
    a, b = graph.edges
    step = np.linalg.norm(graph.centroid[a] - graph.centroid[b], axis=1)
    step = step + edge_weight / np.sqrt(2) * np.abs(graph.mean[:, a] - graph.mean[:, b]).sum(0)
    adj = sparse.csr_matrix((step, (a, b)), shape=(r, r))
    out = np.empty((len(seed_regions), r))
    for i, seeds in enumerate(seed_regions):
        out[i] = csgraph.dijkstra(adj, directed=False, indices=np.unique(seeds), min_only=True)
    return np.where(np.isfinite(out), out, np.sqrt(2.0) * max(graph.regions.shape) * 4)  # unreachable: far


def region_euclid(graph: RegionGraph, class_points: list[np.ndarray]) -> np.ndarray:
    """(F, R) straight distance (px) from each region's centroid to the nearest point of each class."""
    if not class_points:
        return np.zeros((0, graph.num_regions))
    return np.stack([cKDTree(p).query(graph.centroid)[0] for p in class_points])
