"""`segment_field`: one field's stages in order. Each stage is a module of this package:

1. `inputs.check_request`: the field has points; the method and checkpoint fit together.
2. odd-input warnings (`fusionseg.sample.odd_input_notes`): logged and kept in the result's notes.
3. With weights (``checkpoint``), `weights.map_with_weights`: the points labelled in the model's classes
   (`checkpoint.adapt_to_checkpoint`) or clustered (`identify`), the refiner adapted, the map, the held-out check
   and classic floor (`check`, `floor`); the shipped weights may give way to per-field training (`PerFieldInstead`).
4. Without: `identify.identify_points` labels the points, then a classic fill (`classic`), the nearest labelled
   point (too few to train), or per-field training (`per_field`), each finished by the held-out check (`check`).

The seconds of each stage go to ``result.timings`` through `timing.record` (its keys: `timing.STAGE_SECONDS`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from fusionseg.sample import Sample, odd_input_notes
from fusionseg.sem.segment.classic import classic_segment
from fusionseg.sem.segment.config import SegmentConfig, SegmentResult
from fusionseg.sem.segment.identify import identify_points, with_point_labels
from fusionseg.sem.segment.inputs import check_request
from fusionseg.sem.segment.per_field import log as per_field_log
from fusionseg.sem.segment.per_field import map_nearest_point, map_per_field, too_few_to_train
from fusionseg.sem.segment.timing import timed
from fusionseg.sem.segment.weights import PerFieldInstead, map_with_weights

log = logging.getLogger(__name__)


def segment_field(sample: Sample, checkpoint: Path | None = None, config: SegmentConfig | None = None) -> SegmentResult:
    """Segment a field whose measured points are in ``sample`` (``point_target`` set = labels given).

    Odd but legal input (1-2 points, all points at one pixel, a single phase) is mapped with a
    warning that is logged and kept in ``result.info["notes"]`` (and so in ``summary.json``).
    """
    config = config or SegmentConfig()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    check_request(sample, checkpoint, config)
    notes = odd_input_notes(sample)
    for note in notes:
        log.warning(note)
    if checkpoint is not None:
        mapped = map_with_weights(sample, checkpoint, config, notes)
        return mapped if isinstance(mapped, SegmentResult) else _per_field_instead(sample, mapped)
    timings: dict[str, float] = {}
    with timed(timings, "identify_s"):
        points = identify_points(sample, config) if sample.point_target is None else None
        if points is not None:
            sample = with_point_labels(sample, points)
    if config.method != "model":
        return classic_segment(sample, config, points, timings)
    if too_few_to_train(sample):
        return map_nearest_point(sample, config, points, timings, notes)
    return map_per_field(sample, config, points, timings, notes)


def _per_field_instead(sample: Sample, instead: PerFieldInstead) -> SegmentResult:
    """The shipped weights gave way: the field as read, mapped again without them, with one message (logged and
    first among the notes) saying why and what was done: a model trained on this field, or, with too few points to
    train one, the nearest measured point (whose own note it replaces, so a run never says both)."""
    if instead.why is None:
        return segment_field(sample, None, instead.config)
    held: list[str] = []
    with _held_notes(held):  # the too-few-to-train note, said below together with why the weights gave way
        result = segment_field(sample, None, instead.config)
    notes = result.info.setdefault("notes", [])
    if result.mode == "per-field training":
        note = f"{instead.why}: trained a model on this field instead (as --per-field does)"
        for text in held:  # training's own warnings, not about this decision: said as they were
            per_field_log.warning(text)
    else:
        done = "; ".join(held) or f"mapped by {result.mode}"
        note = f"{instead.why}: the weights are not used, and {done}"
        notes[:] = [n for n in notes if n not in held]
    log.warning(note)
    notes.insert(0, note)
    return result


@contextmanager
def _held_notes(held: list[str]) -> Iterator[None]:
    """Warnings of the per-field stage (`per_field`'s logger) kept in ``held`` instead of logged meanwhile."""

    def hold(record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        held.append(record.getMessage())
        return False

    per_field_log.addFilter(hold)
    try:
        yield
    finally:
        per_field_log.removeFilter(hold)


__all__ = ["segment_field"]
