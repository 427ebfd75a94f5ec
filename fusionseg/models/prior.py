"""Edge-aware classic propagation as per-class pixel features, and the learned refiner that reads them.

A seeded random walker or a geodesic nearest-point fill already knows what the learned model does
not: whether an image edge separates a pixel from a measured point. `classic_features` computes,
for every class found among a field's labelled points and every pixel, how far (along the image
and straight) the class's nearest point is, how well the pixel's image value matches that
class's points, and the class's share of the pixel by a seeded random walker and by an edge-aware
smoother of the point labels. `PriorRefiner` scores each (pixel, class) pair from those features plus the
network's own log-probability with one small MLP shared by all classes, so it is blind to class
identity (it transfers to classes and instruments it never saw) and its floor is the classic fill.

Every feature is dimensionless: distances are in units of the mean point spacing sqrt(H*W/N), image
values in units of the within-class spread of the image at the points.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor, nn

from fusionseg.baselines import fast_global_smoother_scores, geodesic_costs, point_pixels, random_walker_probabilities
from fusionseg.sample import IGNORE_INDEX, Sample

GEODESIC_SCALES = ((50.0, 1.0), (3200.0, 2.0))  # (edge weight, Gaussian sigma px): soft and hard image edges
FEATURES = (
    *(f"geodesic{i}{rel}" for i in range(len(GEODESIC_SCALES)) for rel in ("", "_rel")),
    "euclid", "euclid_rel", "zscore", "zscore_rel", "zscore_px", "zscore_px_rel", "at_point", "walker", "walker_rel",
    "smoother", "smoother_rel",
)  # fmt: skip
INFERENCE_CHUNK_PX = 1 << 16  # pixels scored at once outside training: (classes x chunk x hidden) floats
VOTE_FLOOR = 1e-4  # a classic vote share below this is "no": its log is clipped here
MISMATCH_SIGMAS = (1.0, 0.0)  # Gaussian sigma (px) of the image-mismatch features: denoised, and one-pixel grains
MAX_Z = 20.0  # image-value mismatch is clipped here (spread units): beyond it a class is simply unlike the pixel


def classic_features(
    image: np.ndarray,
    coords: np.ndarray,
    labels: np.ndarray,
    geodesic_scales: tuple[tuple[float, float], ...] = GEODESIC_SCALES,
) -> tuple[np.ndarray, np.ndarray]:
    """Classes found among the labelled points (F,) and features (F, H*W, len(FEATURES)) float32.

    ``image`` (C, H, W); ``coords`` (N, 2) pixel rows/cols; ``labels`` (N,) class ids (``IGNORE_INDEX``
    skipped). ``geodesic_scales``: (edge weight, sigma px) of each geodesic distance's step cost (see
    `fusionseg.baselines.geodesic_costs`). Distances enter as log(1 + d / spacing).
    """
    _, h, w = image.shape
    keep = labels != IGNORE_INDEX
    coords, labels = coords[keep], labels[keep]
    found = np.unique(labels)
    if len(found) == 0:
        return found, np.zeros((0, h * w, len(FEATURES)), dtype=np.float32)
    out = np.empty((len(found), h * w, len(FEATURES)), dtype=np.float32)  # filled feature by feature: bounded memory
    for k, feature in enumerate(_feature_maps(image, coords, labels, found, geodesic_scales)):
        out[:, :, k] = feature.reshape(len(found), h * w)
    return found, out


def _feature_maps(
    image: np.ndarray,
    coords: np.ndarray,
    labels: np.ndarray,
    found: np.ndarray,
    geodesic_scales: tuple[tuple[float, float], ...],
) -> Iterator[np.ndarray]:
    """Each of `FEATURES` in order, as an (F, H, W) array (labelled points only)."""
    _, h, w = image.shape
    spacing = np.sqrt(h * w / len(labels))
    rows, cols = point_pixels(coords, (h, w))
    euclid = np.empty((len(found), h, w))
    at_point = np.zeros((len(found), h, w))
    for i, c in enumerate(found):
        mask = np.ones((h, w), dtype=bool)
        mask[rows[labels == c], cols[labels == c]] = False
        euclid[i] = ndimage.distance_transform_edt(mask)
        at_point[i] = ~mask
    distances = (geodesic_costs(image, coords, labels, weight, sigma)[1] for weight, sigma in geodesic_scales)
    for d in (*distances, euclid):
        d = np.log1p(d / spacing)
        yield from (d, d - d.min(0, keepdims=True))
    for sigma in MISMATCH_SIGMAS:
        z = _image_mismatch(image, rows, cols, labels, found, sigma) / 4.0
        yield from (z, z - z.min(0, keepdims=True))
    yield at_point
    for share in _classic_votes(image, coords, labels):
        vote = np.log(np.clip(share, VOTE_FLOOR, 1.0))
        yield from (vote, vote - vote.max(0, keepdims=True))


def _classic_votes(image: np.ndarray, coords: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(F, H, W) share of each found class at every pixel by the seeded random walker and by the fast global
    smoother (its diffused point channels normalised to sum 1). On clean images at 5 % points the walker beats
    the geodesic fill, and the refiner reading both scored higher on the validation split
    (`benchmarks/validate_model.py`)."""
    walker = random_walker_probabilities(image, coords, labels)[1]  # cg_j's tolerance: a hair outside [0, 1]
    smoother = np.clip(fast_global_smoother_scores(image, coords, labels)[1], VOTE_FLOOR, None)
    return np.clip(walker, 0.0, 1.0), smoother / smoother.sum(0, keepdims=True)


