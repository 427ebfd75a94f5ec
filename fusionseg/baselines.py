"""Non-learned baselines a user would try first, given labelled points on an image.

Every method maps ``(image (C, H, W), point coords (N, 2) rows/cols in px, point labels (N,),
num_classes)`` to an (H, W) label map; points labelled ``IGNORE_INDEX`` are skipped. Call any of
them by name with `classic_map` (``CLASSIC_METHODS``); their settings were chosen on the benchmark's
validation split (``benchmarks/tune_classic.py``), never on its test split.

- ``nearest-point``: the label of the nearest measured point (Voronoi).
- ``superpixel-vote``: BSE superpixels, each labelled by the majority of the points inside (the
  classic automated-mineralogy approach); superpixels without a point fall back to nearest point.
- ``random-walker``: scikit-image's seeded random walker (Grady 2006) on the image scaled to [0, 1],
  the fill step of Juránek et al.'s BSE-EDS pipeline.
- ``geodesic``: nearest point along the image: step cost 1 + w * Sobel(Gaussian(image)),
  scikit-image's minimum-cost-path (``MCP_Geometric``), one front per class.
- ``fast-global-smoother``: edge-aware diffusion of one-hot point channels guided by the image
  (OpenCV contrib's fast global smoother, Min et al. 2014), normalised by the diffused point mask.

`measured_phases_ceiling` is not a method but a bound: the true map where the pixel's phase was
found among the measured points, "unknown" elsewhere; its mIoU is (phases found) / (phases present).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from scipy import ndimage

from fusionseg.sample import IGNORE_INDEX

# Settings chosen on the validation split (seed 1000 fields, benchmarks/tune_classic.py); see README.
RANDOM_WALKER_BETA = 130.0
GEODESIC_EDGE_WEIGHT = 3200.0  # validation mIoU rises until ~1600 and then saturates (edges dominate the cost)
GEODESIC_SIGMA_PX = 2.0
FGS_LAMBDA = 1e3
FGS_SIGMA_COLOR = 4.0  # in 8-bit grey levels of the guide image scaled to [0, 255]


def point_pixels(coords: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Nearest pixel (rows, cols) of each (N, 2) sub-pixel coordinate, clipped into an (H, W) image."""
    rows = np.clip(np.rint(coords[:, 0]).astype(np.int64), 0, shape[0] - 1)
    cols = np.clip(np.rint(coords[:, 1]).astype(np.int64), 0, shape[1] - 1)
    return rows, cols


def unit_scaled(image: np.ndarray) -> np.ndarray:
    """(C, H, W) image scaled to [0, 1] per channel by its 0.5-99.5 percentiles (robust to hot pixels)."""
    img = np.asarray(image, dtype=np.float64)
    lo = np.percentile(img, 0.5, axis=(1, 2), keepdims=True)
    hi = np.percentile(img, 99.5, axis=(1, 2), keepdims=True)
    return np.clip((img - lo) / np.maximum(hi - lo, 1e-12), 0.0, 1.0)


