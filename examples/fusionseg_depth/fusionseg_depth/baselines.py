"""Classic completions of sparse disparity samples: nearest sample, linear (Delaunay), fast global smoother.

All take sample coordinates ``(N, 2)`` int (row, col) pixels and values ``(N,)`` (disparity px) and
return an ``(H, W)`` float32 map. The edge-aware classic is OpenCV contrib's fast global smoother
(Min et al., IEEE TIP 2014) used as normalised convolution, FGS(values * mask) / FGS(mask), with
the RGB image as guide: the weighted-least-squares guided filling practitioners use for sparse depth,
available in the pip wheel (the fast bilateral solver is not: that wheel is built without Eigen) and
~25 ms for 500x741. Its two settings are chosen per image by cross-validation on the samples
themselves (`tune_fgs`), never on the ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.interpolate import LinearNDInterpolator
from scipy.spatial import Delaunay, cKDTree

from fusionseg.baselines import nearest_point_map


def nearest_fill(coords: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) value of the nearest sample (Voronoi), via fusionseg's nearest-point map."""
    owner = nearest_point_map(coords.astype(np.float64), np.arange(len(values)), shape)
    return values.astype(np.float32)[owner]


def linear_fill(
    coords: np.ndarray, values: np.ndarray, shape: tuple[int, int], window: tuple[int, int, int, int] | None = None
) -> np.ndarray:
    """Linear interpolation over the samples' Delaunay triangulation (scipy), nearest sample outside the hull.

    ``window``: (row0, col0, height, width) to evaluate only part of the (H, W) map; default all of it.
    """
    r0, c0, h, w = window or (0, 0, *shape)
    rows, cols = np.mgrid[r0 : r0 + h, c0 : c0 + w]
    pts = coords.astype(np.float64)
    out = LinearNDInterpolator(Delaunay(pts), values.astype(np.float64))(rows, cols).astype(np.float32)
    hole = np.isnan(out)
    if hole.any():  # outside the convex hull: nearest sample (few pixels, so a k-d tree query)
        _, nearest = cKDTree(pts).query(np.stack([rows[hole], cols[hole]], 1))
        out[hole] = values[nearest]
    return out


@dataclass(frozen=True)
class FGSSettings:
    """Fast global smoother settings: ``lam`` (smoothness), ``sigma`` (colour range, 0-255 intensity units).

    ``coarse_sigma``/``coarse_weight``: multi-scale normalised convolution, the fusionseg model's base: a
    second, colour-permissive pass (``coarse_sigma``) added with weight ``coarse_weight`` to numerator
    and denominator, so pixels whose colour matches no sample (thin parts, unsampled patches) take the
    coarse estimate while the fine pass keeps edges elsewhere. None: the plain (single-scale) filter.
    """

    lam: float = 100.0
    sigma: float = 16.0
    coarse_sigma: float | None = None
    coarse_weight: float = 0.1


FGS_GRID = tuple(FGSSettings(lam, sigma) for lam in (10.0, 30.0, 100.0, 300.0) for sigma in (4.0, 8.0, 16.0, 24.0))
"""Settings the plain fast global smoother (the edge-aware baseline) is tuned over."""
MULTISCALE_GRID = tuple(
    FGSSettings(lam, sigma, coarse, weight)
    for lam in (100.0, 300.0)
    for sigma in (4.0, 8.0)
    for coarse, weight in ((16.0, 0.1), (32.0, 0.1), (32.0, 0.01))
)
"""Settings the multi-scale filter (the model's base channel) is tuned over."""


def fgs_fill(
    rgb: np.ndarray, coords: np.ndarray, values: np.ndarray, settings: FGSSettings = FGSSettings()
) -> np.ndarray:
    """(H, W) edge-aware completion: FGS(values) / FGS(mask) guided by ``rgb`` (H, W, 3) uint8.

    Multi-scale (``settings.coarse_sigma``): (FGS_fine(v) + w FGS_coarse(v)) / (FGS_fine(m) + w FGS_coarse(m)).
    Where the smoothed mask is below 1e-4 (no sample within reach of the filter), linear interpolation.
    """
    h, w = rgb.shape[:2]
    sparse, mask = np.zeros((h, w), np.float32), np.zeros((h, w), np.float32)
    sparse[coords[:, 0], coords[:, 1]] = values
    mask[coords[:, 0], coords[:, 1]] = 1.0
    guide = np.ascontiguousarray(rgb)
    smooth = cv2.ximgproc.fastGlobalSmootherFilter
    num = smooth(guide, sparse, settings.lam, settings.sigma)
    den = smooth(guide, mask, settings.lam, settings.sigma)
    if settings.coarse_sigma is not None:
        num += settings.coarse_weight * smooth(guide, sparse, settings.lam, settings.coarse_sigma)
        den += settings.coarse_weight * smooth(guide, mask, settings.lam, settings.coarse_sigma)
    out = num / np.maximum(den, 1e-12)
    weak = den < 1e-4
    if weak.any():
        out[weak] = linear_fill(coords, values, (h, w))[weak]
    return out.astype(np.float32)


def tune_fgs(
    rgb: np.ndarray, coords: np.ndarray, values: np.ndarray, folds: int = 5, seed: int = 0,
    grid: tuple[FGSSettings, ...] = FGS_GRID,
) -> tuple[FGSSettings, float]:  # fmt: skip
    """Settings of ``grid`` with the lowest RMSE at held-out samples (``folds``-fold CV on the samples).

    Returns the settings and their cross-validated RMSE (disparity px). Uses only the samples.
    """
    fold = np.random.default_rng(seed).permutation(len(values)) % folds
    best, best_rmse = grid[0], np.inf
    for settings in grid:
        err = []
        for k in range(folds):
            keep, held = fold != k, fold == k
            pred = fgs_fill(rgb, coords[keep], values[keep], settings)
            err.append(pred[coords[held, 0], coords[held, 1]] - values[held])
        rmse = float(np.sqrt(np.mean(np.concatenate(err) ** 2)))
        if rmse < best_rmse:
            best, best_rmse = settings, rmse
    return best, best_rmse
