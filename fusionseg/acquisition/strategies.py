"""Acquisition strategies: which unmeasured pixels to measure next, registered in `ACQUISITION_STRATEGIES`.

A strategy is called as ``strategy(view, k) -> (k', 2) int64`` (row, col) pixels, ``k' <= k``, none of them
measured or already proposed (``view.taken``). Static designs (the `SAMPLERS` patterns) plan the whole budget
once and hand it out batch by batch; adaptive ones read the current map (``view.confidence``) or the BSE
regions that hold no spectrum yet:

* ``random``, ``grid``, ``stratified``, ``superpixel``: the point samplers' designs at the full budget,
  proposed in a random order (every prefix is spread over the field);
* ``unmeasured-regions``: BSE superpixels with no spectrum yet, those whose mean BSE differs most from every
  measured region's (a phase nobody has measured) and the largest first, one point at each one's most
  interior pixel (the classic automated-mineralogy way: one spectrum per BSE grain);
* ``uncertainty``: the regions where the current map expects the most wrong pixels (sum of 1 - confidence:
  least-confidence sampling), one point per region and batch, regions near an earlier pick of the batch
  down-weighted (spatial diversity); its first batch (no map yet) is stratified;
* ``hybrid``: each batch shared between ``unmeasured-regions`` and ``uncertainty``.

Regions are SLIC superpixels of the image (one per point of the budget, at most 64 px each;
`fusionseg.graphs.superpixel`), computed once per planner and shared by the strategies (``view.regions``); a
strategy that ``needs_regions`` has them built in a background thread from the planner's start, so the
first batch (stratified for ``uncertainty``) is measured and mapped meanwhile.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from fusionseg.data.samplers import draw_points, region_interiors
from fusionseg.registry import ACQUISITION_STRATEGIES, SAMPLERS

REGION_PX = 64
"""Largest mean superpixel area (px) of the regions the strategies read: an 8 x 8 px grain is its own region."""


@dataclass
class Regions:
    """BSE superpixels of a field: ``labels`` (H, W) 0..R-1, per region its area (px), mean image value,
    within-region std and most interior pixel (row, col)."""

    labels: np.ndarray
    area: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    interior: np.ndarray

    @classmethod
    def of(cls, image: np.ndarray, n_regions: int) -> Regions:
        """SLIC superpixels of a (C, H, W) image, about ``n_regions`` of them."""
        import torch

        from fusionseg.graphs.superpixel import SuperpixelGraphBuilder, region_features  # the graph's SLIC set-up

        builder = SuperpixelGraphBuilder(n_segments=max(1, n_regions), compactness=0.3, sigma=1.0, max_num_iter=10)
        labels = builder.segment(torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)))
        feats, _ = region_features(image, labels, qs=())  # per channel: mean, std; then log(1 + area), centroid
        c = image.shape[0]
        area = np.bincount(labels.ravel()).astype(np.float64)
        mean, std = feats[:, 0 : 2 * c : 2].mean(1), feats[:, 1 : 2 * c : 2].mean(1)  # averaged over channels
        return cls(labels, area, mean.astype(np.float64), std.astype(np.float64),
                   region_interiors(labels, np.arange(len(area))))  # fmt: skip

    def __len__(self) -> int:
        return len(self.area)


def region_count(budget: int, pixels: int) -> int:
    """Regions the strategies read: one per point of the budget, but at most ``REGION_PX`` px each, so that
    small grains get their own region."""
    return max(budget, pixels // REGION_PX)


def build_regions_in_background(image: np.ndarray, budget: int, cache: dict[str, Any]) -> None:
    """Start `Regions.of` in a thread and leave its future in ``cache`` (`PlanningView.regions` waits for it): a
    planner whose first batch needs no regions builds them while that batch is measured and mapped."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fusionseg-regions")
    cache["regions"] = pool.submit(Regions.of, image, region_count(budget, image.shape[1] * image.shape[2]))
    pool.shutdown(wait=False)  # the thread ends with the build


