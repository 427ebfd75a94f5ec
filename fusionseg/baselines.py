"""Non-learned baselines a user would try first, given labelled points on an image.

- `nearest_point_map`: every pixel takes the label of its nearest measured point (Voronoi).
- `superpixel_vote_map`: BSE superpixels, each labelled by the majority of the points inside
  (the classic automated-mineralogy approach); superpixels without a point fall back to the
  nearest point.
- `measured_phases_ceiling`: not a method but a bound: the true map where the pixel's phase was
  found among the measured points, "unknown" elsewhere. Any method that names phases only from
  its spectra scores at most this; its mIoU is (phases found) / (phases present) per field.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from fusionseg.sample import IGNORE_INDEX


def _point_pixels(coords: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    rows = np.clip(np.rint(coords[:, 0]).astype(np.int64), 0, shape[0] - 1)
    cols = np.clip(np.rint(coords[:, 1]).astype(np.int64), 0, shape[1] - 1)
    return rows, cols


def nearest_point_map(coords: np.ndarray, labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) label of the nearest labelled point; points labelled ``IGNORE_INDEX`` are skipped.

    Uses an exact Euclidean distance transform (scipy), O(H*W), not a KD-tree per pixel.
    """
    keep = labels != IGNORE_INDEX
    if not keep.any():
        return np.full(shape, IGNORE_INDEX, dtype=np.int64)
    rows, cols = _point_pixels(coords[keep], shape)
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
    rows, cols = _point_pixels(coords[keep], (h, w))
    seg_of_point = segments[rows, cols]
    n_seg = int(segments.max()) + 1
    votes = np.bincount(seg_of_point * num_classes + labels[keep], minlength=n_seg * num_classes)
    votes = votes.reshape(n_seg, num_classes)
    has_vote = votes.sum(1) > 0
    seg_label = np.where(has_vote, votes.argmax(1), IGNORE_INDEX)
    out = seg_label[segments]
    return np.where(out == IGNORE_INDEX, fallback, out)


def measured_phases_ceiling(truth: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(H, W) ``truth`` where its class is among the point ``labels``, ``IGNORE_INDEX`` (unknown) elsewhere.

    The best map a method can give when it may only name phases that some spectrum identified
    (fusionseg masks every other class): a phase no point hit is wrong everywhere it occurs.
    """
    found = np.isin(truth, labels[labels != IGNORE_INDEX])
    return np.where(found, truth, IGNORE_INDEX)
