"""Classic-propagation features of a field, per (region, class): what the refiner (`fusionseg.models.prior`) reads.

A seeded random walker or a geodesic nearest-point fill already knows what the learned model does
not: whether an image edge separates a pixel from a measured point. `classic_features` computes, for
every class found among a field's labelled points, how far (along the image and straight) the class's
nearest point is, how well the image matches that class's points (at their pixels, and at their regions'
means: a class found once is not judged by one noisy pixel), how many points found it, and the class's share by
a seeded random walker and by an edge-aware smoother of the point labels.

The propagation runs on the graph's own image nodes (superpixels for the default builder: regions that
follow the image's edges), not on every pixel (`fusionseg.propagation`): a 2048² field's walker, fronts
and smoother take about a second instead of minutes. What only a pixel knows enters as `PIXEL_FEATURES`:
how much better or worse the raw pixel value matches each class than its region's mean does (a one-pixel
grain inside a region), and whether a point of the class was measured at that pixel.

Every feature is dimensionless: distances are in units of the mean point spacing sqrt(H*W/N), image
values in units of the within-class spread of the image at the points.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from fusionseg import propagation_torch
from fusionseg.baselines import FGS_LAMBDA, FGS_SIGMA_COLOR, RANDOM_WALKER_BETA, point_pixels, unit_scaled
from fusionseg.graphs.superpixel import relabel_sequential
from fusionseg.propagation import (
    VOTE_FLOOR,
    region_euclid,
    region_geodesic,
    region_graph,
    region_smoother,
    region_walker,
)
from fusionseg.sample import IGNORE_INDEX

GEODESIC_EDGE_WEIGHTS = (50.0, 3200.0)  # soft and hard image edges (cost per unit of [0, 1] image step)
FEATURES = (
    *(f"geodesic{i}{rel}" for i in range(len(GEODESIC_EDGE_WEIGHTS)) for rel in ("", "_rel")),
    "euclid", "euclid_rel", "zscore", "zscore_rel", "zscore_raw", "zscore_raw_rel", "seeded", "walker", "walker_rel",
    "smoother", "smoother_rel", "zscore_level", "zscore_level_rel", "class_points", "class_points_rel",
)  # fmt: skip
"""Per-(region, class) features the MLP reads (with the network's log-probability)."""
PIXEL_FEATURES = ("zscore_dev", "zscore_rel_dev", "zscore_px_dev", "zscore_px_rel_dev", "at_point")
"""Per-(pixel, class) features of the linear pixel term: the pixel's image mismatch (denoised, and raw) minus its
region's, and a point of the class measured here."""
MISMATCH_SIGMA = 1.0  # Gaussian sigma (px) of the denoised image-mismatch feature
MAX_Z = 20.0  # image-value mismatch is clipped here (spread units): beyond it a class is simply unlike the pixel


@dataclass
class ClassicFeatures:
    """`classic_features` of one field. Shapes: F found classes, R regions, P = H*W pixels.

    ``region`` (F, R, len(FEATURES)) float32; ``regions`` (P,) region of each pixel; ``images`` the image
    denoised (sigma `MISMATCH_SIGMA`) and raw, each (C, P) float32; ``medians`` (F, C) / ``spread`` (C,) per
    image: its class medians and within-class spread at the points; ``z_region`` per image (2, F, R) the
    mismatch of each region's mean (and its _rel); ``at_class`` (P,) index into ``found`` of the point measured
    at a pixel (-1: none); ``best`` the classic fills' choice per region, index into ``found`` (``"geodesic"``:
    the hard-edge front, ``"random-walker"``); ``edges`` (2, E) the region graph's touching pairs and
    ``edge_features`` (E, len(EDGE_FEATURES)) float32 their `region_edge_features`; ``seed_share`` (F, R) float32
    each region's share of its points per class (what `fusionseg.models.learned_propagation` re-inserts).
    """

    found: np.ndarray
    region: np.ndarray
    regions: np.ndarray
    images: tuple[np.ndarray, ...]
    medians: tuple[np.ndarray, ...]
    spread: tuple[np.ndarray, ...]
    z_region: tuple[np.ndarray, ...]
    at_class: np.ndarray
    best: dict[str, np.ndarray]
    edges: np.ndarray | None = None
    edge_features: np.ndarray | None = None
    seed_share: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        extra = [a for a in (self.edges, self.edge_features, self.seed_share) if a is not None]
        return sum(a.nbytes for a in (self.region, self.regions, self.at_class, *self.images, *self.z_region, *extra))

    def pixel_feature_list(self, pixels: np.ndarray | slice) -> list[Tensor]:
        """Each of `PIXEL_FEATURES` as (F, n) float32 at flat pixel indices or a slice of them (torch: threaded)."""
        idx = pixels if isinstance(pixels, slice) else torch.from_numpy(pixels)
        reg = torch.from_numpy(self.regions)[idx]
        if len(self.found) == 0:
            return [torch.zeros(0, len(reg))] * len(PIXEL_FEATURES)
        out = []
        for image, medians, spread, z_region in zip(self.images, self.medians, self.spread, self.z_region, strict=True):
            values = torch.from_numpy(image)[:, idx]  # (C, n)
            z = _mismatch(values, torch.from_numpy(medians).float(), torch.from_numpy(spread).float())  # (F, n)
            zr = torch.from_numpy(z_region).float()[:, :, reg]  # (2, F, n)
            out += [z - zr[0], z - z.min(0).values - zr[1]]
        at = torch.from_numpy(self.at_class)[idx][None] == torch.arange(len(self.found))[:, None]
        return [*out, at.float()]

    def pixel_features(self, pixels: np.ndarray | slice) -> Tensor:
        """(F, n, len(PIXEL_FEATURES)) float32 (`pixel_feature_list` stacked)."""
        return torch.stack(self.pixel_feature_list(pixels), -1)

    def classic_labels(self, method: str) -> np.ndarray:
        """(P,) class ids of a classic fill computed with the features (``best``'s keys)."""
        return self.found[self.best[method]][self.regions]


def classic_features(
    image: np.ndarray,
    coords: np.ndarray,
    labels: np.ndarray,
    regions: np.ndarray | None = None,
    device: torch.device | str | None = None,
    with_edges: bool = False,
) -> ClassicFeatures:
    """Classic-propagation features of a field: ``image`` (C, H, W); ``coords`` (N, 2) pixel rows/cols;
    ``labels`` (N,) class ids (``IGNORE_INDEX`` skipped); ``regions`` (H, W) int labels the propagation runs
    on (the graph's image nodes; None: every pixel its own region, exact but slow on large fields). ``device``:
    None runs the reference (SciPy, qdldl) on the CPU; a torch device runs `fusionseg.propagation_torch` there
    (for a GPU: the refiner passes the network's device), equal to the reference to ~1e-6 (a test says).
    ``with_edges``: also the region graph's edges, their features and the seed shares (a learned propagation's
    inputs; None otherwise, which saves 0.1-0.4 s of a 1024² field's `segment`)."""
    c, h, w = image.shape
    keep = labels != IGNORE_INDEX
    coords, labels = coords[keep], labels[keep]
    found = np.unique(labels)
    regions = np.arange(h * w).reshape(h, w) if regions is None else relabel_sequential(np.asarray(regions))
    flat = regions.ravel()
    at_class = np.full(h * w, -1, dtype=np.int16)
    if len(found) == 0:
        r, raw = int(flat.max()) + 1, image.reshape(c, h * w).astype(np.float32)
        none = np.zeros(0, dtype=np.int64)
        return ClassicFeatures(found, np.zeros((0, r, len(FEATURES)), np.float32), flat, (raw, raw),
                               (np.zeros((0, c)),) * 2, (np.ones(c),) * 2, (np.zeros((2, 0, r)),) * 2, at_class,
                               {"geodesic": none, "random-walker": none})  # fmt: skip
    rows, cols = point_pixels(coords, (h, w))
    cls = np.searchsorted(found, labels)
    pixels_at, classes_at = _class_at_pixels(rows * w + cols, cls, len(found))
    at_class[pixels_at] = classes_at
    point_region = flat[rows * w + cols]
    r = int(flat.max()) + 1
    counts = np.zeros((len(found), r))
    np.add.at(counts, (cls, point_region), 1.0)
    spacing = np.sqrt(h * w / len(labels))
    per_class = [np.flatnonzero(cls == i) for i in range(len(found))]
    ops, put = _backend(device)
    image_in = put(image)  # once on the device
    graph = ops.region_graph(ops.unit_scaled(image_in), put(regions), RANDOM_WALKER_BETA, FGS_SIGMA_COLOR)
    seed_share = counts / np.maximum(counts.sum(0, keepdims=True), 1.0)
    done = side_by_side({
        "smoother": lambda: ops.region_smoother(graph, put(counts), FGS_LAMBDA),  # longest first
        "walker": lambda: ops.region_walker(graph, put(seed_share)),
        **{f"geodesic{i}": partial(ops.region_geodesic, graph, [put(point_region[p]) for p in per_class], wt)
           for i, wt in enumerate(GEODESIC_EDGE_WEIGHTS)},
        "euclid": lambda: ops.region_euclid(graph, [put(coords[p]) for p in per_class]),
        **{f"mismatch{i}": partial(ops.mismatch_model, image_in, put(rows), put(cols), put(cls), len(found), sigma)
           for i, sigma in enumerate((MISMATCH_SIGMA, 0.0))},
    }, threads=device is None)  # fmt: skip
    done = {name: propagation_torch.to_numpy(value) for name, value in done.items()}
    size = propagation_torch.to_numpy(graph.size)
    geodesic = [done[f"geodesic{i}"] for i in range(len(GEODESIC_EDGE_WEIGHTS))]
    euclid, walker, smoother = done["euclid"], done["walker"], done["smoother"]
    images, medians, spreads, z_region, contrasts, region_means = [], [], [], [], [], []  # means: per image
    edges = propagation_torch.to_numpy(graph.edges).astype(np.int64) if with_edges else None
    for pixels, med, spread in (done["mismatch0"], done["mismatch1"]):
        mean = np.stack([np.bincount(flat, ch, r) for ch in pixels]) / np.maximum(size, 1)
        if with_edges:
            contrasts.append(np.abs(mean[:, edges[0]] - mean[:, edges[1]]) / np.asarray(spread)[:, None])
        region_means.append(mean)
        z = _mismatch(torch.from_numpy(mean), torch.from_numpy(med), torch.from_numpy(spread)).numpy()
        images.append(pixels.astype(np.float32))
        medians.append(med)
        spreads.append(spread)
        z_region.append(np.stack([z, z - z.min(0, keepdims=True)]).astype(np.float32))  # read per pixel chunk
    maps = []
    for d in (*geodesic, euclid):
        d = np.log1p(d / spacing)
        maps += [d, d - d.min(0, keepdims=True)]
    for z in z_region:
        maps += list(z)
    maps.append(np.minimum(counts, 1.0))
    for share in (walker, smoother):
        vote = np.log(np.clip(share, VOTE_FLOOR, 1.0))
        maps += [vote, vote - vote.max(0, keepdims=True)]
    maps += list(level_mismatch(region_means[0], point_region, cls, len(found), spreads[0] / np.sqrt(np.median(size))))
    class_points = np.log(np.bincount(cls, minlength=len(found)).astype(np.float64))[:, None]  # how sure its levels are
    maps += [
        np.broadcast_to(class_points, (len(found), r)),
        np.broadcast_to(class_points - class_points.max(), (len(found), r)),
    ]
    best = {"geodesic": geodesic[-1].argmin(0), "random-walker": walker.argmax(0)}
    region = np.empty((len(found), r, len(maps)), dtype=np.float32)  # filled in place: no float64 stack
    for j, m in enumerate(maps):
        region[..., j] = m
    extra = (edges, region_edge_features(graph, edges, contrasts), seed_share.astype(np.float32)) if with_edges else ()
    return ClassicFeatures(found, region, flat, tuple(images), tuple(medians), tuple(spreads), tuple(z_region),
                           at_class, best, *extra)  # fmt: skip


def level_mismatch(
    mean: np.ndarray, point_region: np.ndarray, cls: np.ndarray, n_classes: int, floor: np.ndarray
) -> np.ndarray:
    """(2, F, R) each region's mean image value (``mean`` (C, R)) against each class's level, and its _rel.

    A class's level is the median of the region means at its points, not of the point pixels: one pixel carries
    the full pixel noise, so a class found once got a level that a well-sampled class of similar brightness
    matched better than the class's own grain did (a zircon point lost its grain to hematite's 13 points). The
    spread is the pooled median absolute deviation of those means (``floor`` (C,) at least).
    """
    values = mean[:, point_region].T  # (N, C)
    levels = np.stack([np.median(values[cls == i], axis=0) for i in range(n_classes)])  # (F, C)
    multi = np.bincount(cls, minlength=n_classes)[cls] > 1
    dev = np.abs(values - levels[cls])
    spread = 1.4826 * np.median(dev[multi], axis=0) if multi.any() else np.zeros(mean.shape[0])
    spread = np.maximum(spread, np.maximum(floor, 1e-6))
    z = _mismatch(torch.from_numpy(mean), torch.from_numpy(levels), torch.from_numpy(spread)).numpy()
    return np.stack([z, z - z.min(0, keepdims=True)])


def region_edge_features(graph: Any, edges: np.ndarray, contrasts: list[np.ndarray]) -> np.ndarray:
    """(E, len(EDGE_FEATURES)) float32 per touching region pair: the image step across it (denoised and raw, in
    within-class spreads summed over channels, log1p), the log of its random-walker and smoother weights (boundary
    pixel pairs weighted by their step) and the log1p of the centroids' distance (px)."""
    centroid = propagation_torch.to_numpy(graph.centroid)
    distance = np.linalg.norm(centroid[edges[0]] - centroid[edges[1]], axis=1)
    walker, smoother = (np.log(propagation_torch.to_numpy(w)) for w in (graph.walker_weight, graph.smoother_weight))
    columns = [np.log1p(np.minimum(c.sum(0), 1e6)) for c in contrasts] + [walker, smoother, np.log1p(distance)]
    return np.stack(columns, 1).astype(np.float32)


def side_by_side(jobs: dict[str, Callable[[], Any]], threads: bool = True) -> dict[str, Any]:
    """Each job's result, run in up to ``torch.get_num_threads()`` threads (at most 4; one, or ``threads`` False: in
    turn). The classic fills spend their time in qdldl, Dijkstra, cKDTree and ndimage, which release the GIL."""
    if not threads:  # a GPU runs one queue of kernels: threads would only interleave their launches
        return {name: job() for name, job in jobs.items()}
    with ThreadPoolExecutor(max(1, min(4, torch.get_num_threads()))) as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
        return {name: future.result() for name, future in futures.items()}


def feature_device(network_device: torch.device) -> torch.device | None:
    """Where `classic_features` run for a network on ``network_device``: there when it is an accelerator; None (the
    NumPy/SciPy reference) on a CPU, where it is 20-45x faster than the torch path (`benchmarks/bench_features.py`)."""
    return None if network_device.type == "cpu" else network_device


def _backend(device: torch.device | str | None) -> tuple[SimpleNamespace, Callable[[np.ndarray], Any]]:
    """The classic features' operations for ``device`` (None: the NumPy/SciPy reference) and how to hand them an
    array (a tensor on ``device``)."""
    if device is None:
        reference = SimpleNamespace(unit_scaled=unit_scaled, region_graph=region_graph, region_walker=region_walker,
                                    region_smoother=region_smoother, region_geodesic=region_geodesic,
                                    region_euclid=region_euclid, mismatch_model=_mismatch_model)  # fmt: skip
        return reference, lambda array: array
    return propagation_torch, partial(propagation_torch.as_tensor, device=torch.device(device))


def _class_at_pixels(pixels: np.ndarray, cls: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Each measured pixel once, with its points' majority class (ties: the lower class index), so that two
    spectra of different phases at one pixel give the same answer whatever order they are listed in."""
    keys, counts = np.unique(pixels * n_classes + cls, return_counts=True)
    pix, c = keys // n_classes, keys % n_classes
    first = np.lexsort((c, -counts, pix))  # per pixel: most points first, then the lower class
    keep = first[np.r_[True, pix[first][1:] != pix[first][:-1]]]
    return pix[keep], c[keep].astype(np.int16)


def _mismatch_model(
    image: np.ndarray, rows: np.ndarray, cols: np.ndarray, cls: np.ndarray, n_classes: int, sigma: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The image smoothed by a Gaussian of ``sigma`` px (0: raw) as (C, H*W), each class's median at its points
    (F, C) and the pooled within-class spread (C,).

    The spread is the median absolute deviation of the points from their class's median (pooled over
    classes, scaled to a standard deviation), so the feature reads the same on a noisy simulator and a
    clean real detector; too few points of one class: a quarter of the image's local noise.
    """
    c, h, w = image.shape
    smooth = np.stack([ndimage.gaussian_filter(ch.astype(np.float64), sigma) for ch in image])  # (C, H, W)
    values = smooth[:, rows, cols].T  # (N, C)
    medians = np.stack([np.median(values[cls == i], axis=0) for i in range(n_classes)])  # (F, C)
    dev = np.abs(values - medians[cls])
    multi = np.bincount(cls, minlength=n_classes)[cls] > 1
    spread = 1.4826 * np.median(dev[multi], axis=0) if multi.any() else np.zeros(c)
    floor = 0.25 * local_noise(smooth)
    return smooth.reshape(c, h * w), medians, np.maximum(spread, np.maximum(floor, 1e-6))


def local_noise(image: np.ndarray) -> np.ndarray:
    """(C,) spread of each channel of ``image`` (C, H, W) around its 3-px Gaussian smoothing: the image noise."""
    return np.std(image - np.stack([ndimage.gaussian_filter(ch, 3.0) for ch in image]), axis=(1, 2))


def _mismatch(values: Tensor, medians: Tensor, spread: Tensor) -> Tensor:
    """(F, n) RMS over channels of |values (C, n) - class median (F, C)| / spread (C,), clipped at `MAX_Z`, over 4:
    the image mismatch of regions (their means) and of pixels alike."""
    if len(values) == 1:  # one channel (BSE): the RMS is an absolute value (no (F, C, n) temporary)
        z = (values[0][None] - medians[:, :1]).abs_().div_(spread[0])
    else:
        z = ((values[None] - medians[:, :, None]) / spread[None, :, None]).square().mean(1).sqrt()
    return z.clamp_(max=MAX_Z).div_(4.0)
