"""Whole-sample mosaics of per-field label maps: positions, placement checks, stitching, pyramidal TIFF.

Domain-free: a field is a name, a (rows, cols) shape, a top-left position in mosaic pixels, a uint16 label
map (65535 = not measured, as `fusionseg.export.writers.write_phase_tiff` writes) and a float confidence
map. The SEM command (``fusionseg mosaic``, `fusionseg.sem.mosaic`) reads and segments the fields.

- `read_positions`: a CSV ``field,x_px,y_px`` (column, row of the field's top-left pixel) or
  ``field,x_um,y_um`` (µm, divided by the pixel size and rounded to whole pixels).
- `place_fields`: every field has a position and every position a field; the mosaic's origin is the
  smallest position.
- `overlap_match`: do two fields' images agree where the positions make them overlap?
- `Stitcher`: pastes field maps into one map; in an overlap the higher confidence wins (`Stitcher.add`).
- `write_pyramid_tiff`: tiled (256²) TIFF with reduced-resolution levels as SubIFDs (QuPath, OME viewers).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fusionseg.errors import FusionSegError
from fusionseg.export.safe_io import atomic_path
from fusionseg.export.writers import tiff_resolution

NOT_MEASURED = 65535
"""Label of a pixel no field measured (the uint16 phase TIFF's ignore value)."""
NO_FIELD = np.iinfo(np.uint16).max
BYTES_PER_PIXEL = 9
"""What `Stitcher` holds per mosaic pixel: label (uint16) + confidence (float32) + owner field (uint16) +
number of fields covering it (uint8)."""
TILE_PX = 256
MATCH_MIN_TEXTURE = 0.05
MATCH_STANDARD_ERRORS = 10.0
"""An overlap of n pixels is verifiable when its expected image correlation (`overlap_match`) is at least
max(`MATCH_MIN_TEXTURE`, `MATCH_STANDARD_ERRORS` / sqrt(n)): ten standard errors of a correlation over n
pixels, so that chance does not decide (thinner or more featureless overlaps are reported as unverified)."""
MATCH_MIN_RATIO = 0.7
"""A verifiable overlap whose image correlation is below this share of the expected one contradicts its
positions. Measured (``benchmarks/bench_mosaic.py --calibrate``: 6 rocks x 2 fields x 3 noise levels, 32 and
64 px wide overlap strips of 512 px, the two fields rendered with independent noise and brightness): correct
overlaps 0.98-1.22, one pixel off 0.88-1.02, two 0.71-1.01 (both accepted: stage positions are rounded);
shifted by 16 / 32 / 64 px, 94 / 98 / 100 % of the overlaps fall below 0.7 (at most 0.84 / 0.81 / 0.54)."""


class MosaicError(FusionSegError):
    """The fields cannot be stitched as given; the message names the field(s) and the fix."""


@dataclass(frozen=True)
class Placement:
    """A field's box in the mosaic: top-left (row, col) and size (height, width), pixels."""

    name: str
    row: int
    col: int
    height: int
    width: int

    @property
    def window(self) -> tuple[slice, slice]:
        return slice(self.row, self.row + self.height), slice(self.col, self.col + self.width)


@dataclass(frozen=True)
class Overlap:
    """Fields ``a`` and ``b`` (indices into the placements) share the mosaic box (row, col, height, width)."""

    a: int
    b: int
    box: tuple[int, int, int, int]

    @property
    def window(self) -> tuple[slice, slice]:
        r, c, h, w = self.box
        return slice(r, r + h), slice(c, c + w)


# ----------------------------------------------------------------------------- positions
def read_positions(path: Path, pixel_size_um: float | None = None) -> dict[str, tuple[int, int]]:
    """Field name -> (row, col) px of its top-left pixel, from a CSV with a header ``field,x_px,y_px`` or
    ``field,x_um,y_um`` (µm / ``pixel_size_um``, rounded to whole pixels: stage positions are not pixel-exact).
    x runs along the image columns, y along the rows."""
    path = Path(path)
    if not path.is_file():
        raise MosaicError(f"--positions {path} does not exist; give a CSV with a header field,x_px,y_px.")
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    header = set(rows[0]) if rows else set()
    unit = "px" if {"x_px", "y_px"} <= header else "um" if {"x_um", "y_um"} <= header else None
    if "field" not in header or unit is None:
        raise MosaicError(
            f"--positions {path} needs a header field,x_px,y_px (pixels) or field,x_um,y_um (µm); it has "
            f"{', '.join(sorted(header)) or 'no rows'}."
        )
    if unit == "um" and not pixel_size_um:
        raise MosaicError(f"--positions {path} is in µm but the fields are uncalibrated; give x_px,y_px instead.")
    scale = 1.0 if unit == "px" else 1.0 / pixel_size_um
    out: dict[str, tuple[int, int]] = {}
    for line, row in enumerate(rows, start=2):
        name = (row.get("field") or "").strip()
        x, y = _number(row.get(f"x_{unit}"), path, line, name), _number(row.get(f"y_{unit}"), path, line, name)
        if name in out:
            raise MosaicError(f"--positions {path} lists field {name!r} twice (line {line}); keep one row per field.")
        out[name] = (round(y * scale), round(x * scale))
    return out


def _number(text: str | None, path: Path, line: int, name: str) -> float:
    try:
        value = float(text or "")
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise MosaicError(f"--positions {path} line {line} (field {name!r}): {text!r} is not a finite number.")
    return value


def place_fields(shapes: Mapping[str, tuple[int, int]], positions: Mapping[str, tuple[int, int]]) -> list[Placement]:
    """Placements in the order of ``shapes`` (name -> (H, W)), shifted so that the smallest row and column are 0.

    Raises `MosaicError` naming the fields without a position and the positions without a field.
    """
    missing = [n for n in shapes if n not in positions]
    extra = [n for n in positions if n not in shapes]
    if missing or extra:
        parts = [f"field(s) {_first(missing)} have no position" if missing else "",
                 f"position(s) {_first(extra)} name no field of the input" if extra else ""]  # fmt: skip
        raise MosaicError(
            f"{'; '.join(p for p in parts if p)}. Every field needs one row in the positions CSV, its 'field' "
            f"column the field's file or folder name without suffix (the fields: {_first(list(shapes))})."
        )
    r0 = min(positions[n][0] for n in shapes)
    c0 = min(positions[n][1] for n in shapes)
    return [Placement(n, positions[n][0] - r0, positions[n][1] - c0, int(h), int(w)) for n, (h, w) in shapes.items()]


def _first(names: list[str], n: int = 8) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def mosaic_shape(placements: Sequence[Placement]) -> tuple[int, int]:
    """(rows, cols) of the mosaic holding every placement."""
    return max(p.row + p.height for p in placements), max(p.col + p.width for p in placements)


def find_overlaps(placements: Sequence[Placement]) -> list[Overlap]:
    """Every pair of fields whose boxes share at least one pixel (pairs of a few hundred fields: a plain loop)."""
    found = []
    for i, p in enumerate(placements):
        for j in range(i + 1, len(placements)):
            q = placements[j]
            r, c = max(p.row, q.row), max(p.col, q.col)
            h, w = min(p.row + p.height, q.row + q.height) - r, min(p.col + p.width, q.col + q.width) - c
            if h > 0 and w > 0:
                found.append(Overlap(i, j, (r, c, h, w)))
    return found


def crop_of(image: np.ndarray, placement: Placement, box: tuple[int, int, int, int]) -> np.ndarray:
    """The part of a field's (H, W) ``image`` that lies in the mosaic ``box`` (row, col, height, width)."""
    r, c, h, w = box
    return image[r - placement.row : r - placement.row + h, c - placement.col : c - placement.col + w]


# ----------------------------------------------------------------------------- image agreement in overlaps
def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum()) / den if den > 0 else 0.0