def _seeds(coords: np.ndarray, labels: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Labelled points only: the classes found (sorted) and an (H, W) seed map, 0 = none, i + 1 = found[i]."""
    keep = labels != IGNORE_INDEX
    found = np.unique(labels[keep])
    seeds = np.zeros(shape, dtype=np.int64)
    rows, cols = point_pixels(coords[keep], shape)
    seeds[rows, cols] = np.searchsorted(found, labels[keep]) + 1
    return found, seeds


def nearest_point_map(coords: np.ndarray, labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) label of the nearest labelled point; points labelled ``IGNORE_INDEX`` are skipped.

    Uses an exact Euclidean distance transform (scipy), O(H*W), not a KD-tree per pixel.
    """
    keep = labels != IGNORE_INDEX
    if not keep.any():
        return np.full(shape, IGNORE_INDEX, dtype=np.int64)
    rows, cols = point_pixels(coords[keep], shape)
    label_at = np.full(shape, IGNORE_INDEX, dtype=np.int64)
    label_at[rows, cols] = labels[keep]
    not_point = label_at == IGNORE_INDEX
    _, (ir, ic) = ndimage.distance_transform_edt(not_point, return_distances=True, return_indices=True)
    return label_at[ir, ic]


def superpixel_vote_map(
    image: np.ndarray,
    coords: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    n_segments: int | None = None,
    compactness: float = 0.05,
) -> np.ndarray:
    """(H, W) majority point label per SLIC superpixel of ``image`` (C, H, W), nearest point elsewhere."""
    from skimage.segmentation import slic

    _, h, w = image.shape
    n_segments = n_segments or max(16, h * w // 64)
    segments = slic(
        np.moveaxis(image, 0, -1), n_segments=n_segments, compactness=compactness, channel_axis=-1, start_label=0
    )
    fallback = nearest_point_map(coords, labels, (h, w))
    keep = labels != IGNORE_INDEX
    if not keep.any():
        return fallback
    rows, cols = point_pixels(coords[keep], (h, w))
    seg_of_point = segments[rows, cols]
    n_seg = int(segments.max()) + 1
    votes = np.bincount(seg_of_point * num_classes + labels[keep], minlength=n_seg * num_classes)
    votes = votes.reshape(n_seg, num_classes)
    has_vote = votes.sum(1) > 0
    seg_label = np.where(has_vote, votes.argmax(1), IGNORE_INDEX)
    out = seg_label[segments]
    return np.where(out == IGNORE_INDEX, fallback, out)


def random_walker_probabilities(
    image: np.ndarray, coords: np.ndarray, labels: np.ndarray, beta: float = RANDOM_WALKER_BETA
) -> tuple[np.ndarray, np.ndarray]:
    """Classes found among the points (F,) and the random walker's (F, H, W) probability of each.

    ``beta``: edge penalty of scikit-image's random walker on the image scaled to [0, 1]
    (larger: diffusion stops more at image edges).
    """
    from skimage.segmentation import random_walker
    from threadpoolctl import threadpool_limits

    _, h, w = image.shape
    found, seeds = _seeds(coords, labels, (h, w))
    if len(found) <= 1:
        return found, np.ones((len(found), h, w))
    # One BLAS thread: CG over H*W vectors is memory-bound and BLAS threads spin-wait on shared cores (up to 100x).
    with threadpool_limits(1, user_api="blas"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The probability range is outside")  # cg_j's tolerance: a hair off
        prob = random_walker(unit_scaled(image), seeds, beta=beta, mode="cg_j", tol=1e-4, channel_axis=0,
                             return_full_prob=True)  # fmt: skip
    return found, prob


def random_walker_map(
    image: np.ndarray, coords: np.ndarray, labels: np.ndarray, num_classes: int, beta: float = RANDOM_WALKER_BETA
) -> np.ndarray:
    """(H, W) most probable seed class of the random walker (see `random_walker_probabilities`)."""
    found, prob = random_walker_probabilities(image, coords, labels, beta)
    return _labels_from(found, prob, image.shape[1:])


def geodesic_costs(
    image: np.ndarray,
    coords: np.ndarray,
    labels: np.ndarray,
    edge_weight: float = GEODESIC_EDGE_WEIGHT,
    sigma_px: float = GEODESIC_SIGMA_PX,
) -> tuple[np.ndarray, np.ndarray]:
    """Classes found (F,) and the (F, H, W) geodesic distance (px) from each pixel to that class's nearest point.

    A step costs 1 + ``edge_weight`` * Sobel magnitude of the Gaussian-smoothed (``sigma_px``) image
    scaled to [0, 1], so paths that cross image edges are long.
    """
    from skimage.filters import gaussian, sobel
    from skimage.graph import MCP_Geometric

    img = unit_scaled(image)
    edges = sum(sobel(gaussian(channel, sigma=sigma_px)) for channel in img)
    cost = 1.0 + edge_weight * edges
    _, h, w = image.shape
    found, seeds = _seeds(coords, labels, (h, w))
    out = np.empty((len(found), h, w))
    for i in range(len(found)):
        starts = np.argwhere(seeds == i + 1)
        out[i], _ = MCP_Geometric(cost).find_costs(starts)
    return found, out


def geodesic_map(
    image: np.ndarray,
    coords: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    edge_weight: float = GEODESIC_EDGE_WEIGHT,
    sigma_px: float = GEODESIC_SIGMA_PX,
) -> np.ndarray:
    """(H, W) class of the geodesically nearest point (see `geodesic_costs`)."""
    found, dist = geodesic_costs(image, coords, labels, edge_weight, sigma_px)
    return _labels_from(found, -dist, image.shape[1:])


def fast_global_smoother_scores(
    image: np.ndarray,
    coords: np.ndarray,
    labels: np.ndarray,
    lam: float = FGS_LAMBDA,
    sigma_color: float = FGS_SIGMA_COLOR,
) -> tuple[np.ndarray, np.ndarray]:
    """Classes found among the points (F,) and each one's one-hot point channel diffused edge-aware along
    the image (F, H, W) (OpenCV's fast global smoother; classes one at a time, it filters up to 4 channels).

    ``lam``: smoothness weight; ``sigma_color``: edge sensitivity in grey levels of the image scaled to
    0-255 (OpenCV's 8-bit guide).
    """
    import cv2

    _, h, w = image.shape
    guide = np.ascontiguousarray(np.round(unit_scaled(image)[:3].transpose(1, 2, 0) * 255).astype(np.uint8))
    found, seeds = _seeds(coords, labels, (h, w))
    score = np.stack([
        cv2.ximgproc.fastGlobalSmootherFilter(guide, (seeds == i + 1).astype(np.float32), lam, sigma_color)
        for i in range(len(found))
    ]) if len(found) else np.zeros((0, h, w))  # fmt: skip
    return found, score


def fast_global_smoother_map(
    image: np.ndarray,
    coords: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    lam: float = FGS_LAMBDA,
    sigma_color: float = FGS_SIGMA_COLOR,
) -> np.ndarray:
    """(H, W) class whose diffused point channel is largest (see `fast_global_smoother_scores`)."""
    found, score = fast_global_smoother_scores(image, coords, labels, lam, sigma_color)
    return _labels_from(found, score, image.shape[1:])


def _labels_from(found: np.ndarray, score: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(H, W) ``found[argmax score]``; all ``IGNORE_INDEX`` when no point was labelled."""
    if len(found) == 0:
        return np.full(shape, IGNORE_INDEX, dtype=np.int64)
    return found[np.argmax(score, axis=0)].astype(np.int64)


def measured_phases_ceiling(truth: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(H, W) ``truth`` where its class is among the point ``labels``, ``IGNORE_INDEX`` (unknown) elsewhere.

    The best map a method can give when it may only name phases that some spectrum identified
    (fusionseg masks every other class): a phase no point hit is wrong everywhere it occurs.
    """
    found = np.isin(truth, labels[labels != IGNORE_INDEX])
    return np.where(found, truth, IGNORE_INDEX)


ClassicMethod = Callable[..., np.ndarray]
CLASSIC_METHODS: dict[str, ClassicMethod] = {
    "nearest-point": lambda image, coords, labels, num_classes: nearest_point_map(coords, labels, image.shape[1:]),
    "superpixel-vote": superpixel_vote_map,
    "random-walker": random_walker_map,
    "geodesic": geodesic_map,
    "fast-global-smoother": fast_global_smoother_map,
}
"""Name -> function(image (C, H, W), coords (N, 2) px, labels (N,), num_classes, **settings) -> (H, W) labels."""


def classic_map(method: str, image: np.ndarray, coords: np.ndarray, labels: np.ndarray, num_classes: int,
                **settings: float) -> np.ndarray:  # fmt: skip
    """(H, W) labels of the named classic method (``CLASSIC_METHODS``); ``settings`` override its defaults."""
    if method not in CLASSIC_METHODS:
        raise ValueError(f"Unknown classic method {method!r}; choose one of {', '.join(CLASSIC_METHODS)}.")
    return CLASSIC_METHODS[method](np.asarray(image), np.asarray(coords), np.asarray(labels), num_classes, **settings)
