"""Classic propagation on a region graph (`fusionseg.propagation`): the refiner's fast features."""

from __future__ import annotations

import numpy as np
import pytest

from fusionseg.baselines import unit_scaled
from fusionseg.models.prior import FEATURES, classic_features
from fusionseg.propagation import region_euclid, region_geodesic, region_graph, region_smoother, region_walker
from fusionseg.sample import IGNORE_INDEX


def halves(noise: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """(1, 24, 24) image, dark left / bright right, and 4x4-px block regions (36 of them)."""
    rng = np.random.default_rng(1)
    image = np.where(np.arange(24)[None, :] >= 12, 0.8, 0.2) + noise * rng.standard_normal((24, 24))
    blocks = (np.arange(24)[:, None] // 4) * 6 + np.arange(24)[None, :] // 4
    return image[None], blocks


def test_walker_smoother_and_geodesic_stop_at_the_edge() -> None:
    image, blocks = halves()
    graph = region_graph(unit_scaled(image), blocks, beta=130.0, sigma_color=4.0)
    assert graph.num_regions == 36 and graph.edges.shape == (2, 60)  # 6x6 blocks: 2 * 6 * 5 touching pairs
    counts = np.zeros((2, 36))
    counts[0, 0], counts[1, 35] = 1, 1  # class 0 seeded top-left, class 1 bottom-right
    walker = region_walker(graph, counts)
    smoother = region_smoother(graph, counts, lam=1e3)
    geodesic = region_geodesic(graph, [np.array([0]), np.array([35])], edge_weight=3200.0)
    left = (np.arange(36) % 6) < 3
    for name, score in (("walker", walker), ("smoother", smoother), ("geodesic", -geodesic)):
        assert (score.argmax(0) == np.where(left, 0, 1)).all(), name
    assert np.allclose(walker.sum(0), 1) and np.allclose(smoother.sum(0), 1)
    assert (region_euclid(graph, [np.array([[1.5, 1.5]])]) >= 0).all()


def test_unreachable_regions_get_an_even_share_and_a_finite_distance() -> None:
    image, blocks = halves()
    blocks = blocks.copy()
    blocks[:, 12:] = 36 + (blocks[:, 12:] > 17)  # the right half: two regions that touch only each other
    blocks[:, 11] = blocks[:, 10]
    graph = region_graph(unit_scaled(image), np.unique(blocks, return_inverse=True)[1].reshape(24, 24), 130.0, 4.0)
    r = graph.num_regions
    counts = np.zeros((2, r))
    counts[0, 0] = counts[1, 1] = 1
    walker = region_walker(graph, counts)
    assert np.isfinite(walker).all() and np.allclose(walker.sum(0), 1)
    assert np.isfinite(region_geodesic(graph, [np.array([0]), np.array([1])], 50.0)).all()


@pytest.mark.parametrize(
    "case",
    ["one pixel, two classes", "one class", "constant image", "border points", "no labelled point"],
)
def test_odd_fields_give_finite_features(case: str) -> None:
    image, blocks = halves()
    coords = np.array([[3.0, 3.0], [20.0, 20.0], [5.0, 18.0]])
    labels = np.array([2, 5, 5])
    if case == "one pixel, two classes":
        coords = np.array([[7.0, 7.0]] * 3)
    elif case == "one class":
        labels = np.array([4, 4, 4])
    elif case == "constant image":
        image = np.full_like(image, 0.5)
    elif case == "border points":
        coords = np.array([[0.0, 0.0], [23.0, 23.0], [0.0, 23.0]])
    elif case == "no labelled point":
        labels = np.full(3, IGNORE_INDEX)
    feats = classic_features(image.astype(np.float32), coords, labels, blocks)
    assert feats.region.shape == (len(feats.found), 36, len(FEATURES))
    assert np.isfinite(feats.region).all()
    assert np.isfinite(feats.pixel_features(np.arange(24 * 24)).numpy()).all()
    if len(feats.found):
        assert set(np.unique(feats.classic_labels("geodesic"))) <= set(feats.found.tolist())


def test_spd_solve_equals_a_general_sparse_solve() -> None:
    """`spd_solve` (qdldl's LDL^T) against scipy's LU on a walker-like system with weights over 10 decades."""
    from scipy import sparse
    from scipy.sparse.linalg import spsolve

    from fusionseg.propagation import spd_solve

    rng = np.random.default_rng(0)
    n = 400
    a, b = rng.integers(0, n, 3000), rng.integers(0, n, 3000)
    weight = 10.0 ** rng.uniform(-10, 0, 3000)
    adj = sparse.coo_matrix((weight, (a, b)), shape=(n, n))
    adj = (adj + adj.T).tocsr()
    matrix = (sparse.diags(np.asarray(adj.sum(1)).ravel() + rng.uniform(0.1, 20, n)) - adj).tocsc()
    rhs = rng.uniform(0, 1, (n, 3))
    assert np.allclose(spd_solve(matrix, rhs), spsolve(matrix, rhs), rtol=1e-9, atol=1e-12)
    assert spd_solve(matrix, rhs[:, :0]).shape == (n, 0)
