"""`Planner`: decide where to measure next, batch by batch, with the current map in the loop.

    planner = Planner(image, budget=0.003, batch_size=0.00025, strategy="uncertainty", segmenter=segmenter)
    while not planner.done:
        coords = planner.propose()          # (k, 2) int (row, col) pixels, never proposed twice
        spectra = microscope.measure(coords)
        planner.add(coords, spectra)
        state = planner.update()            # map, confidence, stopping criteria

The core is domain-free: a *segmenter* turns a `Sample` (the image and the points measured so far) into a map
and a per-pixel confidence; the SEM domain builds one from the shipped weights
(`fusionseg.sem.acquire.model_segmenter`). Where to measure is a registered strategy
(`fusionseg.acquisition.strategies`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from fusionseg.acquisition.strategies import PlanningView, build_regions_in_background
from fusionseg.errors import FusionSegError
from fusionseg.registry import ACQUISITION_STRATEGIES
from fusionseg.sample import Sample, SampleMeta

Segmenter = Callable[[Sample], tuple[np.ndarray, np.ndarray]]
"""A `Sample` with the points measured so far -> ((H, W) int labels, (H, W) float confidence in [0, 1])."""


DEFAULT_BATCHES = 12
"""Batches a budget is spent in when no batch size is given (validation split: 12 beat 6 at 0.2-0.3 %)."""


class AcquisitionError(FusionSegError):
    """An impossible acquisition request (budget, batch, coordinates, spectra); the message names the fix."""


@dataclass
class PlannerState:
    """The loop after an update: the map and its confidence, what was spent, and whether to stop.

    labels/confidence: (H, W); measured: points so far; fraction: measured / measurable pixels; step: updates so far;
    mean_confidence: mean of ``confidence`` (the expected pixel accuracy when it is calibrated);
    changed: share of pixels whose label changed since the previous update (1.0 on the first);
    stop: True when the budget is spent or ``confidence_target`` is met; reason: which, in words.
    """

    labels: np.ndarray
    confidence: np.ndarray
    measured: int
    fraction: float
    step: int
    mean_confidence: float
    changed: float
    stop: bool
    reason: str
    seconds: dict[str, float] = field(default_factory=dict)


def points_of(amount: float, pixels: int, what: str) -> int:
    """A count of points: an int >= 1 as given, a float in (0, 1) as that share of ``pixels`` (at least 1)."""
    if isinstance(amount, bool) or not isinstance(amount, int | float) or not np.isfinite(amount) or amount <= 0:
        raise AcquisitionError(f"{what} must be a share of the pixels in (0, 1) or a number of points >= 1, "
                               f"got {amount!r}.")  # fmt: skip
    n = max(1, int(round(amount * pixels))) if amount < 1 else int(amount)
    if n > pixels:
        raise AcquisitionError(f"{what} of {n} points exceeds the {pixels} pixels of the image; ask for fewer.")
    return n


class Planner:
    """Where to measure next on one field; see the module docstring for the loop.

    image:             (C, H, W) or (H, W) array (e.g. normalised BSE).
    budget:            most points ever measured: a share of the pixels (0.003 = 0.3 %) or a count.
    batch_size:        points per `propose` (share or count); None: the budget in ``DEFAULT_BATCHES`` batches.
    strategy:          an `ACQUISITION_STRATEGIES` name (``random``, ``grid``, ``stratified``, ``superpixel``,
                       ``unmeasured-regions``, ``uncertainty``, ``hybrid``) or a strategy object.
    segmenter:         `Segmenter` for `update`; strategies that read the map need one.
    meta:              the `SampleMeta` of the points handed to the segmenter (class names, domain metadata).
    confidence_target: stop once the map's mean confidence reaches it (None: spend the budget).
    seed:              random choices of the strategy.
    measurable:        (H, W) bool, the pixels that can be measured (e.g. a dense file's EDS-acquired area);
                       None: all. Shares of ``budget``/``batch_size`` are of these pixels.
    """

    def __init__(
        self,
        image: Any,
        budget: float,
        batch_size: float | None = None,
        strategy: str | Callable = "uncertainty",
        segmenter: Segmenter | None = None,
        meta: SampleMeta | None = None,
        confidence_target: float | None = None,
        seed: int = 0,
        measurable: Any = None,
    ) -> None:
        img = np.asarray(image.numpy() if isinstance(image, torch.Tensor) else image, dtype=np.float32)
        img = img[None] if img.ndim == 2 else img
        if img.ndim != 3 or min(img.shape) < 1 or not np.isfinite(img).all():
            raise AcquisitionError(f"image must be a finite (H, W) or (C, H, W) array, got shape {img.shape}.")
        self.image = img
        can = np.ones(img.shape[1:], dtype=bool) if measurable is None else np.asarray(measurable, dtype=bool)
        if can.shape != img.shape[1:] or not can.any():
            raise AcquisitionError(f"measurable must be an (H, W) = {img.shape[1:]} bool mask with at least one "
                                   f"True pixel, got shape {can.shape} with {int(can.sum())}.")  # fmt: skip
        self.pixels = pixels = int(can.sum())
        self.budget = points_of(budget, pixels, "budget")
        batch = max(1, round(self.budget / DEFAULT_BATCHES)) if batch_size is None else batch_size
        self.batch_size = min(points_of(batch, pixels, "batch_size"), self.budget)
        if confidence_target is not None and not 0 < confidence_target <= 1:
            raise AcquisitionError(f"confidence_target must be in (0, 1], got {confidence_target!r}.")
        self.strategy = ACQUISITION_STRATEGIES.create(strategy) if isinstance(strategy, str) else strategy
        self.segmenter, self.meta, self.confidence_target = segmenter, meta or SampleMeta(), confidence_target
        self.rng = np.random.default_rng(seed)
        self.coords = np.zeros((0, 2), dtype=np.int64)
        self.features: list[np.ndarray] = []
        self.steps = np.zeros(0, dtype=np.int64)  # update step at which each point was measured
        self.taken = ~can  # measured, proposed or not measurable
        self.pending = np.zeros((0, 2), dtype=np.int64)
        self.state: PlannerState | None = None
        self.cache: dict[str, Any] = {}
        self.plan_seconds: list[float] = []
        if getattr(self.strategy, "needs_regions", False):
            build_regions_in_background(self.image, self.budget, self.cache)

    # ----------------------------------------------------------------------------- the loop
    @property
    def measured(self) -> int:
        return len(self.coords)

    @property
    def remaining(self) -> int:
        """Points the budget still allows beyond those measured or proposed."""
        return self.budget - self.measured - len(self.pending)

    @property
    def done(self) -> bool:
        """The budget is spent or the last update met the confidence target."""
        return self.remaining <= 0 and not len(self.pending) or bool(self.state is not None and self.state.stop)

    def propose(self, k: int | None = None) -> np.ndarray:
        """The next (k', 2) int64 (row, col) pixels to measure, k' = min(k or batch_size, what the budget leaves)."""
        k = self.batch_size if k is None else int(k)
        if k < 1:
            raise AcquisitionError(f"propose(k) needs k >= 1, got {k}.")
        k = min(k, self.remaining)
        if k <= 0:
            return np.zeros((0, 2), dtype=np.int64)
        start = time.perf_counter()
        view = PlanningView(self.image, self.taken, self.budget, self.rng,
                            None if self.state is None else self.state.labels,
                            None if self.state is None else self.state.confidence, self.cache)  # fmt: skip
        coords = np.asarray(self.strategy(view, k), dtype=np.int64).reshape(-1, 2)[:k]
        self._check_new(coords, "the strategy proposed")
        self.taken[coords[:, 0], coords[:, 1]] = True
        self.pending = np.concatenate([self.pending, coords])
        self.plan_seconds.append(time.perf_counter() - start)
        return coords

    def add(self, coords: Any, features: Any) -> None:
        """Record measured points: (N, 2) (row, col) pixels and their (N, D) features (e.g. spectra).

        Points need not have been proposed (a stage that drifted); none may repeat a measured pixel, and the
        total may not exceed the budget.
        """
        rc = np.rint(np.asarray(coords, dtype=np.float64)).astype(np.int64).reshape(-1, 2)
        feats = np.asarray(features, dtype=np.float32)
        if feats.ndim != 2 or len(feats) != len(rc):
            raise AcquisitionError(f"features must be (N, D) with one row per point (N = {len(rc)}), "
                                   f"got shape {feats.shape}.")  # fmt: skip
        self._check_inside(rc, "add() got")
        proposed = np.isin(self._flat(rc), self._flat(self.pending))
        self._check_new(rc[~proposed], "add() got")
        if len(np.unique(self._flat(rc))) < len(rc):
            raise AcquisitionError("add() got the same pixel twice; each pixel is measured once.")
        if self.measured + len(rc) > self.budget:
            raise AcquisitionError(f"adding {len(rc)} points would measure {self.measured + len(rc)}, over the "
                                   f"budget of {self.budget}; add fewer or raise the budget.")  # fmt: skip
        self.taken[rc[:, 0], rc[:, 1]] = True
        keep = ~np.isin(self._flat(self.pending), self._flat(rc))
        self.pending = self.pending[keep]
        self.coords = np.concatenate([self.coords, rc])
        self.features.append(feats)
        step = 0 if self.state is None else self.state.step
        self.steps = np.concatenate([self.steps, np.full(len(rc), step)])

    def update(self) -> PlannerState:
        """Segment with every point measured so far; returns (and keeps) the new `PlannerState`."""
        if self.segmenter is None:
            raise AcquisitionError("update() needs a segmenter (Planner(..., segmenter=...)); the strategy "
                                   f"{type(self.strategy).__name__} can run without one: skip update().")  # fmt: skip
        if not self.measured:
            raise AcquisitionError("nothing measured yet: propose() points and add() their spectra first.")
        start = time.perf_counter()
        labels, confidence = self.segmenter(self.sample())
        labels, confidence = np.asarray(labels), np.asarray(confidence, dtype=np.float32)
        previous = None if self.state is None else self.state.labels
        changed = 1.0 if previous is None else float((previous != labels).mean())
        mean_conf = float(confidence.mean())
        pixels = self.pixels
        reason = ""
        if self.measured >= self.budget:
            reason = f"budget of {self.budget} points ({100 * self.budget / pixels:.3g} %) spent"
        elif self.confidence_target is not None and mean_conf >= self.confidence_target:
            reason = f"mean confidence {mean_conf:.3f} reached the target {self.confidence_target:g}"
        step = 1 if self.state is None else self.state.step + 1
        seconds = {"segment_s": round(time.perf_counter() - start, 3),
                   "plan_s": round(self.plan_seconds[-1], 3) if self.plan_seconds else 0.0}  # fmt: skip
        self.state = PlannerState(labels, confidence, self.measured, self.measured / pixels, step, mean_conf,
                                  changed, bool(reason), reason or "continue", seconds)  # fmt: skip
        return self.state

    def sample(self) -> Sample:
        """The image and every point measured so far, as a `Sample` (what the segmenter sees)."""
        feats = np.concatenate(self.features) if self.features else np.zeros((0, 0), dtype=np.float32)
        return Sample(image=torch.from_numpy(self.image), point_coords=torch.from_numpy(self.coords.astype(np.float32)),
                      point_features=torch.from_numpy(feats), meta=self.meta)  # fmt: skip

    def order(self) -> np.ndarray:
        """(N, 3) int: row, col and the update step before which each point was measured (0 = first batch)."""
        return np.column_stack([self.coords, self.steps])

    # ----------------------------------------------------------------------------- checks
    def _flat(self, rc: np.ndarray) -> np.ndarray:
        return rc[:, 0] * self.taken.shape[1] + rc[:, 1]

    def _check_inside(self, rc: np.ndarray, who: str) -> None:
        h, w = self.taken.shape
        if len(rc) and (rc.min() < 0 or (rc[:, 0] >= h).any() or (rc[:, 1] >= w).any()):
            raise AcquisitionError(f"{who} points outside the {h}x{w} image; coordinates are (row, col) pixels.")

    def _check_new(self, rc: np.ndarray, who: str) -> None:
        """Inside the image, no pixel twice, none already taken."""
        self._check_inside(rc, who)
        flat = self._flat(rc)
        if len(np.unique(flat)) < len(flat) or self.taken.ravel()[flat].any():
            raise AcquisitionError(f"{who} a pixel that is already measured or proposed (or twice), or outside the "
                                   "measurable area; each measurable pixel is measured once.")  # fmt: skip


def run_acquisition(
    planner: Planner,
    measure: Callable[[np.ndarray], np.ndarray],
    on_update: Callable[[PlannerState], None] | None = None,
) -> list[PlannerState]:
    """propose -> measure -> add -> update until the planner is done; the state after every batch."""
    states = []
    while not planner.done:
        coords = planner.propose()
        if not len(coords):
            break
        planner.add(coords, measure(coords))
        states.append(planner.update())
        if on_update is not None:
            on_update(states[-1])
    return states
