"""Adaptive acquisition planner: the loop's contracts (no repeats, budget kept) and the strategies' behaviour."""

from __future__ import annotations

import numpy as np
import pytest

from fusionseg.acquisition import AcquisitionError, Planner, run_acquisition
from fusionseg.registry import ACQUISITION_STRATEGIES


def two_level_image(size: int = 64) -> np.ndarray:
    """A dark field with one bright 6x6 inclusion (rows/cols 40..45), light noise."""
    rng = np.random.default_rng(0)
    img = 0.3 + 0.01 * rng.standard_normal((size, size))
    img[40:46, 40:46] = 0.8
    return img.astype(np.float32)


def fake_segmenter(sample):
    """Labels by image level; confidence 0.2 on bright pixels until one bright pixel is measured."""
    img = sample.image[0].numpy()
    labels = (img > 0.55).astype(np.int64)
    rc = sample.point_coords.numpy().astype(int)
    seen_bright = bool((img[rc[:, 0], rc[:, 1]] > 0.55).any())
    conf = np.where(labels == 1, 1.0 if seen_bright else 0.2, 0.95).astype(np.float32)
    return labels, conf


@pytest.mark.parametrize("strategy", ["random", "grid", "stratified", "superpixel", "unmeasured-regions",
                                      "uncertainty", "hybrid"])  # fmt: skip
def test_never_twice_and_budget_kept(strategy: str) -> None:
    planner = Planner(two_level_image(), budget=40, batch_size=7, strategy=strategy, segmenter=fake_segmenter)
    states = run_acquisition(planner, lambda c: np.ones((len(c), 3)))
    flat = planner.coords[:, 0] * 64 + planner.coords[:, 1]
    assert len(np.unique(flat)) == len(flat) == 40  # every point distinct, budget spent exactly
    assert states[-1].stop and "budget" in states[-1].reason
    assert len(states) == 6  # 5 batches of 7 + one of 5
    assert planner.propose().shape == (0, 2)  # nothing beyond the budget


@pytest.mark.parametrize("strategy", ["unmeasured-regions", "uncertainty"])
def test_adaptive_strategies_find_the_inclusion_random_misses(strategy: str) -> None:
    def first_two_batches(name: str) -> np.ndarray:
        planner = Planner(two_level_image(), budget=16, batch_size=8, strategy=name, segmenter=fake_segmenter, seed=3)
        run_acquisition(planner, lambda c: np.ones((len(c), 3)))
        return planner.coords

    def hits(rc: np.ndarray) -> bool:
        return bool(((rc >= 40) & (rc < 46)).all(1).any())

    assert hits(first_two_batches(strategy))
    assert not hits(first_two_batches("random"))


def test_bad_requests_are_refused() -> None:
    planner = Planner(two_level_image(), budget=10, batch_size=5, strategy="random", segmenter=fake_segmenter)
    coords = planner.propose()
    planner.add(coords, np.ones((5, 3)))
    with pytest.raises(AcquisitionError, match="already measured"):
        planner.add(coords[:1], np.ones((1, 3)))
    with pytest.raises(AcquisitionError, match="over the budget"):
        free = np.array([[r, c] for r in range(64) for c in range(64) if not planner.taken[r, c]][:6])
        planner.add(free, np.ones((6, 3)))
    with pytest.raises(AcquisitionError, match="outside"):
        planner.add(np.array([[64, 0]]), np.ones((1, 3)))
    with pytest.raises(AcquisitionError, match="budget"):
        Planner(two_level_image(), budget=0, batch_size=1)
    with pytest.raises(AcquisitionError, match="segmenter"):
        p = Planner(two_level_image(), budget=4, batch_size=2, strategy="random")
        p.add(p.propose(), np.ones((2, 3)))
        p.update()


def test_confidence_target_stops_early() -> None:
    planner = Planner(two_level_image(), budget=200, batch_size=10, strategy="hybrid", segmenter=fake_segmenter,
                      confidence_target=0.9)  # fmt: skip
    states = run_acquisition(planner, lambda c: np.ones((len(c), 3)))
    assert states[-1].stop and "confidence" in states[-1].reason
    assert planner.measured < 200
    assert set(np.unique(planner.order()[:, 2])) == set(range(len(states)))  # step recorded per point


def test_strategies_are_registered() -> None:
    assert {"random", "grid", "stratified", "superpixel", "unmeasured-regions", "uncertainty", "hybrid"} <= set(
        ACQUISITION_STRATEGIES.names()
    )
