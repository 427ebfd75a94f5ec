"""Point samplers: where on an H x W image the sparse measurements (EDS spots) are taken.

A sampler is a callable ``sampler(height, width, n_points, rng) -> (N, 2) float64`` of distinct
pixel centres (row, col), registered in `SAMPLERS`:

* ``random``: uniform without replacement;
* ``grid``: a regular lattice with about square cells and a random origin;
* ``stratified``: one random pixel in each cell of that lattice (jittered grid);
* ``superpixel``: image-guided: one point at the most interior pixel of each SLIC superpixel of the
  image, so every distinct-looking region gets a spectrum (needs the image: ``uses_image = True``).

Call samplers through `draw_points`, which hands the image to those that use it.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from fusionseg.errors import FusionSegError
from fusionseg.registry import SAMPLERS


class SamplerError(FusionSegError):
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


@SAMPLERS.register("superpixel", "image-guided")
class SuperpixelSampler:
    """One point per SLIC superpixel of the image, at the pixel farthest from the superpixel's border.

    Measures where the image says something differs (README, "Where to measure": better than random
    points at <= 1 % EDS, worse at 5 %). Regions come from the ``superpixel`` graph builder's SLIC
    (each channel scaled to [0, 1]); it rarely returns exactly ``n_points`` of them: the largest are
    kept, or the rest filled stratified.
    """

    uses_image = True

    def __init__(self, compactness: float = 0.3, sigma: float = 1.0) -> None:
        self.compactness, self.sigma = float(compactness), float(sigma)

    def __call__(
        self, height: int, width: int, n_points: int, rng: np.random.Generator, image: np.ndarray | None = None
    ) -> np.ndarray:
        import torch

        from fusionseg.graphs.superpixel import SuperpixelGraphBuilder  # one SLIC set-up for regions and points

        n_points = _check(height, width, n_points)
        if image is None:
            raise SamplerError("the superpixel sampler places points by the image; pass image= (H, W) or (C, H, W).")
        img = torch.as_tensor(np.asarray(image, dtype=np.float32))
        img = img[None] if img.ndim == 2 else img
        if tuple(img.shape[1:]) != (height, width):
            raise SamplerError(f"image is {img.shape[1]}x{img.shape[2]} px but points are asked on {height}x{width}.")
        regions = SuperpixelGraphBuilder(
            n_segments=n_points, compactness=self.compactness, sigma=self.sigma, max_num_iter=10
        )
        segments = regions.segment(img)
        ids = np.argsort(-np.bincount(segments.ravel()), kind="stable")[:n_points]  # labels are 0..R-1; largest first
        chosen = region_interiors(segments, ids)
        if len(chosen) < n_points:
            chosen = np.concatenate([chosen, self._fill(height, width, n_points - len(chosen), chosen, rng)])
        return chosen.astype(np.float64)

    @staticmethod
    def _fill(height: int, width: int, n: int, taken: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``n`` stratified pixels not in ``taken`` (topped up at random where the lattice collides)."""
        free = np.ones(height * width, dtype=bool)
        free[taken[:, 0] * width + taken[:, 1]] = False
        cand = StratifiedSampler()(height, width, min(n, int(free.sum())), rng).astype(np.int64)
        cand = cand[free[cand[:, 0] * width + cand[:, 1]]]
        free[cand[:, 0] * width + cand[:, 1]] = False
        extra = rng.choice(np.flatnonzero(free), size=n - len(cand), replace=False)
        return np.concatenate([cand, np.stack(np.divmod(extra, width), axis=1)])


def region_interiors(segments: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """(len(ids), 2) int64 (row, col) of the pixel of each region ``ids`` of ``segments`` (H, W) farthest from
    the region's border: where a spectrum is least mixed with the neighbours'."""
    from skimage.segmentation import find_boundaries

    depth = ndimage.distance_transform_edt(~find_boundaries(segments, mode="inner"))
    return np.array(ndimage.maximum_position(depth, labels=segments, index=ids), dtype=np.int64).reshape(-1, 2)


def draw_points(
    sampler, height: int, width: int, n_points: int, rng: np.random.Generator, image: np.ndarray | None = None
) -> np.ndarray:
    """(N, 2) points from ``sampler``, handing it ``image`` when it places points by the image."""
    if getattr(sampler, "uses_image", False):
        return sampler(height, width, n_points, rng, image=image)
    return sampler(height, width, n_points, rng)


def sample_points(
    name: str, height: int, width: int, n_points: int, rng: np.random.Generator, image: np.ndarray | None = None
) -> np.ndarray:
    """Convenience: build the registered sampler ``name`` and draw points."""
    return draw_points(SAMPLERS.create(name), height, width, n_points, rng, image)
