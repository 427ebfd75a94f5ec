"""Edge-aware classic propagation as per-class features, and the learned refiner that reads them.

A seeded random walker or a geodesic nearest-point fill already knows what the learned model does
not: whether an image edge separates a pixel from a measured point. `classic_features` computes, for
every class found among a field's labelled points, how far (along the image and straight) the class's
nearest point is, how well the image matches that class's points, and the class's share by a seeded
random walker and by an edge-aware smoother of the point labels. `PriorRefiner` scores each
(pixel, class) pair from those features plus the network's own log-probability, with one small MLP
shared by all classes, so it is blind to class identity and its floor is the classic fill.

The propagation runs on the graph's own image nodes (superpixels for the default builder: regions that
follow the image's edges), not on every pixel (`fusionseg.propagation`): a 2048² field's walker, fronts
and smoother take about a second instead of minutes, and the MLP scores (region, class) pairs. What
only a pixel knows enters as a linear per-pixel term: how much better or worse the raw pixel value
matches each class than its region's mean does (a one-pixel grain inside a region), and whether a
point of the class was measured at that pixel.

Every feature is dimensionless: distances are in units of the mean point spacing sqrt(H*W/N), image
values in units of the within-class spread of the image at the points.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor, nn

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
from fusionseg.sample import IGNORE_INDEX, Sample

GEODESIC_EDGE_WEIGHTS = (50.0, 3200.0)  # soft and hard image edges (cost per unit of [0, 1] image step)
FEATURES = (
    *(f"geodesic{i}{rel}" for i in range(len(GEODESIC_EDGE_WEIGHTS)) for rel in ("", "_rel")),
    "euclid", "euclid_rel", "zscore", "zscore_rel", "zscore_raw", "zscore_raw_rel", "seeded", "walker", "walker_rel",
    "smoother", "smoother_rel",
)  # fmt: skip
"""Per-(region, class) features the MLP reads (with the network's log-probability)."""
PIXEL_FEATURES = ("zscore_dev", "zscore_rel_dev", "zscore_px_dev", "zscore_px_rel_dev", "at_point")
"""Per-(pixel, class) features of the linear pixel term: the pixel's image mismatch (denoised, and raw) minus its
region's, and a point of the class measured here."""
PIXEL_GAIN = 10.0
"""The pixel term is ``PIXEL_GAIN * pixel.weight``: Adam moves a weight about one learning rate per step, and
the pixel weights need a scale of several units within the epoch budget (without the gain: ~0.55 after 40)."""
INFERENCE_CHUNK_PX = 1 << 16  # pixels scored at once outside training: (chunk x classes) floats
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
    the hard-edge front, ``"random-walker"``).
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

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.region, self.regions, self.at_class, *self.images, *self.z_region))

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
) -> ClassicFeatures:
    """Classic-propagation features of a field: ``image`` (C, H, W); ``coords`` (N, 2) pixel rows/cols;
    ``labels`` (N,) class ids (``IGNORE_INDEX`` skipped); ``regions`` (H, W) int labels the propagation runs
    on (the graph's image nodes; None: every pixel its own region, exact but slow on large fields). ``device``:
    None runs the reference (SciPy, qdldl) on the CPU; a torch device runs `fusionseg.propagation_torch` there
    (for a GPU: the refiner passes the network's device), equal to the reference to ~1e-6 (a test says)."""
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
    images, medians, spreads, z_region = [], [], [], []
    for pixels, med, spread in (done["mismatch0"], done["mismatch1"]):
        mean = np.stack([np.bincount(flat, ch, r) for ch in pixels]) / np.maximum(size, 1)
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
    best = {"geodesic": geodesic[-1].argmin(0), "random-walker": walker.argmax(0)}
    region = np.empty((len(found), r, len(maps)), dtype=np.float32)  # filled in place: no float64 stack
    for j, m in enumerate(maps):
        region[..., j] = m
    return ClassicFeatures(found, region, flat, tuple(images), tuple(medians), tuple(spreads), tuple(z_region),
                           at_class, best)  # fmt: skip


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


