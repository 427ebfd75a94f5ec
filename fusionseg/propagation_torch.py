"""The classic features' propagation (`fusionseg.propagation`) and image filters in torch, on any device.

`fusionseg.models.prior.classic_features` runs these when the network runs on a GPU, so the features of a field
are computed where its scores are. Every function mirrors a reference one and returns tensors on the input's
device, float64 where the reference is:

- `region_graph`, `region_euclid`, `gaussian_filter`, `unit_scaled`: the same arithmetic (scikit-image's and
  SciPy's definitions: reflected borders, linear-interpolated percentiles); equal to float rounding.
- `region_geodesic`: Bellman-Ford relaxation (every edge relaxed at once until no distance changes) instead of
  Dijkstra's priority queue, which has no data-parallel form; the same shortest paths, equal to rounding.
- `region_walker`, `region_smoother`: Jacobi-preconditioned conjugate gradients instead of a sparse LDL^T
  factorisation (torch has no sparse direct solver on the CPU and only an optional one on CUDA); stopped at a
  relative residual of `CG_RTOL`. A test compares both paths on small fields and says by how much they differ.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from fusionseg.propagation import VOTE_FLOOR, RegionGraph

CG_RTOL = 1e-10  # conjugate gradients stop at this residual norm / right-hand side norm (each column)
CG_CHECK_EVERY = 8  # iterations between convergence checks (each check waits for the device)
CDIST_CHUNK = 1 << 24  # (region, point) distances computed at once by `region_euclid`
TRUNCATE = 4.0  # Gaussian kernel radius in sigmas (SciPy's default)


def unit_scaled(image: Tensor) -> Tensor:
    """(C, H, W) float64 image scaled to [0, 1] per channel by its 0.5-99.5 percentiles (`baselines.unit_scaled`)."""
    img = image.double()
    flat = img.flatten(1).sort(1).values  # torch.quantile is limited to 2^24 values: interpolate the sort ourselves
    lo, hi = (_percentile(flat, q) for q in (0.5, 99.5))
    return ((img - lo[:, None, None]) / (hi - lo).clamp_min(1e-12)[:, None, None]).clamp_(0.0, 1.0)


def _percentile(ordered: Tensor, q: float) -> Tensor:
    """(C,) NumPy's linear-interpolated ``q`` percentile of each row of ``ordered`` (C, n), sorted ascending."""
    at = q / 100.0 * (ordered.shape[1] - 1)
    below = math.floor(at)
    above = min(below + 1, ordered.shape[1] - 1)
    return ordered[:, below] + (at - below) * (ordered[:, above] - ordered[:, below])


def gaussian_filter(image: Tensor, sigma: float) -> Tensor:
    """(C, H, W) float64 ``image`` smoothed by a Gaussian of ``sigma`` px along both axes with reflected borders:
    ``scipy.ndimage.gaussian_filter(ch, sigma)`` per channel (radius ``int(4 sigma + 0.5)``; sigma 0: a copy).
    Written here: no dependency has a torch Gaussian filter with SciPy's kernel and borders."""
    out = image.double().clone()
    if sigma <= 1e-15:
        return out
    radius = int(TRUNCATE * sigma + 0.5)
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64, device=image.device)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = (kernel / kernel.sum()).flip(0)  # conv1d correlates; SciPy convolves
    for dim in (1, 2):
        out = _filter_along(out, kernel, radius, dim)
    return out


def _filter_along(image: Tensor, kernel: Tensor, radius: int, dim: int) -> Tensor:
    """``image`` (C, H, W) correlated with ``kernel`` along ``dim``, borders reflected (d c b a | a b c d | d c b a)."""
    n = image.shape[dim]
    idx = torch.arange(-radius, n + radius, device=image.device) % (2 * n)
    idx = torch.where(idx < n, idx, 2 * n - 1 - idx)  # SciPy's "reflect", for any radius
    padded = image.index_select(dim, idx).movedim(dim, -1)
    lead = padded.shape[:-1]
    rows = padded.reshape(-1, 1, padded.shape[-1])
    filtered = torch.nn.functional.conv1d(rows, kernel.view(1, 1, -1)).reshape(*lead, n)
    return filtered.movedim(-1, dim)


def local_noise(image: Tensor) -> Tensor:
    """(C,) spread of each channel of ``image`` (C, H, W) around its 3-px Gaussian smoothing
    (`prior_features.local_noise`)."""
    return (image - gaussian_filter(image, 3.0)).flatten(1).std(1, correction=0)