def _image_mismatch(
    image: np.ndarray, rows: np.ndarray, cols: np.ndarray, labels: np.ndarray, found: np.ndarray, sigma: float
) -> np.ndarray:
    """(F, H, W) |image smoothed by a Gaussian of ``sigma`` px (0: raw) - median of class f's points| in units of
    the pooled within-class spread.

    The spread is the median absolute deviation of the points from their class's median (pooled over
    classes, scaled to a standard deviation), so the feature reads the same on a noisy simulator and a
    clean real detector.
    """
    smooth = np.stack([ndimage.gaussian_filter(ch.astype(np.float64), sigma) for ch in image])  # (C, H, W)
    values = smooth[:, rows, cols].T  # (N, C)
    medians = np.stack([np.median(values[labels == c], axis=0) for c in found])  # (F, C)
    dev = np.abs(values - medians[np.searchsorted(found, labels)])
    multi = np.isin(labels, found[np.bincount(np.searchsorted(found, labels)) > 1])
    spread = 1.4826 * np.median(dev[multi], axis=0) if multi.any() else np.zeros(image.shape[0])
    floor = 0.25 * np.std(smooth - np.stack([ndimage.gaussian_filter(ch, 3.0) for ch in smooth]), axis=(1, 2))
    spread = np.maximum(spread, np.maximum(floor, 1e-6))  # too few points of one class: the image's local noise
    z = np.abs(smooth[None] - medians[:, :, None, None]) / spread[None, :, None, None]
    return np.minimum(np.sqrt((z**2).mean(1)), MAX_Z)


