"""Classic baselines on hand-made images: each must respect the image edge between two labelled regions."""

from __future__ import annotations

import numpy as np
import pytest

from fusionseg.baselines import CLASSIC_METHODS, classic_map
from fusionseg.sample import IGNORE_INDEX

EDGE_AWARE = ("random-walker", "geodesic", "fast-global-smoother")


def two_regions(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(1, 32, 32) image, dark left half (cols < 16) and bright right half, with noise; and the truth."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((32, 32), dtype=np.int64)
    truth[:, 16:] = 1
    image = np.where(truth == 1, 0.7, 0.3) + 0.02 * rng.standard_normal((32, 32))
    return image[None].astype(np.float32), truth


@pytest.mark.parametrize("method", list(CLASSIC_METHODS))
def test_each_region_takes_its_own_point(method: str) -> None:
    image, truth = two_regions()
    coords = np.array([[16.0, 6.0], [16.0, 25.0]])
    pred = classic_map(method, image, coords, np.array([3, 5]), num_classes=6)
    assert set(np.unique(pred)) == {3, 5}
    assert np.mean(pred == np.where(truth == 1, 5, 3)) > 0.97


@pytest.mark.parametrize("method", EDGE_AWARE)
def test_edge_aware_methods_follow_the_edge_not_the_midline(method: str) -> None:
    """Points at cols 2 and 20: the Voronoi midline (col 11) is wrong by 5 columns; the image edge is at 16."""
    image, truth = two_regions(1)
    coords = np.array([[16.0, 2.0], [16.0, 20.0]])
    labels = np.array([0, 1])
    pred = classic_map(method, image, coords, labels, num_classes=2)
    voronoi = classic_map("nearest-point", image, coords, labels, num_classes=2)
    assert np.mean(voronoi == truth) < 0.9  # 4-5 of 32 columns wrong
    assert np.mean(pred == truth) > 0.97


@pytest.mark.parametrize("method", list(CLASSIC_METHODS))
def test_unlabelled_points_are_skipped_and_no_labels_give_unknown(method: str) -> None:
    image, truth = two_regions()
    coords = np.array([[16.0, 6.0], [16.0, 25.0], [2.0, 2.0]])
    pred = classic_map(method, image, coords, np.array([0, 1, IGNORE_INDEX]), num_classes=2)
    assert np.mean(pred == truth) > 0.97
    empty = classic_map(method, image, coords, np.full(3, IGNORE_INDEX), num_classes=2)
    assert (empty == IGNORE_INDEX).all()


def test_unknown_method_names_the_choices() -> None:
    image, _ = two_regions()
    with pytest.raises(ValueError, match="random-walker"):
        classic_map("watershed", image, np.zeros((1, 2)), np.zeros(1, dtype=np.int64), 1)