def _signal_share(image: np.ndarray) -> float:
    """Share of an image's variance that is structure, not pixel noise: its lag-1 autocorrelation (mean over
    rows and columns; white noise does not correlate between neighbours, texture does)."""
    parts = [_correlation(image[1:], image[:-1]) if len(image) > 1 else 0.0,
             _correlation(image[:, 1:], image[:, :-1]) if image.shape[1] > 1 else 0.0]  # fmt: skip
    return max(0.0, float(np.mean(parts)))


def overlap_match(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """How well two images of the same place agree: ``correlation`` (Pearson, so brightness and contrast
    may differ) and ``expected``, the correlation two noisy scans of the same texture would reach
    (sqrt of the product of their signal shares, `_signal_share`); ``ratio`` = correlation / expected."""
    a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    r = _correlation(a, b)
    expected = math.sqrt(_signal_share(a) * _signal_share(b))
    return {"correlation": round(r, 4), "expected": round(expected, 4),
            "ratio": round(r / expected, 4) if expected > 0 else math.nan}  # fmt: skip


def verifiable(expected: float, pixels: int) -> bool:
    """Whether an overlap of ``pixels`` px whose expected correlation is ``expected`` can be judged."""
    return expected >= max(MATCH_MIN_TEXTURE, MATCH_STANDARD_ERRORS / math.sqrt(max(pixels, 1)))


def check_overlaps(
    placements: Sequence[Placement], overlaps: Sequence[Overlap], images: Sequence[np.ndarray], min_side: int = 8
) -> list[dict[str, Any]]:
    """Each overlap's image agreement (`overlap_match`) with its verdict: ``ok``, ``unverified`` (thinner than
    ``min_side`` px, or too featureless: `verifiable`) or ``mismatch`` (ratio < `MATCH_MIN_RATIO`). Raises
    `MosaicError` naming the fields when any overlap is a mismatch."""
    results = []
    for ov in overlaps:
        pa, pb = placements[ov.a], placements[ov.b]
        entry: dict[str, Any] = {"fields": [pa.name, pb.name], "box": list(ov.box)}
        if min(ov.box[2:]) < min_side:
            results.append({**entry, "verdict": "unverified", "why": f"thinner than {min_side} px"})
            continue
        match = overlap_match(crop_of(images[ov.a], pa, ov.box), crop_of(images[ov.b], pb, ov.box))
        verdict = "unverified" if not verifiable(match["expected"], ov.box[2] * ov.box[3]) else (
            "ok" if match["ratio"] >= MATCH_MIN_RATIO else "mismatch")  # fmt: skip
        results.append({**entry, **match, "verdict": verdict})
    bad = [r for r in results if r["verdict"] == "mismatch"]
    if bad:
        raise MosaicError(mismatch_message(bad))
    return results


def mismatch_message(bad: Sequence[dict[str, Any]]) -> str:
    """One paragraph naming the field(s) whose overlaps contradict their positions (most often named first)."""
    counts: dict[str, int] = {}
    for r in bad:
        for name in r["fields"]:
            counts[name] = counts.get(name, 0) + 1
    suspects = [n for n, c in counts.items() if c == max(counts.values())]
    pairs = "; ".join(
        f"{r['fields'][0]} / {r['fields'][1]}: {r['box'][2]}x{r['box'][3]} px overlap, image correlation "
        f"{r['correlation']:.2f} where {r['expected']:.2f} is expected" for r in bad[:6]
    )  # fmt: skip
    more = f" and {len(bad) - 6} more" if len(bad) > 6 else ""
    return (
        f"the positions make fields overlap whose images do not match there ({pairs}{more}), so the position of "
        f"{' or '.join(suspects)} is inconsistent with its neighbours. Check that field's row in the positions "
        "(x is the column and y the row of its top-left pixel; units, sign and swapped axes)."
    )


# ----------------------------------------------------------------------------- stitching
def edge_distance(height: int, width: int) -> np.ndarray:
    """(H, W) int32 distance (px) of each pixel to the nearest edge of its field (0 on the border)."""
    rows, cols = np.arange(height, dtype=np.int32), np.arange(width, dtype=np.int32)
    return np.minimum.outer(np.minimum(rows, rows[::-1]), np.minimum(cols, cols[::-1]))


class Stitcher:
    """One (H, W) mosaic of uint16 labels from field maps added one at a time (`BYTES_PER_PIXEL` per pixel).

    In an overlap the higher confidence wins; a pixel a field did not measure (`NOT_MEASURED` or NaN
    confidence) loses to any measured one. Ties (equal confidence: classic fills report 1 everywhere)
    go to the field in whose interior the pixel lies deeper (larger distance to that field's edge: a map
    is least sure near its border, where its context ends), and then to the field added first.
    """

    def __init__(self, shape: tuple[int, int], placements: Sequence[Placement]) -> None:
        if len(placements) >= NO_FIELD:
            raise MosaicError(f"a mosaic holds at most {NO_FIELD - 1} fields, got {len(placements)}.")
        self.placements = list(placements)
        self.labels = np.full(shape, NOT_MEASURED, dtype=np.uint16)
        self.confidence = np.full(shape, -np.inf, dtype=np.float32)
        self.owner = np.full(shape, NO_FIELD, dtype=np.uint16)
        self.cover = np.zeros(shape, dtype=np.uint8)
        self.compared: dict[tuple[int, int], list[int]] = {}  # (earlier owner, field) -> [both measured, differ]
        bounds = [(p.row, p.row + p.height - 1, p.col, p.col + p.width - 1) for p in self.placements]
        self._bounds = np.array([*bounds, (0, -1, 0, -1)], dtype=np.int64)  # last row: no field (distance < 0)

    def _owner_edge(self, owner: np.ndarray, window: tuple[slice, slice]) -> np.ndarray:
        """Distance of each pixel of ``window`` to the edge of the field that holds it now (< 0: none)."""
        r0, r1, c0, c1 = self._bounds[np.minimum(owner, len(self.placements))].transpose(2, 0, 1)
        rows = np.arange(window[0].start, window[0].stop)[:, None]
        cols = np.arange(window[1].start, window[1].stop)[None, :]
        return np.minimum(np.minimum(rows - r0, r1 - rows), np.minimum(cols - c0, c1 - cols))

    def add(self, index: int, labels: np.ndarray, confidence: np.ndarray) -> None:
        """Paste field ``index``'s (H, W) uint16 ``labels`` (mosaic class ids) and float ``confidence`` (0..1)."""
        p = self.placements[index]
        if labels.shape != (p.height, p.width) or confidence.shape != labels.shape:
            raise MosaicError(f"field {p.name}: maps of shape {labels.shape} / {confidence.shape}, placed as "
                              f"{p.height}x{p.width} px; its outputs do not match its input.")  # fmt: skip
        win = p.window
        lab, conf, own = self.labels[win], self.confidence[win], self.owner[win]
        new_conf = np.where((labels == NOT_MEASURED) | np.isnan(confidence), -np.inf, confidence).astype(np.float32)
        tie = new_conf == conf
        better = new_conf > conf
        if tie.any():
            better |= tie & (edge_distance(p.height, p.width) > self._owner_edge(own, win))
        both = (own != NO_FIELD) & (lab != NOT_MEASURED) & (labels != NOT_MEASURED)
        if both.any():
            n_both = np.bincount(own[both], minlength=len(self.placements))
            n_differ = np.bincount(own[both & (lab != labels)], minlength=len(self.placements))
            for j in np.flatnonzero(n_both):
                seen = self.compared.setdefault((int(j), index), [0, 0])
                seen[0], seen[1] = seen[0] + int(n_both[j]), seen[1] + int(n_differ[j])
        lab[better], conf[better], own[better] = labels[better], new_conf[better], index
        cover = self.cover[win]
        cover[cover < 255] += 1

    def overlap_report(self, overlaps: Sequence[Overlap]) -> list[dict[str, Any]]:
        """Per overlap: pixels won by each field (in the pair's box, by any covering field), and the pixels
        both measured where the later field's label differed from the one it met."""
        names = [p.name for p in self.placements]
        rows = []
        for ov in overlaps:
            owners, counts = np.unique(self.owner[ov.window], return_counts=True)
            won = {names[k] if k != NO_FIELD else "none": int(c) for k, c in zip(owners, counts, strict=True)}
            both, differ = self.compared.get((ov.a, ov.b), [0, 0])
            rows.append({"fields": [names[ov.a], names[ov.b]], "box": list(ov.box), "won_px": won,
                         "labels_compared_px": both, "labels_differ_px": differ})  # fmt: skip
        return rows

    def overlap_wins(self) -> dict[str, int]:
        """Field name -> pixels it holds where two or more fields overlap."""
        shared = self.cover >= 2
        counts = np.bincount(self.owner[shared], minlength=len(self.placements))[: len(self.placements)]
        return {p.name: int(c) for p, c in zip(self.placements, counts, strict=True)}


def class_lookup(field_names: Sequence[str], mosaic_names: list[str]) -> np.ndarray:
    """uint16 table mapping a field's class ids to the mosaic's (names joined by text; new names appended to
    ``mosaic_names`` in place); `NOT_MEASURED` maps to itself."""
    lut = np.full(NOT_MEASURED + 1, NOT_MEASURED, dtype=np.uint16)
    for k, name in enumerate(field_names):
        if name not in mosaic_names:
            mosaic_names.append(name)
        lut[k] = mosaic_names.index(name)
    if len(mosaic_names) >= NOT_MEASURED:
        raise MosaicError(f"the fields name {len(mosaic_names)} classes; a uint16 phase map holds {NOT_MEASURED}.")
    return lut


def read_label_tiff(path: Path) -> tuple[np.ndarray, list[str]]:
    """A phase TIFF written by `write_phase_tiff`: uint16 labels and the class names of its description."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        labels = tif.pages[0].asarray()
        table = json.loads(tif.pages[0].description or "{}")
    return labels.astype(np.uint16, copy=False), list(table.get("class_names", []))


def stitch_files(
    placements: Sequence[Placement], maps: Sequence[tuple[Path, Path]], shape: tuple[int, int] | None = None
) -> tuple[Stitcher, list[str]]:
    """Stitch field ``i``'s (phase TIFF, uncertainty TIFF) pair ``maps[i]`` (uncertainty = 1 - confidence, NaN
    = not measured) one field at a time; returns the stitcher and the mosaic's class names."""
    import tifffile

    stitcher = Stitcher(shape or mosaic_shape(placements), placements)
    names: list[str] = []
    for i, (phases, uncertainty) in enumerate(maps):
        labels, field_names = read_label_tiff(phases)
        confidence = 1.0 - tifffile.imread(uncertainty).astype(np.float32)
        stitcher.add(i, class_lookup(field_names, names)[labels], confidence)
    return stitcher, names