class FeatureCache:
    """`classic_features` of a sample, computed once per field content (training fields recur every epoch).

    Keyed by a hash of the image, coordinates and labels, not by object identity: moving a sample to a
    device or through a data loader makes a new object of the same field. Least recently used entries
    are dropped once the cache holds more than ``max_bytes`` (the newest entry is always kept), so
    predicting tile after tile of a large field holds one tile's features, not all of them.
    """

    def __init__(self, max_bytes: float = 512e6, **settings: Any) -> None:
        self.settings = settings
        self.max_bytes = max_bytes
        self._cache: OrderedDict[bytes, tuple[Tensor, Tensor]] = OrderedDict()

    def __call__(self, sample: Sample) -> tuple[Tensor, Tensor]:
        image = sample.image.detach().cpu().numpy()
        coords = sample.point_coords.detach().cpu().numpy()
        labels = sample.point_target
        labels = labels.cpu().numpy() if labels is not None else np.full(len(coords), IGNORE_INDEX)
        key = hashlib.blake2b(b"".join(np.ascontiguousarray(a).tobytes() for a in (image, coords, labels)),
                              digest_size=16).digest()  # fmt: skip
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        found, feats = classic_features(image, coords, labels, **self.settings)
        self._cache[key] = (torch.from_numpy(found).long(), torch.from_numpy(feats))
        while len(self._cache) > 1 and sum(f.nbytes for _, f in self._cache.values()) > self.max_bytes:
            self._cache.popitem(last=False)
        return self._cache[key]


class PriorRefiner(nn.Module):
    """Per-(pixel, class) score from classic-propagation features and the network's log-probability.

    One MLP shared by all classes (input ``len(FEATURES) + 1``); classes not found among a field's
    points keep the network's logit minus a large margin, so they can only win where nothing was found.
    Training scores a random ``train_pixel_fraction`` of each field's pixels per step, and adds the
    network's own loss times ``network_loss_weight`` so its scores stay a classifier the refiner can read.
    """

    def __init__(
        self,
        hidden_channels: int = 32,
        num_layers: int = 3,
        train_pixel_fraction: float = 0.25,
        network_loss_weight: float = 1.0,
        **feature_settings: Any,
    ) -> None:
        super().__init__()
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
        self.field_mlp: nn.Module | None = None  # set while predicting one field (`fusionseg.models.adaptation`)
        self.features = FeatureCache(**feature_settings)

    def forward(self, logits: Tensor, samples: list[Sample], keep: Tensor | None = None) -> Tensor:
        """Refined per-pixel logits (sum H*W, K) from the network's (sum H*W, K), pixels in sample order.

        ``keep``: optional (sum H*W,) bool; only those pixels are refined and returned (training on a subset).
        """
        out, start = [], 0
        for s in samples:
            n = s.height * s.width
            rows = keep[start : start + n] if keep is not None else None
            out.append(self._refine(logits[start : start + n], s, rows))
            start += n
        return torch.cat(out)

    def found_only(self, target: Tensor, samples: list[Sample]) -> Tensor:
        """``target`` (sum H*W,) with pixels of classes no labelled point of their sample found set to ignore."""
        keep, start = torch.zeros_like(target, dtype=torch.bool), 0
        for s in samples:
            n = s.height * s.width
            found = self.features(s)[0].to(target.device)
            keep[start : start + n] = torch.isin(target[start : start + n], found)
            start += n
        return target.masked_fill(~keep, IGNORE_INDEX)

    def _refine(self, logits: Tensor, sample: Sample, rows: Tensor | None = None) -> Tensor:
        found, feats = self.features(sample)
        if rows is not None:
            logits, feats = logits[rows], feats[:, rows.cpu()]
        if len(found) == 0:
            return logits
        found = found.to(logits.device)
        net = logits.log_softmax(-1)[:, found].T.unsqueeze(-1)  # (F, HW, 1)
        chunk = len(logits) if torch.is_grad_enabled() else INFERENCE_CHUNK_PX  # bounded memory when predicting
        mlp = self.field_mlp if self.field_mlp is not None and not self.training else self.mlp
        scores = torch.cat([
            mlp(torch.cat([feats[:, i : i + chunk].to(logits.device, logits.dtype), net[:, i : i + chunk]], -1))
            for i in range(0, len(logits), chunk)
        ], 1).squeeze(-1).T  # (HW, F)  # fmt: skip
        refined = logits - logits.detach().max(-1, keepdim=True).values - 30.0  # unfound classes: far below
        return refined.index_copy(1, found, scores)
