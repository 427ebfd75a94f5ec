"""Data of the depth domain: the measured scene, sparse disparity samples, guidance channels, `Sample`s.

The scene is Middlebury 2014's "Motorcycle" as shipped by scikit-image (`skimage.data.stereo_motorcycle`):
a 500x741 RGB left view and its measured ground-truth disparity in pixels (``inf`` where unknown,
about 7 %; here NaN). Nothing is downloaded. The ground truth is used only to draw the sparse
samples (valid pixels, like a sensor's returns) and to score; models see the samples.

A depth `Sample` has:

* ``image`` (9, H, W) float32 guidance channels (`GUIDANCE_CHANNELS`): RGB, luminance gradients,
  and three classic completions of the visible samples (linear, fast global smoother, nearest) plus
  the distance to the nearest sample. Disparities are divided by ``disparity_scale``.
* ``point_coords`` (N, 2) pixel centres (row, col) of the visible samples, ``point_features``
  (N, 1) their disparity / ``disparity_scale``, ``point_target`` (N,) their disparity (px).
* ``target`` (H, W) float disparity (px) to learn or score, NaN where unlabelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from scipy import ndimage
from scipy.spatial import cKDTree
from torch.utils.data import Dataset

from fusionseg.registry import DATA_SOURCES
from fusionseg.sample import Sample, SampleMeta
from fusionseg_depth.baselines import MULTISCALE_GRID, FGSSettings, fgs_fill, linear_fill, tune_fgs

GUIDANCE_CHANNELS = ("red", "green", "blue", "grad_row", "grad_col", "linear", "fgs", "nearest", "distance")
LINEAR_CHANNEL = GUIDANCE_CHANNELS.index("linear")
FGS_CHANNEL = GUIDANCE_CHANNELS.index("fgs")
DISPARITY_SCALE = 32.0
"""Disparity px per unit of the guidance channels and point features (the scene's range is 7-60 px)."""
FGS_MARGIN = 32
"""Pixels of context around a training crop in which the fast global smoother runs."""


class DepthInputError(ValueError):
    """Bad depth-completion input; the message names the problem and the fix."""


@cache
def load_motorcycle() -> tuple[np.ndarray, np.ndarray]:
    """RGB (500, 741, 3) uint8 and ground-truth disparity (500, 741) float32 px, NaN where unknown."""
    from skimage.data import stereo_motorcycle

    left, _, disparity = stereo_motorcycle()
    disparity = np.where(np.isfinite(disparity), disparity, np.nan).astype(np.float32)
    left.setflags(write=False)
    disparity.setflags(write=False)
    return left, disparity


def check_fraction(fraction: float) -> float:
    """``fraction`` as a float in (0, 1], or a `DepthInputError` naming the fix."""
    if not isinstance(fraction, int | float) or not 0 < fraction <= 1:
        raise DepthInputError(
            f"fraction must be in (0, 1] (share of the valid pixels that carry a sample), got {fraction!r}; "
            "e.g. 0.01 samples 1 % of them."
        )
    return float(fraction)


def draw_samples(disparity: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """(N, 2) int64 (row, col) of ``round(fraction * valid pixels)`` distinct valid pixels, uniformly at random."""
    fraction = check_fraction(fraction)
    valid = np.flatnonzero(np.isfinite(disparity).ravel())
    n = int(round(fraction * len(valid)))
    if n < 3:
        raise DepthInputError(
            f"fraction {fraction} of {len(valid)} valid pixels gives {n} samples; at least 3 are needed "
            "(a triangulation); raise the fraction or use a larger image."
        )
    pick = np.sort(np.random.default_rng(seed).choice(valid, size=n, replace=False))
    return np.stack(np.divmod(pick, disparity.shape[1]), 1).astype(np.int64)


def check_samples(rgb: np.ndarray, coords: np.ndarray, values: np.ndarray, valid: np.ndarray | None = None) -> None:
    """Raise `DepthInputError` for samples a completion cannot use; ``valid`` (H, W) bool: where truth exists."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise DepthInputError(f"the image must be (H, W, 3) RGB, got shape {rgb.shape}; convert it with skimage.color.")
    h, w = rgb.shape[:2]
    if valid is not None and valid.shape != (h, w):
        raise DepthInputError(
            f"the image is {h}x{w} but the disparity/validity map is {valid.shape[0]}x{valid.shape[1]}; "
            "crop or resize both to the same size (the samples' coordinates refer to the image's pixels)."
        )
    if coords.ndim != 2 or coords.shape[1] != 2 or len(coords) != len(values):
        raise DepthInputError(
            f"samples need coords (N, 2) (row, col) and values (N,), got {coords.shape} and {np.shape(values)}."
        )
    if len(values) < 3:
        raise DepthInputError(
            f"{len(values)} samples given; at least 3 are needed (a triangulation); measure more points."
        )
    if not np.isfinite(values).all():
        raise DepthInputError(
            f"{int((~np.isfinite(values)).sum())} sample values are NaN or inf; drop those samples "
            "(a sensor's missing returns are not measurements)."
        )
    if not np.issubdtype(coords.dtype, np.integer):
        raise DepthInputError("sample coords must be integer pixel indices (row, col); round them first.")
    outside = (coords[:, 0] < 0) | (coords[:, 0] >= h) | (coords[:, 1] < 0) | (coords[:, 1] >= w)
    if outside.any():
        raise DepthInputError(
            f"{int(outside.sum())} samples lie outside the {h}x{w} image (rows 0..{h - 1}, cols 0..{w - 1}); "
            "coords are (row, col) pixels of this image, not (x, y) or another image's."
        )
    if valid is not None and not valid[coords[:, 0], coords[:, 1]].all():
        raise DepthInputError(
            f"{int((~valid[coords[:, 0], coords[:, 1]]).sum())} samples sit at pixels whose disparity is invalid "
            "(inf/NaN in the ground truth); draw samples from valid pixels only (see draw_samples)."
        )
    if len(np.unique(coords[:, 0] * w + coords[:, 1])) != len(coords):
        raise DepthInputError("two samples share a pixel; keep one value per pixel.")


def luminance_gradients(rgb: np.ndarray) -> np.ndarray:
    """(2, H, W) Sobel derivatives (row, col) of the luminance in [0, 1] (scipy.ndimage)."""
    gray = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255.0
    return np.stack([ndimage.sobel(gray, axis=0), ndimage.sobel(gray, axis=1)]).astype(np.float32)


def guidance(
    rgb: np.ndarray,
    coords: np.ndarray,
    values: np.ndarray,
    fgs: FGSSettings,
    spacing: float,
    window: tuple[int, int, int, int] | None = None,
    scale: float = DISPARITY_SCALE,
) -> np.ndarray:
    """(9, h, w) float32 `GUIDANCE_CHANNELS` of ``window`` (row0, col0, h, w; default the whole image).

    ``coords``/``values``: the visible samples anywhere in the image (px). On a window, every channel
    uses the samples within `FGS_MARGIN` px of it (the smoother runs on that context), which keeps a
    training item's cost independent of the sample count. ``spacing``: typical distance between
    samples (px); the distance channel is in these units, so it means the same at every sampling density.
    """
    height, width = rgb.shape[:2]
    r0, c0, h, w = window or (0, 0, height, width)
    lr0, lc0 = max(0, r0 - FGS_MARGIN), max(0, c0 - FGS_MARGIN)
    lr1, lc1 = min(height, r0 + h + FGS_MARGIN), min(width, c0 + w + FGS_MARGIN)
    inside = (coords[:, 0] >= lr0) & (coords[:, 0] < lr1) & (coords[:, 1] >= lc0) & (coords[:, 1] < lc1)
    if window is not None and inside.sum() >= 3:
        coords, values, inside = coords[inside], values[inside], np.ones(int(inside.sum()), bool)
    rows, cols = np.mgrid[r0 : r0 + h, c0 : c0 + w]
    dist, nearest = cKDTree(coords.astype(np.float64)).query(np.stack([rows.ravel(), cols.ravel()], 1))
    linear = linear_fill(coords, values, (height, width), (r0, c0, h, w))
    if inside.sum() >= 3:
        local = fgs_fill(rgb[lr0:lr1, lc0:lc1], coords[inside] - np.array([lr0, lc0]), values[inside], fgs)
        smooth = local[r0 - lr0 : r0 - lr0 + h, c0 - lc0 : c0 - lc0 + w]
    else:
        smooth = linear
    colour = np.moveaxis(rgb[r0 : r0 + h, c0 : c0 + w].astype(np.float32) / 255.0 - 0.5, -1, 0)
    grads = luminance_gradients(rgb[max(0, r0 - 1) : r0 + h + 1, max(0, c0 - 1) : c0 + w + 1])
    grads = grads[:, (r0 > 0) : (r0 > 0) + h, (c0 > 0) : (c0 > 0) + w]
    fills = np.stack([linear, smooth, values[nearest].reshape(h, w)]) / scale
    return np.concatenate([colour, grads, fills, (dist / spacing).reshape(1, h, w)]).astype(np.float32)


def sample_spacing(num_samples: int, area: int) -> float:
    """Mean spacing (px) of ``num_samples`` spread over ``area`` pixels: sqrt(area / N)."""
    return float(np.sqrt(area / max(num_samples, 1)))


def depth_sample(
    guide: np.ndarray,
    coords: np.ndarray,
    values: np.ndarray,
    target: np.ndarray | None,
    name: str,
    scale: float = DISPARITY_SCALE,
) -> Sample:
    """A fusionseg `Sample` from guidance channels (9, h, w), visible samples in the window's pixels and a target."""
    return Sample(
        image=torch.from_numpy(guide),
        point_coords=torch.from_numpy(coords.astype(np.float32)),
        point_features=torch.from_numpy((values / scale).astype(np.float32)[:, None]),
        point_target=torch.from_numpy(values.astype(np.float32)),
        target=None if target is None else torch.from_numpy(target.astype(np.float32)),
        meta=SampleMeta(name=name, extra={"disparity_scale": scale}),
    )


@dataclass
class Scene:
    """An RGB image, its samples and (for scoring only) its ground truth, all in one pixel frame."""

    rgb: np.ndarray  # (H, W, 3) uint8
    coords: np.ndarray  # (N, 2) int64 (row, col)
    values: np.ndarray  # (N,) float32 disparity px
    truth: np.ndarray | None = None  # (H, W) float32 px, NaN = unknown; evaluation only

    def __post_init__(self) -> None:
        valid = None if self.truth is None else np.isfinite(self.truth)
        check_samples(self.rgb, self.coords, self.values, valid)
        self.values = self.values.astype(np.float32)

    @property
    def shape(self) -> tuple[int, int]:
        return self.rgb.shape[:2]

    def spacing(self, num_samples: int | None = None) -> float:
        return sample_spacing(num_samples or len(self.values), self.shape[0] * self.shape[1])

    def flipped(self) -> Scene:
        """The mirror image (columns reversed), samples and truth with it."""
        cols = self.shape[1] - 1 - self.coords[:, 1]
        truth = None if self.truth is None else self.truth[:, ::-1]
        return Scene(
            np.ascontiguousarray(self.rgb[:, ::-1]), np.stack([self.coords[:, 0], cols], 1), self.values, truth
        )

    def region(self, col0: int, col1: int) -> Scene:
        """The columns ``col0:col1`` as a scene of their own (its samples only)."""
        keep = (self.coords[:, 1] >= col0) & (self.coords[:, 1] < col1)
        truth = None if self.truth is None else self.truth[:, col0:col1]
        return Scene(self.rgb[:, col0:col1], self.coords[keep] - np.array([0, col0]), self.values[keep], truth)


def motorcycle_scene(fraction: float, seed: int, window: tuple[int, int, int, int] | None = None) -> Scene:
    """The motorcycle (or its ``window`` (row0, col0, h, w)), ``fraction`` of its valid pixels sampled (``seed``)."""
    rgb, truth = load_motorcycle()
    if window is not None:
        r0, c0, h, w = window
        rgb, truth = rgb[r0 : r0 + h, c0 : c0 + w], truth[r0 : r0 + h, c0 : c0 + w]
    coords = draw_samples(truth, fraction, seed)
    return Scene(np.ascontiguousarray(rgb), coords, truth[coords[:, 0], coords[:, 1]], truth)


class HideAndPredict(Dataset):
    """Self-supervised training items: random crops whose target is a randomly hidden part of the samples.

    Each item draws a fresh split of the scene's samples (``hide`` of them hidden, at random), a random
    ``crop`` x ``crop`` window and a random horizontal flip; the guidance channels are computed from the
    visible samples only, and the target holds the hidden samples' disparities (NaN elsewhere). So the
    model learns to predict measured values it was not shown, from the others and the image.
    ``length``: items per epoch (each a new draw).
    """

    def __init__(
        self, scene: Scene, fgs: FGSSettings, crop: int = 128, hide: float = 0.3, length: int = 64,
        seed: int = 0, flip: bool = True, scale: float = DISPARITY_SCALE,
    ) -> None:  # fmt: skip
        if not 0 < hide < 1:
            raise DepthInputError(f"hide must be in (0, 1) (share of samples hidden per item), got {hide}.")
        self.scene, self.fgs, self.hide, self.length, self.flip, self.scale = scene, fgs, hide, length, flip, scale
        self.crop = min(crop, *scene.shape)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Sample:
        s, rng = self.scene, self.rng
        rgb, coords = s.rgb, s.coords
        if self.flip and rng.random() < 0.5:
            rgb, coords = rgb[:, ::-1], coords * np.array([1, -1]) + np.array([0, s.shape[1] - 1])
        hidden = rng.random(len(s.values)) < self.hide
        if (~hidden).sum() < 3:
            hidden[:3] = False
        c = self.crop
        r0, c0 = int(rng.integers(0, s.shape[0] - c + 1)), int(rng.integers(0, s.shape[1] - c + 1))
        vis_c, vis_v = coords[~hidden], s.values[~hidden]
        guide = guidance(np.ascontiguousarray(rgb), vis_c, vis_v, self.fgs, s.spacing(len(vis_v)), (r0, c0, c, c),
                         self.scale)  # fmt: skip
        in_crop = lambda p: (p[:, 0] >= r0) & (p[:, 0] < r0 + c) & (p[:, 1] >= c0) & (p[:, 1] < c0 + c)  # noqa: E731
        target = np.full((c, c), np.nan, np.float32)
        hid = in_crop(coords) & hidden
        target[coords[hid, 0] - r0, coords[hid, 1] - c0] = s.values[hid]
        vis = in_crop(vis_c)
        return depth_sample(guide, vis_c[vis] - np.array([r0, c0]), vis_v[vis], target, f"crop{index}", self.scale)


def tune_base(scene: Scene, seed: int = 0) -> FGSSettings:
    """Settings of the multi-scale fast global smoother (guidance channel ``fgs``, the model's base),
    chosen by 5-fold cross-validation on the scene's samples (`MULTISCALE_GRID`; no ground truth)."""
    return tune_fgs(scene.rgb, scene.coords, scene.values, folds=5, seed=seed, grid=MULTISCALE_GRID)[0]


def full_sample(scene: Scene, fgs: FGSSettings, target: np.ndarray | None, name: str,
                scale: float = DISPARITY_SCALE) -> Sample:  # fmt: skip
    """The whole scene with every sample visible; ``target`` (H, W) px or None."""
    guide = guidance(scene.rgb, scene.coords, scene.values, fgs, scene.spacing(), None, scale)
    return depth_sample(guide, scene.coords, scene.values, target, name, scale)


@DATA_SOURCES.register("stereo-motorcycle", "motorcycle")
class MotorcycleSource(Dataset):
    """Middlebury's motorcycle with sparse disparity samples, as a fusionseg data source (per split).

    Args:
        eds_fraction: share of the valid pixels that carry a sample, (0, 1] (the datamodule's name).
        points_seed: seed of which pixels are sampled (the measurement; the same in every split).
        mode: ``per-image``: every split is the whole scene (self-supervised on its own samples);
            ``inductive``: train on the left ``train_columns`` share of the scene, val/test/predict on
            the rest, a region never trained on (generalisation to unseen content).
        split: ``train``: `HideAndPredict` crops (``num_fields`` per epoch); ``val``: the scene with the
            training samples visible, scored at ``val_fraction`` of the samples held out of training
            (no ground truth); ``test``/``predict``: every sample visible, scored on the ground truth.
        crop, hide, flip: see `HideAndPredict`. ``fgs``: settings ``[lam, sigma, coarse_sigma, coarse_weight]``
            of the multi-scale fast global smoother channel, or None to choose them by cross-validation
            on the training samples (`tune_base`).
        window: (row0, col0, h, w) sub-image to use instead of the whole scene (quick tests).
        sampler: only ``random`` (uniform over valid pixels).
        num_fields, seed: training items per epoch; seed of the hide/crop draws.
    """

    def __init__(
        self,
        eds_fraction: float = 0.01,
        points_seed: int = 0,
        mode: str = "per-image",
        split: str = "test",
        crop: int = 128,
        hide: float = 0.3,
        flip: bool = True,
        val_fraction: float = 0.05,
        train_columns: float = 0.6,
        fgs: list[float] | None = None,
        window: list[int] | None = None,
        disparity_scale: float = DISPARITY_SCALE,
        sampler: str = "random",
        num_fields: int = 64,
        seed: int = 0,
    ) -> None:
        if sampler != "random":
            raise DepthInputError(f"sampler {sampler!r} is not supported here; use 'random' (valid pixels, uniform).")
        if mode not in ("per-image", "inductive"):
            raise DepthInputError(f"mode must be 'per-image' or 'inductive', got {mode!r}.")
        scene = motorcycle_scene(eds_fraction, points_seed, None if window is None else tuple(window))
        if mode == "inductive":
            cut = int(round(train_columns * scene.shape[1]))
            scene = scene.region(0, cut) if split == "train" else scene.region(cut, scene.shape[1])
        held = np.random.default_rng(points_seed + 1).random(len(scene.values)) < val_fraction
        train = Scene(scene.rgb, scene.coords[~held], scene.values[~held], scene.truth)
        settings = FGSSettings(*fgs) if fgs is not None else tune_base(train)
        self.split, self.scene, self.scale = split, scene, disparity_scale
        if split == "train":
            self.items: Dataset | list[Sample] = HideAndPredict(
                train, settings, crop, hide, num_fields, seed, flip, disparity_scale
            )
        elif split == "val":
            target = np.full(scene.shape, np.nan, np.float32)
            target[scene.coords[held, 0], scene.coords[held, 1]] = scene.values[held]
            self.items = [full_sample(train, settings, target, "motorcycle-val", disparity_scale)]
        else:
            self.items = [full_sample(scene, settings, scene.truth, f"motorcycle-{split}", disparity_scale)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Sample:
        return self.items[index]