# ----------------------------------------------------------------------------- writing
def mode_downsample(labels: np.ndarray) -> np.ndarray:
    """Half-size label map: each 2x2 block's most frequent label (ties: the top-left pixel's, i.e. nearest).

    Hand-written (numpy comparisons of the 4 block members): no library offers a fast block mode for labels.
    """
    if labels.shape[0] % 2 or labels.shape[1] % 2:
        labels = np.pad(labels, ((0, labels.shape[0] % 2), (0, labels.shape[1] % 2)), mode="edge")
    block = [labels[i::2, j::2] for i in (0, 1) for j in (0, 1)]
    out, best = block[0].copy(), np.zeros(block[0].shape, dtype=np.uint8)
    for i, cand in enumerate(block):
        votes = sum((cand == other).astype(np.uint8) for other in block)
        take = votes > best if i else np.ones_like(best, dtype=bool)
        out[take], best[take] = cand[take], votes[take]
    return out


def pyramid_levels(shape: tuple[int, int], tile: int = TILE_PX) -> int:
    """Reduced-resolution levels (each half the previous) until the larger side fits one tile."""
    side, n = max(shape), 0
    while side > tile:
        side, n = (side + 1) // 2, n + 1
    return n


def write_pyramid_tiff(
    path: Path, labels: np.ndarray, class_names: Sequence[str], pixel_size_um: float | None = None,
    tile: int = TILE_PX, extra: Mapping[str, Any] | None = None,
) -> list[tuple[int, int]]:  # fmt: skip
    """uint16 label map (`NOT_MEASURED` = no field) as a tiled (``tile``² px, deflate), pyramidal TIFF: full
    resolution first, then 2x, 4x, ... reduced levels (`mode_downsample`) as SubIFDs; JSON class table in the
    description (as `write_phase_tiff`, plus ``extra``); resolution tags per level. Returns the level shapes."""
    import tifffile

    description = json.dumps({"class_names": list(class_names), "ignore_value": NOT_MEASURED,
                              "pixel_size_um": pixel_size_um, **(extra or {})})  # fmt: skip
    n = pyramid_levels(labels.shape, tile)
    opts: dict[str, Any] = {"tile": (tile, tile), "compression": "zlib", "photometric": "minisblack", "metadata": None}
    shapes = [labels.shape]
    with atomic_path(path) as tmp, tifffile.TiffWriter(tmp, bigtiff=labels.nbytes > 2**31) as tif:
        tif.write(labels, subifds=n, description=description, **tiff_resolution(pixel_size_um), **opts)
        level = labels
        for k in range(1, n + 1):
            level = mode_downsample(level)
            shapes.append(level.shape)
            tif.write(level, subfiletype=1, **tiff_resolution(pixel_size_um and pixel_size_um * 2**k), **opts)
    return shapes