@dataclass
class PlanningView:
    """What a strategy may read: the (C, H, W) image, pixels already taken (measured or proposed), the
    budget (points), the current map and its confidence (None before the first update) and the shared state."""

    image: np.ndarray
    taken: np.ndarray
    budget: int
    rng: np.random.Generator
    labels: np.ndarray | None = None
    confidence: np.ndarray | None = None
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return self.taken.shape

    @property
    def regions(self) -> Regions:
        """The field's BSE superpixels (`region_count` of them), built on first use or waited for when a
        background build was started (`build_regions_in_background`)."""
        regions = self.cache.get("regions")
        if regions is None:
            regions = Regions.of(self.image, region_count(self.budget, self.taken.size))
        elif isinstance(regions, Future):
            regions = regions.result()
        self.cache["regions"] = regions
        return regions

    def with_taken(self, rc: np.ndarray) -> PlanningView:
        """The same view with the pixels ``rc`` (N, 2) taken as well (a batch's earlier picks)."""
        taken = self.taken.copy()
        taken[rc[:, 0], rc[:, 1]] = True
        return replace(self, taken=taken)

    def free(self, rc: np.ndarray) -> np.ndarray:
        """The rows of ``rc`` (N, 2) that are not taken, first occurrence of each pixel only."""
        rc = np.asarray(rc, dtype=np.int64).reshape(-1, 2)
        flat = rc[:, 0] * self.shape[1] + rc[:, 1]
        _, first = np.unique(flat, return_index=True)
        keep = np.zeros(len(rc), dtype=bool)
        keep[first] = True
        return rc[keep & ~self.taken.ravel()[flat]]


