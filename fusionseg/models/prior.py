"""`PriorRefiner`: the learned refiner that re-scores each (pixel, class) from classic propagation.

`PriorRefiner` scores each (pixel, class) pair from the classic-propagation features of
`fusionseg.models.prior_features` plus the network's own log-probability, with one small MLP shared by
all classes, so it is blind to class identity and its floor is the classic fill. The MLP scores
(region, class) pairs on the graph's image nodes; what only a pixel knows enters as a linear per-pixel term.
The features' names and functions are re-exported here (their old home).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from functools import partial
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor, nn

from fusionseg.models.prior_features import (
    FEATURES,
    GEODESIC_EDGE_WEIGHTS,
    MAX_Z,
    MISMATCH_SIGMA,
    PIXEL_FEATURES,
    ClassicFeatures,
    classic_features,
    feature_device,
    local_noise,
    side_by_side,
)
from fusionseg.registry import PROPAGATIONS
from fusionseg.sample import IGNORE_INDEX, Sample

PIXEL_GAIN = 10.0
"""The pixel term is ``PIXEL_GAIN * pixel.weight``: Adam moves a weight about one learning rate per step, and
the pixel weights need a scale of several units within the epoch budget (without the gain: ~0.55 after 40)."""
INFERENCE_CHUNK_PX = 1 << 16  # pixels scored at once outside training: (chunk x classes) floats


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

    def __init__(self, max_bytes: float = 512e6, with_edges: bool = False) -> None:
        self.max_bytes = max_bytes
        self.with_edges = with_edges  # the region graph's edges too (`classic_features`: a learned propagation's)
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
        feats = classic_features(image, coords, labels, shaped, device, with_edges=self.with_edges)
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
        propagation: str | None = None,
        propagation_kwargs: dict[str, Any] | None = None,
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
        self.propagation = PROPAGATIONS.get(propagation)(**(propagation_kwargs or {})) if propagation else None
        self.features = FeatureCache(with_edges=self.propagation is not None)
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
            scores = mlp(inputs).squeeze(-1)
        else:
            step = max(1, INFERENCE_CHUNK_PX // len(feats.found))  # regions at once: small activations, reused memory
            scores = torch.cat([mlp(inputs[:, i : i + step]).squeeze(-1) for i in range(0, inputs.shape[1], step)], 1)
        return feats, self.propagated(scores, region_logits, feats)

    def propagated(self, scores: Tensor, region_logits: Tensor, feats: ClassicFeatures) -> Tensor:
        """(F, R) region ``scores`` after the learned ``propagation`` over the region graph (as they are without)."""
        if self.propagation is None or feats.edges is None:
            return scores
        put = partial(torch.as_tensor, device=scores.device)
        return self.propagation(scores, put(feats.edges), put(feats.edge_features, dtype=scores.dtype),
                                region_logits.softmax(-1), put(feats.seed_share, dtype=scores.dtype))  # fmt: skip

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


__all__ = [
    "FEATURES",
    "GEODESIC_EDGE_WEIGHTS",
    "INFERENCE_CHUNK_PX",
    "MAX_Z",
    "MISMATCH_SIGMA",
    "PIXEL_FEATURES",
    "PIXEL_GAIN",
    "ClassicFeatures",
    "FeatureCache",
    "PriorRefiner",
    "classic_features",
    "feature_device",
    "field_regions",
    "local_noise",
    "side_by_side",
]