def overview(labels: np.ndarray, max_side: int = 1024) -> np.ndarray:
    """A label map reduced by `mode_downsample` until its larger side is at most ``max_side`` px."""
    while max(labels.shape) > max_side:
        labels = mode_downsample(labels)
    return labels


def write_overview_png(path: Path, labels: np.ndarray, num_classes: int, max_side: int = 1024) -> Path:
    """The mosaic's phase map, reduced (`overview`), coloured as every field's overlay (black: not measured)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from fusionseg.export.render import colourise
    from fusionseg.sample import IGNORE_INDEX

    small = overview(labels, max_side).astype(np.int64)
    small[small == NOT_MEASURED] = IGNORE_INDEX
    with atomic_path(path) as tmp:
        plt.imsave(tmp, colourise(small, num_classes), format="png")
    return path


def label_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes + 1,) pixel counts per class, the last entry `NOT_MEASURED` (no int64 copy of the map)."""
    counts = np.bincount(labels.ravel(), minlength=NOT_MEASURED + 1)
    return np.concatenate([counts[:num_classes], counts[NOT_MEASURED:]])


def counts_as_labels(counts: np.ndarray) -> np.ndarray:
    """A 1-D label array with ``counts[k]`` pixels of class k and ``counts[-1]`` of IGNORE_INDEX (not measured),
    int16 when the classes fit (2 bytes per pixel): the input of table functions that only count pixels."""
    from fusionseg.sample import IGNORE_INDEX

    dtype = np.int16 if len(counts) < np.iinfo(np.int16).max else np.int32
    ids = np.array([*range(len(counts) - 1), IGNORE_INDEX], dtype=dtype)
    return np.repeat(ids, counts)


def modal_rows(labels: np.ndarray, class_names: Sequence[str], pixel_size_um: float = 1.0) -> list[dict]:
    """`fusionseg.export.writers.modal_table` of a uint16 mosaic (not-measured pixels left out)."""
    from fusionseg.export.writers import modal_table

    return modal_table(counts_as_labels(label_counts(labels, len(class_names))), tuple(class_names), pixel_size_um)


__all__ = [
    "BYTES_PER_PIXEL",
    "NOT_MEASURED",
    "MosaicError",
    "Overlap",
    "Placement",
    "Stitcher",
    "check_overlaps",
    "find_overlaps",
    "mode_downsample",
    "modal_rows",
    "mosaic_shape",
    "overlap_match",
    "place_fields",
    "read_positions",
    "stitch_files",
    "write_pyramid_tiff",
]
