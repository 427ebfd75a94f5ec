"""Point samplers: where on an H x W image the sparse measurements (EDS spots) are taken.

A sampler is a callable ``sampler(height, width, n_points, rng) -> (N, 2) float64`` of distinct
pixel centres (row, col), registered in `SAMPLERS`:

* ``random``: uniform without replacement;
* ``grid``: a regular lattice with about square cells and a random origin;
* ``stratified``: one random pixel in each cell of that lattice (jittered grid).
"""

from __future__ import annotations

import numpy as np

from fusionseg.registry import SAMPLERS


class SamplerError(ValueError):
    """Impossible sampling request (too few/many points or an empty image)."""


def _check(height: int, width: int, n_points: int) -> int:
    if int(height) < 1 or int(width) < 1:
        raise SamplerError(f"Image size must be >= 1 px per side (got {height}x{width}).")
    n_points = int(n_points)
    if n_points < 1 or n_points > height * width:
        raise SamplerError(
            f"n_points must be in 1..{height * width} for a {height}x{width} image (got {n_points}); "
            "points are distinct pixels."
        )
    return n_points


def _lattice(height: int, width: int, n_points: int) -> tuple[int, int]:
    """Rows x cols of a lattice with >= n_points cells, cells about square, at most one per pixel."""
    rows = int(min(height, max(1, round(np.sqrt(n_points * height / width)))))
    cols = int(np.ceil(n_points / rows))
    if cols > width:
        cols = width
        rows = int(np.ceil(n_points / width))
    return rows, cols


def _drop(cells: np.ndarray, n_points: int, rng: np.random.Generator) -> np.ndarray:
    """Keep n_points of the lattice cells, dropping a random subset of the extras."""
    if len(cells) == n_points:
        return cells
    keep = np.sort(rng.choice(len(cells), size=n_points, replace=False))
    return cells[keep]


@SAMPLERS.register("random", "uniform")
class RandomSampler:
    """Uniformly random distinct pixels."""

    def __call__(self, height: int, width: int, n_points: int, rng: np.random.Generator) -> np.ndarray:
        n_points = _check(height, width, n_points)
        flat = rng.choice(height * width, size=n_points, replace=False)
        return np.stack(np.divmod(flat, width), axis=1).astype(np.float64)


@SAMPLERS.register("grid", "regular")
class GridSampler:
    """A regular lattice of pixels (random origin within one cell); extras beyond n_points dropped at random."""

    def __call__(self, height: int, width: int, n_points: int, rng: np.random.Generator) -> np.ndarray:
        n_points = _check(height, width, n_points)
        rows, cols = _lattice(height, width, n_points)
        sr, sc = height / rows, width / cols  # cell size >= 1 px, so floor() keeps points distinct
        r = np.floor(np.arange(rows) * sr + rng.uniform(0, sr)).astype(np.int64)
        c = np.floor(np.arange(cols) * sc + rng.uniform(0, sc)).astype(np.int64)
        cells = np.stack(np.meshgrid(r, c, indexing="ij"), axis=-1).reshape(-1, 2)
        return _drop(cells, n_points, rng).astype(np.float64)


@SAMPLERS.register("stratified", "jittered")
class StratifiedSampler:
    """One uniformly random pixel inside each cell of a lattice (jittered grid)."""

    def __call__(self, height: int, width: int, n_points: int, rng: np.random.Generator) -> np.ndarray:
        n_points = _check(height, width, n_points)
        rows, cols = _lattice(height, width, n_points)
        r_edges = np.floor(np.arange(rows + 1) * height / rows).astype(np.int64)
        c_edges = np.floor(np.arange(cols + 1) * width / cols).astype(np.int64)
        cells = np.stack(np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij"), axis=-1).reshape(-1, 2)
        cells = _drop(cells, n_points, rng)
        lo_r, hi_r = r_edges[cells[:, 0]], r_edges[cells[:, 0] + 1]
        lo_c, hi_c = c_edges[cells[:, 1]], c_edges[cells[:, 1] + 1]
        r = lo_r + np.floor(rng.random(n_points) * (hi_r - lo_r)).astype(np.int64)
        c = lo_c + np.floor(rng.random(n_points) * (hi_c - lo_c)).astype(np.int64)
        return np.stack([r, c], axis=1).astype(np.float64)


def sample_points(name: str, height: int, width: int, n_points: int, rng: np.random.Generator) -> np.ndarray:
    """Convenience: build the registered sampler ``name`` and draw points."""
    return SAMPLERS.create(name)(height, width, n_points, rng)
