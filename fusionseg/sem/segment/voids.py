"""`segment`'s voids stage: pores, epoxy and background found in the BSE image alone, as every automated-mineralogy
system separates sample from mount before it looks at a spectrum.

Rule (`dark_modes`, `void_mask`), on the BSE image lightly smoothed (Gaussian, ``SMOOTH_PX``) with 0 = no signal:

- the histogram's major modes (prominence >= ``MAJOR_PROMINENCE`` of the highest) are found (`scipy.signal`);
- a **mount**: the darkest major mode lies at most ``MOUNT_RATIO`` x the level of the next one, a valley between,
  and holds >= ``MOUNT_SHARE`` of the pixels (epoxy / quartz ~ 0.5; the closest mineral pairs of the library are
  >= 0.8 apart, but quartz / galena is not). The threshold is the midpoint of the two levels (the 50 % contour of
  a blurred edge); pixels in it under half the epoxy level are pores;
- **pores in a rock**: the darkest major mode is the darkest mineral (level ``s``), unless it lies under
  ``PORE_RATIO`` x the next (near black: a porous rock's pores), when the next one is; pixels under ``s`` / 2 are the
  dark mode (level ``v``: their median) and the threshold is (``v`` + ``s``) / 2. It counts only when at least
  ``MIN_VOID_PIXELS`` pixels and ``TAIL_FACTOR`` x the Gaussian tail of the mineral mode fall below it: a field
  without pores loses no pixel;
- edges: a pixel beside one under the threshold is void too when under the midpoint between the void level and
  its brightest neighbour (``EDGE_WINDOW_PX``), as a blurred edge against a bright mineral is (in a rock only beside
  a mineral ``BRIGHT_NEIGHBOUR`` x brighter than the darkest: sulfides).

The measured points then decide between the candidates (`find_voids`): of the points inside, a majority must be void
(under a tenth of the median counts, `fusionseg.sem.identify.void_points`) or carbon-rich (epoxy, resin: >=
``CARBON_SHARE`` of the counts in the C Kα window). A mount needs at least ``MIN_POINTS_TO_VETO`` points there
(a big dark mode may be quartz beside galena); pores, rarely hit at 1 % EDS, stand on the BSE alone unless
``MIN_POINTS_TO_VETO`` points or more there say otherwise. Applied to every map whatever the model says.
O(pixels): two filters, one histogram, comparisons (measured: see `benchmarks/bench_voids.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from scipy.signal import find_peaks, peak_widths

from fusionseg.sem.export.mineralogy import NOT_SAMPLE  # the library classes this stage writes

SMOOTH_PX = 0.7  # Gaussian sigma (px) before thresholding: the detector noise down, edges kept
BINS = 256
MAJOR_PROMINENCE = 0.05  # a major histogram mode: prominence >= this share of the highest bin (smoothed)
MOUNT_RATIO = 0.65  # darkest major mode <= this x the next one's level (0 = black): mounting medium, not a mineral
PORE_RATIO = 0.25  # a major mode at most this x the next one's level is black: pores, not a mineral
MOUNT_SHARE = 0.25  # a mounting medium covers >= this share of the field (grain mounts: 30-80 % epoxy)
EDGE_WINDOW_PX = 5  # edge refinement: the brightest neighbour within this window sets a pixel's own midpoint
BRIGHT_NEIGHBOUR = 1.5  # rocks: the edge rule only beside pixels this x brighter than the darkest mineral
MIN_VOID_PIXELS = 5
TAIL_FACTOR = 10.0  # the dark mode holds >= this x the pixels the darkest mineral's Gaussian tail puts there
CARBON_SHARE = 0.15  # share of a spectrum's counts in the C Kα window (200-380 eV) that says epoxy/resin
CARBON_WINDOW_EV = (200.0, 380.0)
MIN_POINTS_TO_VETO = 3  # points inside the dark mode needed before their spectra may overrule the BSE


@dataclass
class DarkMode:
    """A BSE dark mode: ``threshold`` (image units) under which pixels are not sample; ``mount``: the mode is a
    mounting medium (epoxy; pores under ``pore_threshold``), else pores in a rock; levels of the modes."""

    threshold: float
    mount: bool
    void_level: float
    solid_level: float
    pore_threshold: float | None = None


@dataclass
class VoidFinding:
    """The stage's answer: ``mask`` (H, W) not sample; ``pore`` (H, W) the part of it that is pore (the rest
    epoxy); the points inside and how many of their spectra confirm it; a line for the report."""

    mask: np.ndarray
    pore: np.ndarray
    mode: DarkMode
    points_inside: int
    points_confirming: int
    note: str


def smoothed(image: np.ndarray) -> np.ndarray:
    """The BSE image (H, W) as float32, Gaussian-smoothed by ``SMOOTH_PX``."""
    return ndimage.gaussian_filter(np.asarray(image, dtype=np.float32), SMOOTH_PX, mode="nearest")


def dark_modes(x: np.ndarray) -> list[DarkMode]:
    """The candidate dark modes of a smoothed BSE image ``x`` (see the module's rule), a mount first: none, one or
    two (a mount, and the pores under the darkest major mode should the points say that mode is a mineral)."""
    finite = x[np.isfinite(x)]
    if finite.size < 100:
        return []
    hi = float(np.percentile(finite, 99.9))
    if hi <= 0:
        return []
    width = hi / BINS
    counts = np.bincount(np.clip((finite / width).astype(np.int64), 0, BINS - 1), minlength=BINS).astype(float)
    hist = ndimage.gaussian_filter1d(counts, 2.0, mode="constant")
    peaks, props = find_peaks(hist, prominence=MAJOR_PROMINENCE * hist.max())
    if len(peaks) == 0:
        return []
    level = (peaks + 0.5) * width
    out = []
    if len(peaks) >= 2 and level[0] <= MOUNT_RATIO * level[1]:
        cut = int(np.argmin(hist[peaks[0] : peaks[1] + 1])) + peaks[0]
        deep = hist[cut] <= 0.5 * min(hist[peaks[0]], hist[peaks[1]])
        if deep and counts[: cut + 1].sum() >= MOUNT_SHARE * finite.size:
            v, s = float(level[0]), float(level[1])
            out.append(DarkMode((v + s) / 2, True, v, s, pore_threshold=v / 2))
    black = len(peaks) >= 2 and level[0] <= PORE_RATIO * level[1]  # the darkest major mode is the pores themselves
    s = float(level[1] if black else level[0])
    dark = finite[finite < s / 2]
    if dark.size < MIN_VOID_PIXELS:
        return out
    v = float(np.median(dark))
    threshold = (v + s) / 2
    k = 1 if black else 0
    left = peak_widths(hist, peaks[k : k + 1], rel_height=0.5)[2][0]  # the mineral mode's left half-maximum (bins)
    sigma = max((peaks[k] - left) * width / 1.1774, width)
    from scipy.stats import norm

    tail = finite.size * norm.cdf((threshold - s) / sigma)
    if (finite < threshold).sum() >= max(MIN_VOID_PIXELS, TAIL_FACTOR * tail):
        out.append(DarkMode(threshold, False, v, s))
    return out


def void_mask(x: np.ndarray, mode: DarkMode) -> np.ndarray:
    """(H, W) bool: pixels of ``x`` under ``mode.threshold`` and their neighbours (1 px) under the midpoint between
    the void level and the brightest pixel within 2 px: the 50 % contour of a blurred edge against a brighter mineral
    than the darkest one (galena beside epoxy); in a rock only beside ``BRIGHT_NEIGHBOUR`` x the darkest mineral."""
    core = x < mode.threshold
    near = ndimage.binary_dilation(core)
    scale = 255 / max(float(x.max()), 1e-6)  # uint8 levels (a 0.4 % step): the 5x5 maximum 25 % faster
    local_max = (
        ndimage.maximum_filter((x * scale).astype(np.uint8), size=EDGE_WINDOW_PX, mode="nearest") + 1.0
    ) / scale
    edge = near & (x < (mode.void_level + local_max) / 2)
    if not mode.mount:  # in a rock only beside minerals far brighter than the darkest (sulfides): tiny pores in
        edge &= local_max >= BRIGHT_NEIGHBOUR * mode.solid_level  # a silicate cost more precision than they gain
    return core | edge


def carbon_rich(spectra: torch.Tensor, energy_axis: object | None) -> np.ndarray:
    """(N,) bool: spectra with >= ``CARBON_SHARE`` of their counts in the C Kα window (epoxy, resin)."""
    n = len(spectra)
    if energy_axis is None or n == 0 or spectra.shape[1] != getattr(energy_axis, "size", -1):
        return np.zeros(n, dtype=bool)
    e = energy_axis.offset_ev + energy_axis.scale_ev * np.arange(energy_axis.size)
    window = (e >= CARBON_WINDOW_EV[0]) & (e <= CARBON_WINDOW_EV[1])
    s = spectra.cpu().numpy()
    total = s.sum(1, dtype=np.float64)
    return s[:, window].sum(1, dtype=np.float64) >= CARBON_SHARE * np.maximum(total, 1.0)


def find_voids(
    image: np.ndarray, coords: np.ndarray, spectra: torch.Tensor, energy_axis: object | None = None
) -> tuple[VoidFinding | None, str | None]:
    """Pores/epoxy of a field: (finding or None, a note when the BSE's dark mode was overruled by the points).

    ``image`` (H, W) BSE; ``coords`` (N, 2) row, col px of the measured points; ``spectra`` (N, C) their counts.
    """
    from fusionseg.sem.identify import void_points

    x = smoothed(image)
    h, w = x.shape
    rc = np.rint(np.asarray(coords, dtype=np.float64)).astype(np.int64).reshape(-1, 2)
    rc = np.clip(rc, 0, [h - 1, w - 1])
    confirming = np.zeros(len(rc), dtype=bool)
    if len(rc) and spectra.ndim == 2 and spectra.shape[1] > 0:
        confirming = void_points(spectra).numpy() | carbon_rich(spectra, energy_axis)
    overruled = None
    for mode in dark_modes(x):
        mask = void_mask(x, mode)
        inside = mask[rc[:, 0], rc[:, 1]] if len(rc) else np.zeros(0, dtype=bool)
        n_in, n_ok = int(inside.sum()), int((inside & confirming).sum())
        what = "epoxy (mount)" if mode.mount else "pores"
        # a mount needs the points' word (epoxy and quartz differ by 2x in BSE, quartz and galena too); pores
        # (under half the darkest mineral) may stand on the BSE alone when few points hit them
        if (mode.mount and n_in < MIN_POINTS_TO_VETO) or (n_in >= MIN_POINTS_TO_VETO and n_ok < 0.5 * n_in):
            overruled = overruled or (
                f"the BSE image has a dark mode under {mode.threshold:.3g} ({100 * mask.mean():.1f} % of pixels) but "
                f"only {n_ok} of the {n_in} spectra there are void or carbon-rich: not taken as {what}"
            )
            continue
        pore = mask & (x < mode.pore_threshold) if mode.mount else mask
        said = f"{n_ok} of {n_in} spectra there confirm it" if n_in else "no spectrum there: the BSE alone decides"
        note = (f"not sample ({what}): BSE under {mode.threshold:.3g} (dark mode at {mode.void_level:.3g}, darkest "
                f"mineral at {mode.solid_level:.3g}), {100 * mask.mean():.2f} % of the field; {said}")  # fmt: skip
        return VoidFinding(mask, pore, mode, n_in, n_ok, note), None
    return None, overruled


def _fill_from_minerals(labels: np.ndarray, stray: np.ndarray, mineral: np.ndarray, passes: int = 16) -> None:
    """``labels`` at ``stray`` pixels set, in place, to a 4-neighbour's mineral label, a pass per pixel of depth
    (work per stray pixel, not per pixel of the field); those more than ``passes`` px from a mineral keep theirs."""
    h, w = labels.shape
    flat, is_mineral = labels.reshape(-1), mineral.reshape(-1).copy()
    todo = np.flatnonzero(stray)
    for _ in range(passes):
        r, c = np.divmod(todo, w)
        done = np.zeros(len(todo), dtype=bool)
        for dr, dc in ((0, 1), (0, -1), (1, 0), (-1, 0)):
            rr, cc = r + dr, c + dc
            nb = rr.clip(0, h - 1) * w + cc.clip(0, w - 1)
            ok = ~done & (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w) & is_mineral[nb]
            flat[todo[ok]] = flat[nb[ok]]
            done |= ok
        if not done.any():
            return
        is_mineral[todo[done]] = True
        todo = todo[~done]
        if not len(todo):
            return


def apply_voids(
    labels: np.ndarray, confidence: np.ndarray, class_names: tuple[str, ...], finding: VoidFinding
) -> tuple[str, ...]:
    """Write pore/epoxy into ``labels`` (and confidence 1) where ``finding`` says, in place, except "not measured"
    pixels; pixels the map called pore/epoxy outside it take a nearby mineral's label (the BSE decides both ways;
    `_fill_from_minerals`). Returns the class names, with "pore"/"epoxy" appended when the map had none."""
    from fusionseg.sample import IGNORE_INDEX

    names = tuple(class_names)
    mapped = labels != IGNORE_INDEX
    void_ids = [k for k, n in enumerate(names) if n in NOT_SAMPLE]
    stray = np.isin(labels, void_ids) & mapped & ~finding.mask
    mineral = mapped & ~np.isin(labels, void_ids) & ~finding.mask
    if stray.any() and mineral.any():
        _fill_from_minerals(labels, stray, mineral)
    for name, where in (("epoxy", finding.mask & ~finding.pore), ("pore", finding.pore)):
        where = where & mapped
        if not where.any():
            continue
        if name not in names:
            names = (*names, name)
        labels[where], confidence[where] = names.index(name), 1.0
    return names


__all__ = [
    "NOT_SAMPLE",
    "DarkMode",
    "VoidFinding",
    "apply_voids",
    "carbon_rich",
    "dark_modes",
    "find_voids",
    "void_mask",
]