def field_regions(
    graph: Any, pixels: slice, image: Tensor | None = None, split_noise: float | None = None
) -> tuple[Tensor, np.ndarray]:
    """Regions of one field of a batched graph: the image node of each region (R,) and each pixel's region
    0..R-1. Regions are the image nodes; with ``image`` (C, H, W) and ``split_noise``, a node whose (sigma 1 px
    smoothed) image spread exceeds ``split_noise`` x the image's noise is split at its mean into a dark and a
    bright part, so a node that straddles a phase boundary gives each side its own region (each region still
    has one node's network scores)."""
    p2n = graph.pixel_to_node[pixels].cpu().numpy()
    lo = int(p2n.min())
    local = p2n - lo
    if image is not None and split_noise is not None:
        local = 2 * local + _bright_half(image.detach().cpu().numpy(), local, split_noise)
    present = np.bincount(local) > 0
    used = np.flatnonzero(present)
    nodes = lo + (used // 2 if image is not None and split_noise is not None else used)
    return torch.from_numpy(nodes), (np.cumsum(present) - 1)[local]


def _bright_half(image: np.ndarray, regions: np.ndarray, split_noise: float) -> np.ndarray:
    """(P,) bool: the pixel lies above its region's mean in a region whose spread exceeds ``split_noise`` x noise
    (channel mean of the image smoothed by a 1-px Gaussian; noise = its spread around a 3-px Gaussian)."""
    smooth = ndimage.gaussian_filter(image.astype(np.float64).mean(0), 1.0)
    values = smooth.ravel()
    noise = float(local_noise(smooth[None])[0])
    size = np.maximum(np.bincount(regions), 1)
    mean = np.bincount(regions, values) / size
    spread = np.sqrt(np.maximum(np.bincount(regions, values**2) / size - mean**2, 0.0))
    return (spread[regions] > split_noise * noise) & (values > mean[regions])


def _unfound_scores(logits: Tensor) -> Tensor:
    """Scores of classes no point found: the network's logits shifted far below its best (they win nowhere found)."""
    return logits - logits.detach().max(-1, keepdim=True).values - 30.0


class FeatureCache:
    """`classic_features` of a field, computed once per content (training fields recur every epoch).

    Keyed by a hash of the image, coordinates, labels and regions, not by object identity: moving a sample
    to a device or through a data loader makes a new object of the same field. Least recently used entries
    are dropped once the cache holds more than ``max_bytes`` (the newest entry is always kept).
    """

    def __init__(self, max_bytes: float = 512e6) -> None:
        self.max_bytes = max_bytes
        self._cache: OrderedDict[bytes, ClassicFeatures] = OrderedDict()
        self.seconds = 0.0  # spent computing features, all calls together (segment's per-stage timings)

    def __call__(
        self, sample: Sample, regions: np.ndarray | None = None, keep: bool = True, device: torch.device | None = None
    ) -> ClassicFeatures:
        """The features of ``sample`` on ``regions``, computed on ``device`` (`classic_features`); ``keep`` False: not
        stored when computed now (a field predicted once: a 4096² field's tiles would otherwise hold ``max_bytes``
        that nothing reads again)."""
        image = sample.image.detach().cpu().numpy()
        coords = sample.point_coords.detach().cpu().numpy()
        labels = sample.point_target
        labels = labels.cpu().numpy() if labels is not None else np.full(len(coords), IGNORE_INDEX)
        parts = (image, coords, labels) + (() if regions is None else (regions,))
        key = hashlib.blake2b(b"".join(np.ascontiguousarray(a).tobytes() for a in parts), digest_size=16).digest()
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        shaped = None if regions is None else np.asarray(regions).reshape(sample.height, sample.width)
        start = time.perf_counter()
        feats = classic_features(image, coords, labels, shaped, device)
        self.seconds += time.perf_counter() - start
        if not keep:
            return feats
        self._cache[key] = feats
        while len(self._cache) > 1 and sum(f.nbytes for f in self._cache.values()) > self.max_bytes:
            self._cache.popitem(last=False)
        return self._cache[key]


class PriorRefiner(nn.Module):
    """Per-(pixel, class) score from classic-propagation features and the network's log-probability.

    ``mlp`` (input ``len(FEATURES) + 1``) scores each (region, class); ``pixel`` adds a linear term of the
    `PIXEL_FEATURES` per (pixel, class). Classes not found among a field's points keep the network's logit
    minus a large margin, so they can only win where nothing was found. The propagation runs on the graph's
    image nodes, each split at its mean where its image spread exceeds ``split_noise`` x the image noise (None:
    unsplit); 0.5 was chosen on the validation split: the region fills' pixel accuracy there (seed-1000 fields,
    1 and 5 %, 1x and 0.2x noise) was geodesic 0.864 / walker 0.856 unsplit, 0.885 / 0.877 split at 0.5, 0.883 /
    0.865 on SLIC regions of 3 px instead, and 0.899 / 0.887 per pixel. Training scores a random
    ``train_pixel_fraction`` of each field's pixels per step, and adds the network's own loss times
    ``network_loss_weight`` so its scores stay a classifier the refiner can read. Outside training,
    ``classic_maps`` holds the geodesic and random-walker fills of the last fields refined (they come free
    with the features; `segment`'s classic floor reads them).
    """

    def __init__(
        self,
        hidden_channels: int = 32,
        num_layers: int = 3,
        train_pixel_fraction: float = 0.25,
        network_loss_weight: float = 1.0,
        split_noise: float | None = 0.5,
    ) -> None:
        super().__init__()
        self.split_noise = split_noise  # image nodes split at their mean when their spread exceeds this x noise
        self.network_loss_weight = float(network_loss_weight)  # weight of the loss on the network's own scores
        if not 0 < train_pixel_fraction <= 1:
            raise ValueError(f"train_pixel_fraction must be in (0, 1], got {train_pixel_fraction}.")
        self.train_pixel_fraction = train_pixel_fraction  # share of pixels scored per training step (speed)
        layers: list[nn.Module] = []
        width = len(FEATURES) + 1
        for _ in range(num_layers - 1):
            layers += [nn.Linear(width, hidden_channels), nn.GELU()]
            width = hidden_channels
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)
        self.pixel = nn.Linear(len(PIXEL_FEATURES), 1, bias=False)
        nn.init.zeros_(self.pixel.weight)  # starts as the region score
        self.field_mlp: nn.Module | None = None  # set while predicting one field (`fusionseg.models.adaptation`)
        self.features = FeatureCache()
        self.classic_maps: list[dict[str, Tensor]] = []

    def forward(self, node_logits: Tensor, graph: Any, samples: list[Sample], keep: Tensor | None = None) -> Tensor:
        """Refined per-pixel logits (sum H*W, K) from the network's per-image-node (M, K), pixels in sample order.

        ``keep``: optional (sum H*W,) bool; only those pixels are refined and returned (training on a subset).
        """
        out, start = [], 0
        self.classic_maps = []
        for s in samples:
            n = s.height * s.width
            nodes, regions = self.regions(graph, slice(start, start + n), s)
            rows = keep[start : start + n] if keep is not None else None
            out.append(self._refine(node_logits[nodes.to(node_logits.device)], s, regions, rows))
            start += n
        return torch.cat(out)

    def regions(self, graph: Any, pixels: slice, sample: Sample) -> tuple[Tensor, np.ndarray]:
        """`field_regions` of ``sample`` (its pixels ``pixels`` of the batched graph), split by ``split_noise``."""
        return field_regions(graph, pixels, sample.image, self.split_noise)

    @staticmethod
    def found_only(target: Tensor, samples: list[Sample]) -> Tensor:
        """``target`` (sum H*W,) with pixels of classes no labelled point of their sample found set to ignore."""
        keep, start = torch.zeros_like(target, dtype=torch.bool), 0
        for s in samples:
            n = s.height * s.width
            y = s.point_target if s.point_target is not None else torch.zeros(0, dtype=torch.long)
            found = torch.unique(y[y != IGNORE_INDEX]).to(target.device)
            keep[start : start + n] = torch.isin(target[start : start + n], found)
            start += n
        return target.masked_fill(~keep, IGNORE_INDEX)

    def region_inputs(self, region_logits: Tensor, feats: ClassicFeatures) -> Tensor:
        """(F, R, len(FEATURES) + 1) MLP inputs: the features and the network's log-probability per region."""
        found = torch.from_numpy(feats.found).to(region_logits.device)
        net = region_logits.log_softmax(-1)[:, found].T.unsqueeze(-1)
        return torch.cat([torch.from_numpy(feats.region).to(net.device, net.dtype), net], -1)

    def pixel_term(self, feats: ClassicFeatures, pixels: np.ndarray | slice, like: Tensor) -> Tensor:
        """(F, n) the linear per-pixel term at flat pixel indices ``pixels`` (a weighted sum: no stacked copy)."""
        weight = PIXEL_GAIN * self.pixel.weight[0].to(like.dtype)
        terms = feats.pixel_feature_list(pixels)
        return sum((weight[j] * f.to(like.device, like.dtype) for j, f in enumerate(terms)), torch.zeros(()))

    def _field_scores(
        self, region_logits: Tensor, sample: Sample, regions: np.ndarray, keep: bool = True
    ) -> tuple[ClassicFeatures, Tensor]:
        """The field's features and the MLP's (F, R) region scores; records its classic fills outside training.
        ``keep``: the features stay cached (`FeatureCache`)."""
        feats = self.features(sample, regions, keep, feature_device(region_logits.device))
        if not self.training:
            self.classic_maps.append({m: torch.from_numpy(feats.classic_labels(m)).view(sample.height, sample.width)
                                      for m in feats.best} if len(feats.found) else {})  # fmt: skip
        mlp = self.field_mlp if self.field_mlp is not None and not self.training else self.mlp
        if not len(feats.found):
            return feats, None
        inputs = self.region_inputs(region_logits, feats)
        if torch.is_grad_enabled():
            return feats, mlp(inputs).squeeze(-1)
        step = max(1, INFERENCE_CHUNK_PX // len(feats.found))  # regions at once: small activations, reused memory
        return feats, torch.cat([mlp(inputs[:, i : i + step]).squeeze(-1) for i in range(0, inputs.shape[1], step)], 1)

    @torch.no_grad()
    def predict(
        self, node_logits: Tensor, graph: Any, samples: list[Sample], only_found: bool
    ) -> list[tuple[Tensor, Tensor]]:
        """Per field: (H, W) labels and confidence (max softmax probability) of the refined scores, in chunks of
        pixels, without the (H*W, K) logits `forward` returns: the same argmax and softmax (a test compares them).

        ``only_found``: classes no labelled point found are excluded (the module's ``mask_unseen_classes``).
        """
        out, start = [], 0
        self.classic_maps = []
        for s in samples:
            n = s.height * s.width
            nodes, regions = self.regions(graph, slice(start, start + n), s)
            start += n
            region_logits = node_logits[nodes.to(node_logits.device)].float()
            feats, scores = self._field_scores(region_logits, s, regions, keep=False)  # predicted once
            if scores is None:  # no labelled point: the network's scores
                conf, label = region_logits.softmax(-1).max(-1)
                reg = torch.from_numpy(feats.regions).to(conf.device)
                out.append((label[reg].view(s.height, s.width).cpu(), conf[reg].view(s.height, s.width).cpu()))
                continue
            found = torch.from_numpy(feats.found).to(scores.device)
            base = _unfound_scores(region_logits)  # what `forward` gives unfound classes
            base[:, found] = float("-inf")
            if only_found:
                base.fill_(float("-inf"))
            other_best, other_label = base.max(-1)
            other_lse = base.logsumexp(-1)
            labels, conf = torch.empty(n, dtype=torch.long), torch.empty(n)
            for i in range(0, n, INFERENCE_CHUNK_PX):
                px = slice(i, min(n, i + INFERENCE_CHUNK_PX))
                reg = torch.from_numpy(feats.regions[px]).to(scores.device)
                score = scores[:, reg] + self.pixel_term(feats, px, scores)  # (F, n)
                best, arg = score.max(0)
                lse = torch.logaddexp(score.logsumexp(0), other_lse[reg])
                other = other_best[reg] > best
                labels[px] = torch.where(other, other_label[reg], found[arg]).cpu()
                conf[px] = torch.where(other, other_best[reg], best).sub(lse).exp().cpu()
            out.append((labels.view(s.height, s.width), conf.view(s.height, s.width)))
        return out

    def _refine(self, region_logits: Tensor, sample: Sample, regions: np.ndarray, rows: Tensor | None) -> Tensor:
        feats, scores = self._field_scores(region_logits, sample, regions)
        pixels = np.arange(sample.height * sample.width) if rows is None else np.flatnonzero(rows.cpu().numpy())
        if scores is None:
            return region_logits[torch.from_numpy(feats.regions[pixels]).to(region_logits.device)]
        found = torch.from_numpy(feats.found).to(region_logits.device)
        base = _unfound_scores(region_logits)
        chunk = len(pixels) if torch.is_grad_enabled() else INFERENCE_CHUNK_PX  # bounded memory when predicting
        out = []
        for i in range(0, len(pixels), chunk):
            px = pixels[i : i + chunk] if rows is not None else slice(i, i + chunk)  # a slice: views, not gathers
            reg = torch.from_numpy(feats.regions[px]).to(region_logits.device)
            score = scores[:, reg] + self.pixel_term(feats, px, scores)
            out.append(base[reg].index_copy(1, found, score.T))
        return torch.cat(out) if out else base[:0]