def nearest_gap(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Distance of each of ``values`` to the nearest of ``known`` (inf when none is known)."""
    if not len(known):
        return np.full(len(values), np.inf)
    ordered = np.sort(known)
    at = np.searchsorted(ordered, values)
    below, above = ordered[np.clip(at - 1, 0, len(ordered) - 1)], ordered[np.clip(at, 0, len(ordered) - 1)]
    return np.minimum(np.abs(values - below), np.abs(values - above))


def random_free(view: PlanningView, k: int) -> np.ndarray:
    """``k`` (or all remaining) untaken pixels, uniformly at random."""
    free = np.flatnonzero(~view.taken.ravel())
    pick = view.rng.choice(free, size=min(k, len(free)), replace=False)
    return np.stack(np.divmod(pick, view.shape[1]), 1).astype(np.int64)


def top_up(view: PlanningView, chosen: np.ndarray, k: int) -> np.ndarray:
    """``chosen`` completed to ``k`` points with random untaken pixels (when a design runs out)."""
    if len(chosen) >= k:
        return chosen[:k]
    rest = random_free(view.with_taken(chosen), k - len(chosen))
    return np.concatenate([chosen, rest]).astype(np.int64)


class StaticDesign:
    """A `SAMPLERS` design for the whole budget, planned on the first call and handed out in a random order."""

    sampler_name: str

    def __init__(self, **sampler_kwargs: Any) -> None:
        self.sampler = SAMPLERS.create(self.sampler_name, **sampler_kwargs)
        self.plan: np.ndarray | None = None

    def __call__(self, view: PlanningView, k: int) -> np.ndarray:
        if self.plan is None:
            h, w = view.shape
            n = min(view.budget, h * w)
            pts = draw_points(self.sampler, h, w, n, view.rng, image=view.image)
            self.plan = np.rint(pts).astype(np.int64)[view.rng.permutation(n)]
        plan = view.free(self.plan)
        return top_up(view, plan[:k], k)


@ACQUISITION_STRATEGIES.register("random")
class RandomDesign:
    """Uniformly random pixels (the reference every other strategy is measured against)."""

    def __call__(self, view: PlanningView, k: int) -> np.ndarray:
        return random_free(view, k)


@ACQUISITION_STRATEGIES.register("grid")
class GridDesign(StaticDesign):
    """A regular lattice at the full budget."""

    sampler_name = "grid"


@ACQUISITION_STRATEGIES.register("stratified")
class StratifiedDesign(StaticDesign):
    """One random pixel per lattice cell at the full budget (jittered grid)."""

    sampler_name = "stratified"


@ACQUISITION_STRATEGIES.register("superpixel")
class SuperpixelDesign(StaticDesign):
    """One point at the most interior pixel of each BSE superpixel, the budget's worth of superpixels."""

    sampler_name = "superpixel"


def measured_regions(view: PlanningView) -> np.ndarray:
    """(R,) number of taken pixels (measured or proposed) in each region."""
    regions = view.regions
    r, c = np.nonzero(view.taken)
    return np.bincount(regions.labels[r, c], minlength=len(regions))


def spread_picks(view: PlanningView, priority: np.ndarray, k: int, radius_px: float) -> np.ndarray:
    """Up to ``k`` regions (ids) by ``priority``, best first; after each pick the priority of regions whose
    interior lies within ``radius_px`` of it is halved, so one batch does not crowd one spot."""
    regions = view.regions
    priority = priority.astype(np.float64).copy()
    tree = cKDTree(regions.interior)
    picks: list[int] = []
    candidates = np.flatnonzero(priority > 0)
    while len(picks) < k and len(candidates):
        best = candidates[np.argmax(priority[candidates])]
        if priority[best] <= 0:
            break
        picks.append(int(best))
        priority[best] = 0
        near = tree.query_ball_point(regions.interior[best], radius_px)
        priority[near] *= 0.5
    return np.array(picks, dtype=np.int64)


def batch_radius(view: PlanningView, k: int) -> float:
    """Spacing (px) of ``k`` points spread evenly over the untaken part of the field."""
    return 0.5 * float(np.sqrt((~view.taken).sum() / max(k, 1)))


@ACQUISITION_STRATEGIES.register("unmeasured-regions", "regions")
class UnmeasuredRegions:
    """BSE regions without a spectrum: most novel mean BSE (in units of the within-region noise) and largest
    first; the novelty of every region is updated after each pick, so one batch covers distinct BSE levels."""

    needs_regions = True

    def __init__(self, novelty_weight: float = 1.0) -> None:
        self.novelty_weight = float(novelty_weight)

    def __call__(self, view: PlanningView, k: int) -> np.ndarray:
        regions = view.regions
        open_ = measured_regions(view) == 0
        noise = max(float(np.median(regions.std)), 1e-6)
        novelty = nearest_gap(regions.mean, regions.mean[~open_])
        picks: list[int] = []
        for _ in range(min(k, int(open_.sum()))):
            score = regions.area * (1 + self.novelty_weight * np.minimum(novelty / noise, 10.0))
            score[~open_] = -1
            best = int(np.argmax(score))
            picks.append(best)
            open_[best] = False
            novelty = np.minimum(novelty, np.abs(regions.mean - regions.mean[best]))
        chosen = view.free(regions.interior[np.array(picks, dtype=np.int64)])
        return chosen if len(chosen) >= k else np.concatenate([chosen, self._more(view, chosen, k - len(chosen))])

    @staticmethod
    def _more(view: PlanningView, chosen: np.ndarray, n: int) -> np.ndarray:
        """Every region holds a spectrum: more points where the map is least sure (else at random)."""
        rest = view.with_taken(chosen)
        return Uncertainty()(rest, n) if view.confidence is not None else random_free(rest, n)


@ACQUISITION_STRATEGIES.register("uncertainty", "adaptive")
class Uncertainty:
    """Regions where the current map expects the most wrong pixels (sum over the region of 1 - confidence),
    divided by (1 + points already in the region)^``count_power`` and raised by ``novelty_weight`` times the
    region's BSE novelty (distance of its mean to the nearest measured region's, in noise units, at most 10);
    one point per region at its most interior untaken pixel, spread within the batch (`spread_picks`). First
    batch (no map yet): the ``first`` static design."""

    needs_regions = True

    def __init__(self, first: str = "stratified", count_power: float = 2.0, novelty_weight: float = 0.0) -> None:
        self.first = ACQUISITION_STRATEGIES.create(first)
        self.count_power, self.novelty_weight = float(count_power), float(novelty_weight)

    def __call__(self, view: PlanningView, k: int) -> np.ndarray:
        if view.confidence is None:
            return self.first(view, k)
        regions = view.regions
        doubt = np.bincount(regions.labels.ravel(), 1.0 - view.confidence.ravel(), minlength=len(regions))
        counts = measured_regions(view)
        priority = doubt / (1.0 + counts) ** self.count_power
        if self.novelty_weight:
            noise = max(float(np.median(regions.std)), 1e-6)
            novelty = nearest_gap(regions.mean, regions.mean[counts > 0]) / noise
            priority *= 1 + self.novelty_weight * np.minimum(novelty, 10.0)
        picks = spread_picks(view, priority, k, batch_radius(view, k))
        chosen = view.free(regions.interior[picks]) if len(picks) else np.zeros((0, 2), dtype=np.int64)
        return top_up(view, chosen, k)


@ACQUISITION_STRATEGIES.register("hybrid")
class Hybrid:
    """Each batch: ``regions_share`` of it to `UnmeasuredRegions`, the rest to `Uncertainty` (all of it to
    unmeasured regions until the first map exists)."""

    needs_regions = True

    def __init__(self, regions_share: float = 0.5) -> None:
        self.regions_share = float(regions_share)

    def __call__(self, view: PlanningView, k: int) -> np.ndarray:
        n_regions = k if view.confidence is None else int(round(self.regions_share * k))
        first = UnmeasuredRegions()(view, n_regions) if n_regions else np.zeros((0, 2), dtype=np.int64)
        if len(first) >= k:
            return first[:k]
        return np.concatenate([first, Uncertainty()(view.with_taken(first), k - len(first))]).astype(np.int64)