def mismatch_model(
    image: Tensor, rows: Tensor, cols: Tensor, cls: Tensor, n_classes: int, sigma: float
) -> tuple[Tensor, Tensor, Tensor]:
    """`prior_features._mismatch_model` in torch: the smoothed image (C, H*W), class medians (F, C), pooled spread
    (C,)."""
    c, h, w = image.shape
    smooth = gaussian_filter(image, sigma)
    values = smooth[:, rows, cols].T  # (N, C)
    medians = torch.stack([values[cls == i].quantile(0.5, dim=0) for i in range(n_classes)])  # NumPy's median
    dev = (values - medians[cls]).abs()
    multi = torch.bincount(cls, minlength=n_classes)[cls] > 1
    spread = 1.4826 * dev[multi].quantile(0.5, dim=0) if bool(multi.any()) else smooth.new_zeros(c)
    floor = 0.25 * local_noise(smooth)
    return smooth.reshape(c, h * w), medians, torch.maximum(spread, floor.clamp_min(1e-6))


def region_graph(unit_image: Tensor, regions: Tensor, beta: float, sigma_color: float) -> RegionGraph:
    """`propagation.region_graph` with tensors (on ``unit_image``'s device) in every field."""
    c, h, w = unit_image.shape
    dev = unit_image.device
    flat = regions.reshape(-1).to(dev)
    r = int(flat.max()) + 1
    size = torch.bincount(flat, minlength=r).double()
    safe = size.clamp_min(1.0)
    pos = torch.arange(h * w, device=dev)
    rr, cc = (pos // w).double(), (pos % w).double()
    centroid = torch.stack([torch.bincount(flat, rr, r), torch.bincount(flat, cc, r)], 1) / safe[:, None]
    mean = torch.stack([torch.bincount(flat, ch.reshape(-1), r) / safe for ch in unit_image])
    grid = flat.view(h, w)
    a_parts, b_parts, d2_parts, d1_parts = [], [], [], []
    for axis in (0, 1):  # vertical then horizontal neighbour pairs
        ra, rb = grid.narrow(axis, 0, grid.shape[axis] - 1), grid.narrow(axis, 1, grid.shape[axis] - 1)
        cut = ra != rb
        ia = unit_image.narrow(axis + 1, 0, grid.shape[axis] - 1)[:, cut]
        diff = ia - unit_image.narrow(axis + 1, 1, grid.shape[axis] - 1)[:, cut]  # (C, n)
        a_parts.append(ra[cut])
        b_parts.append(rb[cut])
        d2_parts.append((diff**2).sum(0))
        d1_parts.append(diff.abs().mean(0))
    a, b = torch.cat(a_parts), torch.cat(b_parts)
    d2, d1 = torch.cat(d2_parts), torch.cat(d1_parts)
    code, inverse = torch.unique(torch.minimum(a, b) * r + torch.maximum(a, b), return_inverse=True)
    std = float(unit_image.std(correction=0)) * math.sqrt(c) or 1.0  # scikit-image divides beta by 10 std
    walker = torch.bincount(inverse, torch.exp(-beta / (10 * std) * d2), len(code)) + 1e-10
    smoother = torch.bincount(inverse, torch.exp(-d1 * 255.0 / sigma_color), len(code)) + 1e-10
    return RegionGraph(grid, size, centroid, mean, torch.stack([code // r, code % r]), walker, smoother)


class GraphOperator:
    """The (n, n) SPD matrix ``diag(diagonal) - W`` of a weighted graph, applied to (n, k) columns: W holds
    ``weight`` at (a, b) and (b, a) of each of ``edges`` (2, E). A gather and a scatter-add per product (no
    sparse-tensor layout: torch's is in beta and its products are not faster here)."""

    def __init__(self, edges: Tensor, weight: Tensor, diagonal: Tensor) -> None:
        self.src, self.dst = torch.cat([edges[0], edges[1]]), torch.cat([edges[1], edges[0]])
        self.weight = torch.cat([weight, weight])[:, None]
        self.diagonal = diagonal

    def __matmul__(self, x: Tensor) -> Tensor:
        return (self.diagonal[:, None] * x).index_add_(0, self.dst, self.weight * x[self.src], alpha=-1.0)


def conjugate_gradient(matrix: GraphOperator, rhs: Tensor, rtol: float = CG_RTOL) -> Tensor:
    """(n, k) solution of the SPD ``matrix`` (n, n) for each column of ``rhs`` (n, k), Jacobi-preconditioned (its
    diagonal), until every column's residual is below ``rtol`` times its rhs (at most 10 n
    iterations). Written here: torch has no sparse iterative solver, and this is a dozen lines of it."""
    x = torch.zeros_like(rhs)
    if rhs.numel() == 0:
        return x
    inv = (1.0 / matrix.diagonal)[:, None]
    residual = rhs.clone()
    z = residual * inv
    direction = z.clone()
    rz = (residual * z).sum(0)
    goal = rtol * rhs.norm(dim=0)
    for step in range(10 * len(rhs)):
        if step % CG_CHECK_EVERY == 0 and bool((residual.norm(dim=0) <= goal).all()):
            break
        product = matrix @ direction
        curvature = (direction * product).sum(0)
        alpha = torch.where(curvature > 0, rz / curvature.clamp_min(1e-300), 0.0)
        x += alpha * direction
        residual -= alpha * product
        z = residual * inv
        rz_next = (residual * z).sum(0)
        direction = z + torch.where(rz > 0, rz_next / rz.clamp_min(1e-300), 0.0) * direction
        rz = rz_next
    return x


def _degree(graph: RegionGraph, weight: Tensor) -> Tensor:
    a, b = graph.edges
    n = graph.num_regions
    return torch.bincount(a, weight, n) + torch.bincount(b, weight, n)


def region_walker(graph: RegionGraph, seed_share: Tensor) -> Tensor:
    """`propagation.region_walker` (F, R) with conjugate gradients."""
    f, r = seed_share.shape
    seeded = seed_share.sum(0) > 0
    prob = torch.where(seeded[None], seed_share, 1.0 / max(f, 1)).double()
    free = torch.nonzero(~seeded).squeeze(1)
    if len(free) == 0 or f <= 1:
        return torch.ones_like(prob) if f == 1 else prob
    weight = graph.walker_weight
    a, b = graph.edges
    local = torch.full((r,), -1, dtype=torch.long, device=weight.device)
    local[free] = torch.arange(len(free), device=weight.device)
    both = ~seeded[a] & ~seeded[b]
    diagonal = _degree(graph, weight)[free] + 1e-9  # seedless islands stay solvable (as the reference)
    matrix = GraphOperator(local[graph.edges[:, both]], weight[both], diagonal)
    rhs = torch.zeros(len(free), f, dtype=torch.float64, device=weight.device)  # -L_us s: each seeded neighbour
    for u, s in ((a, b), (b, a)):
        edge = ~seeded[u] & seeded[s]
        rhs.index_add_(0, local[u[edge]], weight[edge, None] * seed_share[:, s[edge]].T.double())
    x = conjugate_gradient(matrix, rhs)
    total = x.sum(1, keepdim=True)
    x = torch.where(total > 1e-6, x / total.clamp_min(1e-12), 1.0 / f)  # an island's walker reaches no seed
    prob[:, free] = x.T
    return prob


def region_smoother(graph: RegionGraph, point_count: Tensor, lam: float) -> Tensor:
    """`propagation.region_smoother` (F, R) with conjugate gradients."""
    f, r = point_count.shape
    if f == 0:
        return point_count.new_zeros((0, r), dtype=torch.float64)
    diagonal = graph.size + lam * _degree(graph, graph.smoother_weight)
    matrix = GraphOperator(graph.edges, lam * graph.smoother_weight, diagonal)
    x = conjugate_gradient(matrix, point_count.T.double()).T.clamp_min(VOTE_FLOOR)
    return x / x.sum(0, keepdim=True)


def region_geodesic(graph: RegionGraph, seed_regions: list[Tensor], edge_weight: float) -> Tensor:
    """`propagation.region_geodesic` (F, R) by Bellman-Ford: all edges relaxed at once until nothing changes."""
    a, b = graph.edges
    step = (graph.centroid[a] - graph.centroid[b]).norm(dim=1)
    step = step + edge_weight / math.sqrt(2) * (graph.mean[:, a] - graph.mean[:, b]).abs().sum(0)
    dist = torch.full((len(seed_regions), graph.num_regions), math.inf, dtype=torch.float64, device=step.device)
    for i, seeds in enumerate(seed_regions):
        dist[i, seeds] = 0.0
    src, dst = torch.cat([a, b]), torch.cat([b, a])
    step2 = torch.cat([step, step])[None]
    index = dst[None].expand(len(dist), -1)
    for _ in range(graph.num_regions):  # a shortest path has fewer edges than regions
        relaxed = dist.scatter_reduce(1, index, dist[:, src] + step2, reduce="amin")
        if torch.equal(relaxed, dist):
            break
        dist = relaxed
    far = math.sqrt(2.0) * max(graph.regions.shape) * 4  # unreachable: far
    return torch.where(torch.isfinite(dist), dist, far)


def region_euclid(graph: RegionGraph, class_points: list[Tensor]) -> Tensor:
    """`propagation.region_euclid` (F, R): exact nearest-point distances, in chunks of regions."""
    centroid = graph.centroid
    out = centroid.new_empty((len(class_points), graph.num_regions))
    for i, points in enumerate(class_points):
        points = points.to(centroid)
        chunk = max(1, CDIST_CHUNK // max(len(points), 1))
        for j in range(0, graph.num_regions, chunk):
            part = centroid[j : j + chunk]
            out[i, j : j + chunk] = torch.cdist(part, points, compute_mode="donot_use_mm_for_euclid_dist").amin(1)
    return out


def to_numpy(value: object) -> object:
    """Tensors (and tuples of them) as NumPy arrays on the host; anything else as it is."""
    if isinstance(value, Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, tuple):
        return tuple(to_numpy(v) for v in value)
    return value


def as_tensor(value: np.ndarray, device: torch.device) -> Tensor:
    """``value`` on ``device`` (integers as int64, for indexing)."""
    tensor = torch.as_tensor(np.ascontiguousarray(value), device=device)
    return tensor.long() if not tensor.is_floating_point() else tensor
