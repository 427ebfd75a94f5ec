"""Point samplers: distinct pixel centres, counts, spread, errors."""

import numpy as np
import pytest

from fusionseg.data.samplers import SamplerError
from fusionseg.registry import SAMPLERS

NAMES = ("random", "grid", "stratified")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("h", "w", "n"), [(64, 64, 41), (10, 300, 30), (7, 5, 35), (1, 1, 1), (128, 96, 123)])
def test_distinct_pixel_centres(name, h, w, n):
    pts = SAMPLERS.create(name)(h, w, n, np.random.default_rng(0))
    assert pts.shape == (n, 2) and pts.dtype == np.float64
    assert np.all(pts == np.round(pts)), "pixel centres are integer (row, col)"
    assert pts[:, 0].min() >= 0 and pts[:, 0].max() < h and pts[:, 1].min() >= 0 and pts[:, 1].max() < w
    assert len(np.unique(pts[:, 0] * w + pts[:, 1])) == n


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_and_seed_dependent(name):
    s = SAMPLERS.create(name)
    a, b = s(100, 100, 100, np.random.default_rng(3)), s(100, 100, 100, np.random.default_rng(3))
    c = s(100, 100, 100, np.random.default_rng(4))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("name", ["grid", "stratified"])
def test_lattice_samplers_cover_the_image(name):
    # 100 points on 100x100: every 10x10 block holds exactly one (grid) / about one point
    pts = SAMPLERS.create(name)(100, 100, 100, np.random.default_rng(1))
    blocks = np.bincount((pts[:, 0] // 10 * 10 + pts[:, 1] // 10).astype(int), minlength=100)
    assert blocks.max() == 1 and blocks.min() == 1
    # nearest-neighbour distances: regular spacing, unlike uniform random
    d = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1)) + np.eye(100) * 1e9
    assert d.min(1).mean() > 5.0


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n", [0, -3, 17])
def test_bad_counts_raise(name, n):
    with pytest.raises(SamplerError, match="n_points"):
        SAMPLERS.create(name)(4, 4, n, np.random.default_rng(0))


def test_unknown_sampler_lists_names():
    with pytest.raises(KeyError, match="stratified"):
        SAMPLERS.create("randon")
