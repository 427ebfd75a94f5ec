"""Inference on fields of any size: overlapping tiles, and the tile size that fits a memory budget.

Used by ``fusionseg segment`` and by ``fusionseg predict --max_memory`` (`FusionSegModule.predict_step`).
The byte figures are measured, not derived: ``benchmarks/bench_segment.py --peak-rss`` (README, Speed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fusionseg.baselines import point_pixels
from fusionseg.errors import SegmentError
from fusionseg.sample import IGNORE_INDEX, Sample

OVERLAP_PX = 32
"""Context (px) each tile keeps on each side of the core it predicts."""
MAX_TILE_PX = 1024
"""Largest tile a memory budget picks (px): the refiner's sparse factorisations and fronts cost more per pixel on
larger fields, so 1024-px tiles map a 2048² field 2-4 s faster than one tile, with the same maps within noise
(`benchmarks/segment_maps.py --size 2048 --seeds 1`, six rocks at 1 %: mean mIoU 0.6647 one tile, 0.6649 tiled,
pixel accuracy 0.8917 / 0.8926, held-out checks identical); 512-px tiles were slower again (the overlap's share
grows; `segment_maps.py --tile 512`). ``--tile`` overrides it."""


def crop_sample(sample: Sample, r0: int, c0: int, ch: int, cw: int, context: Tensor, query: Tensor) -> Sample:
    """The window [r0, r0 + ch) x [c0, c0 + cw) px of ``sample``.

    Its points are the ``context`` points inside the window; its target holds only the labels of the
    ``query`` points inside it (every other pixel is ``IGNORE_INDEX``).
    """
    coords = sample.point_coords - torch.tensor([r0, c0], dtype=torch.float32)
    inside = (coords[:, 0] > -0.5) & (coords[:, 0] < ch - 0.5) & (coords[:, 1] > -0.5) & (coords[:, 1] < cw - 0.5)
    ctx, qry = context & inside, query & inside
    target = torch.full((ch, cw), IGNORE_INDEX, dtype=torch.long)
    pt = sample.point_target
    if pt is not None and qry.any():
        rows, cols = point_pixels(coords[qry].numpy(), (ch, cw))
        target[torch.from_numpy(rows), torch.from_numpy(cols)] = pt[qry]
    return Sample(image=sample.image[:, r0 : r0 + ch, c0 : c0 + cw], point_coords=coords[ctx],
                  point_features=sample.point_features[ctx], meta=sample.meta, target=target,
                  point_target=None if pt is None else pt[ctx])  # fmt: skip


def central_box(height: int, width: int, max_px: int) -> tuple[int, int, int, int]:
    """(row0, col0, rows, cols) of the central window at most ``max_px`` on a side of an (H, W) field (px)."""
    ch, cw = min(height, max_px), min(width, max_px)
    return (height - ch) // 2, (width - cw) // 2, ch, cw


def central_window(sample: Sample, max_px: int, points: Tensor | None = None) -> Sample:
    """The central window of ``sample`` at most ``max_px`` on a side with its points (the sample when it fits);
    ``points``: (N,) bool, only these points (a crop copies the window's points, never every spectrum)."""
    if sample.height <= max_px and sample.width <= max_px and (points is None or bool(points.all())):
        return sample
    every = torch.ones(sample.num_points, dtype=torch.bool) if points is None else points
    return crop_sample(sample, *central_box(sample.height, sample.width, max_px), every, torch.zeros_like(every))


def min_tile_px(overlap_px: int) -> int:
    """Smallest tile that keeps ``overlap_px`` of context on each side of a core of at least 32 px."""
    return 2 * overlap_px + 32


def tile_spans(size: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Windows along one axis: (lo, hi, keep_lo, keep_hi), all in pixels.

    The kept cores ``[keep_lo, keep_hi)`` partition ``0..size`` exactly (every pixel predicted once);
    each window ``[lo, hi)`` is its core plus up to ``overlap`` px of context each side, at most ``tile``
    px long. Raises `SegmentError` when ``tile`` leaves no core (the cause of unfilled pixels).
    """
    if size <= tile:
        return [(0, size, 0, size)]
    if tile < min_tile_px(overlap):
        raise SegmentError(
            f"a {tile}-px tile cannot keep {overlap} px of context on each side of a 32-px core; use --tile >= "
            f"{min_tile_px(overlap)} (or a larger --max-memory)."
        )
    n = 1 + -(-(size - tile) // (tile - 2 * overlap))  # tile-long windows spaced so they overlap by >= 2 * overlap
    starts = np.linspace(0, size - tile, n).round().astype(int).tolist()
    cuts = [0] + [(a + tile + b) // 2 for a, b in zip(starts[:-1], starts[1:], strict=True)] + [size]
    # each window is its core and ``overlap`` px of context, as documented (tile-long windows made a 4096² field
    # in 3744-px tiles process 56 M px for its 17 M; now 17.3 M)
    return [(max(0, a - overlap), min(size, b + overlap), a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def predict_field(
    model: Any, sample: Sample, tile_px: int = 512, overlap_px: int = 32, classic: dict[str, Tensor] | None = None
) -> tuple[Tensor, Tensor]:
    """(H, W) labels and confidence; fields larger than ``tile_px`` are predicted in overlapping tiles.

    Each tile keeps only its core (`tile_spans`), so every pixel is predicted exactly once with up to
    ``overlap_px`` of context on each side; a tile without a measured point sees the nearest points
    outside it (the window grows until it holds one), never an empty point set. ``classic``: filled with
    the (H, W) classic fills the model made on the way (its prediction's ``"classic"`` maps), when it made any.
    """
    from tqdm.auto import tqdm

    h, w = sample.height, sample.width
    labels = torch.full((h, w), IGNORE_INDEX, dtype=torch.long)
    conf = torch.full((h, w), float("nan"))
    everything = torch.ones(sample.num_points, dtype=torch.bool)
    tiles = [(r, c) for r in tile_spans(h, tile_px, overlap_px) for c in tile_spans(w, tile_px, overlap_px)]
    for (r0, r1, kr0, kr1), (c0, c1, kc0, kc1) in tqdm(tiles, desc="predict tiles", disable=len(tiles) == 1):
        r0, r1, c0, c1 = window_with_points(sample, r0, r1, c0, c1)
        crop = crop_sample(sample, r0, c0, r1 - r0, c1 - c0, everything, ~everything)
        crop.target = None
        out = model.predict_samples([crop])[0]
        labels[kr0:kr1, kc0:kc1] = out["labels"][kr0 - r0 : kr1 - r0, kc0 - c0 : kc1 - c0]
        conf[kr0:kr1, kc0:kc1] = out["confidence"][kr0 - r0 : kr1 - r0, kc0 - c0 : kc1 - c0]
        for method, fill in out.get("classic", {}).items() if classic is not None else ():
            classic.setdefault(method, torch.full((h, w), IGNORE_INDEX, dtype=torch.long))
            classic[method][kr0:kr1, kc0:kc1] = fill[kr0 - r0 : kr1 - r0, kc0 - c0 : kc1 - c0]
    if torch.isnan(conf).any():  # cannot happen with tile_spans; a guard against a silent wrong map
        raise RuntimeError(f"{int(torch.isnan(conf).sum())} pixels were not predicted; this is a fusionseg bug.")
    return labels, conf


def window_with_points(sample: Sample, r0: int, r1: int, c0: int, c1: int) -> tuple[int, int, int, int]:
    """The window, doubled in context until it holds at least one measured point (px)."""
    rc = sample.point_coords.round()
    grow = max(r1 - r0, c1 - c0, 1)
    while True:
        inside = (rc[:, 0] >= r0) & (rc[:, 0] < r1) & (rc[:, 1] >= c0) & (rc[:, 1] < c1)
        if bool(inside.any()) or (r0, r1, c0, c1) == (0, sample.height, 0, sample.width):
            return r0, r1, c0, c1
        r0, r1 = max(0, r0 - grow), min(sample.height, r1 + grow)
        c0, c1 = max(0, c0 - grow), min(sample.width, c1 + grow)
        grow *= 2


BASE_BYTES = 700e6
"""Resident memory besides the field's terms (Python, torch, PyG, Lightning, the model, start-up), bytes. Fitted
with `PIXEL_BYTES` to `segment`'s peak RSS from 512² to 8192² (README, Speed and memory): the model lies above
every measured peak by 5-13 % (e.g. 8192² at 8 GB: 7.62 GB estimated, 7.11 GB measured)."""
TILE_BYTES_PER_PIXEL = 400.0
"""Peak bytes per pixel of one prediction tile: superpixels and graph (int64 maps), the refiner's region graph
and per-pixel images, labels, confidence and classic fills; the refiner writes labels chunk by chunk and never
holds (pixels x classes) scores. Checked by ``bench_segment --peak-rss`` (README, Speed and memory)."""
TRAIN_BYTES = 150e6
"""Per-field training on 128-px crops, bytes; independent of the field size."""
PIXEL_BYTES = 56.0
"""Bytes per field pixel outside the tiles: image, labels and confidence (model, final, held-out check), the
refiner's classic fills of the whole field (classic floor), output pictures."""


def available_memory() -> int:
    """Bytes of memory available now (psutil), the default budget."""
    import psutil

    return int(psutil.virtual_memory().available)


@dataclass(frozen=True)
class FieldSize:
    """What the memory model reads of a field, known from a file's headers before its data are read: pixels, point
    feature values (points x channels) and bytes its metadata holds in memory (a dense cube read into memory)."""

    height: int
    width: int
    point_values: int
    held_bytes: int = 0
    name: str = ""
    value_bytes: int = 4
    """Bytes per point-feature value held while the field is mapped: 2 for int16 counts (`compact_counts`), 4 for
    float32. Held once: `segment` encodes the features once (`FusionSegModule.points_encoded`), so tiles, the held-out
    check and adaptation copy encoded features only, and identification converts to float64 in chunks of
    `fusionseg.sem.identify.CHUNK_SPECTRA` spectra (inside `BASE_BYTES`)."""
    file_value_bytes: int | None = None
    """Bytes per value as the file stores them (None: as held)."""
    copy_bytes: int = 0
    """A second copy of the point features held while mapping, bytes: spectra rebinned onto a checkpoint's
    calibration (float32) beside the file's, which a fallback to per-field training reads."""

    def read_value_bytes(self) -> int:
        """Peak bytes per value while a reader loads the point features, before any per-pixel map: the file's array,
        its copy without zero-count spectra (a bound: made only when some are dropped), and the held dtype's copy
        when it differs (a uint16 file's counts are viewed as int16, not copied)."""
        stored = self.value_bytes if self.file_value_bytes is None else self.file_value_bytes
        return 2 * stored + (self.value_bytes if stored != self.value_bytes else 0)


def field_size(field: Sample | FieldSize) -> FieldSize:
    """The `FieldSize` of a read field (or ``field`` itself)."""
    if isinstance(field, FieldSize):
        return field
    feats = field.point_features
    return FieldSize(field.height, field.width, feats.numel(), field.meta.nbytes(), field.meta.name,
                     feats.element_size())  # fmt: skip


def field_bytes(field: Sample | FieldSize) -> float:
    """Bytes the field needs outside the tiles: point features, per-pixel maps and the metadata's in-memory arrays
    (`SampleMeta.nbytes`: e.g. a dense spectrum cube; a lazy one stays on disk)."""
    size = field_size(field)
    pixels = PIXEL_BYTES * size.height * size.width
    return size.value_bytes * size.point_values + size.copy_bytes + pixels + size.held_bytes


def read_bytes(field: Sample | FieldSize) -> float:
    """Peak bytes of reading the field's point features (`FieldSize.read_value_bytes`) and its metadata's arrays."""
    size = field_size(field)
    return size.read_value_bytes() * size.point_values + size.held_bytes


def tile_for_memory(
    budget: float, field: Sample | FieldSize, training: bool = False, overlap_px: int = OVERLAP_PX
) -> int:
    """Largest prediction tile (px, multiple of 32, at most `MAX_TILE_PX`) whose estimated peak fits ``budget`` bytes
    (>= the minimum).

    ``training``: the budget also holds a per-field training run (``fusionseg segment`` without weights).
    """
    free = budget - BASE_BYTES - TRAIN_BYTES * training - field_bytes(field)
    if budget < BASE_BYTES + TRAIN_BYTES * training + read_bytes(field):
        free = 0.0  # the read alone does not fit: the smallest tile, which `check_memory` then refuses
    side = min(int(np.sqrt(max(free, 0) / TILE_BYTES_PER_PIXEL)) // 32 * 32, MAX_TILE_PX)
    return max(min_tile_px(overlap_px), min(side, max(field.height, field.width)))


def check_memory(
    budget: float, field: Sample | FieldSize, tile: int, training: bool = False, flag: str = "--max-memory"
) -> None:
    """Raise `SegmentError` now when the field (read, or its `FieldSize` from the file's headers) and one
    ``tile``-px tile cannot fit ``budget`` bytes.

    ``flag``: the command's name for the budget option, named in the message.
    """
    th, tw = min(tile, field.height), min(tile, field.width)
    mapping = field_bytes(field) + TILE_BYTES_PER_PIXEL * th * tw
    need = BASE_BYTES + TRAIN_BYTES * training + max(read_bytes(field), mapping)
    if need > budget:
        name = f" {field_size(field).name}".rstrip()
        smaller = f", use smaller tiles (>= {min_tile_px(OVERLAP_PX)} px)" if tile > min_tile_px(OVERLAP_PX) else ""
        raise SegmentError(
            f"field{name} ({field.height}x{field.width} px) needs about {need / 1e9:.2f} GB with {tile}-px tiles "
            f"but the memory budget is {budget / 1e9:.2f} GB; raise {flag}{smaller} or crop the field."
        )
