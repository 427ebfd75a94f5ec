"""`segment`'s classic floor: a classic fill replaces the model's map when the withheld points prove it better
(`fusionseg.sem.classic_floor.better_classic`: McNemar's test on the points where the two blind maps disagree)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from torch import Tensor

from fusionseg.inference import predict_field
from fusionseg.sample import IGNORE_INDEX, Sample
from fusionseg.sem.classic_floor import ClassicFill, better_classic
from fusionseg.sem.segment.config import SegmentConfig, SegmentResult

log = logging.getLogger(__name__)


def classic_floor(
    result: SegmentResult, blind: Tensor, rest: Sample, calls: Any, held: dict, config: SegmentConfig,
    fills: dict[str, Tensor],
) -> tuple[np.ndarray, np.ndarray, dict] | None:  # fmt: skip
    """When a classic fill of ``rest`` (the field without the withheld points) beats the model's ``blind`` map on
    the withheld points ``calls`` (`PointCalls`): the classic map of all the points, its confidence (1) and its
    held-out agreement, noted in ``result``; None when the model's map holds. ``fills``: classic fills made already."""
    from fusionseg.sem.export.qc import held_out_agreement

    names = tuple(result.class_names)
    floor = better_classic(blind.numpy(), rest, names, calls, config.tile_px, config.overlap_px, fills)
    if floor is None:
        return None
    labels, conf = _use_classic_floor(result, floor, held, config)
    return labels, conf, held_out_agreement(floor[1], names, calls, held["how"])


def _use_classic_floor(
    result: SegmentResult, floor: tuple[str, np.ndarray, float], model_held: dict, config: SegmentConfig
) -> tuple[np.ndarray, np.ndarray]:
    """The classic method's map of all the points (labels, confidence 1), noted in ``result`` (`classic_floor`)."""
    method, _, z = floor
    # the per-pixel fill (the region fill decided, cheaply; this one is what the user gets: 0.865 vs 0.791 pixel
    # accuracy on tests/test_classic_floor.py's field) costs seconds only on the rare field that gives way
    fill = ClassicFill(method, len(result.class_names))
    labels = predict_field(fill, result.sample, config.tile_px, config.overlap_px)[0].numpy().copy()
    note = (
        f"classic floor: {method} beat the model on the withheld points (McNemar z = {z:.1f}; the model's "
        f"held-out agreement {model_held['share']}), so the map is {method}'s (confidence not calibrated)"
    )
    log.warning(note)
    result.info.setdefault("notes", []).append(note)
    result.mode = f"{result.mode}, classic floor: {method}"
    return labels, (labels != IGNORE_INDEX).astype(np.float32)


__all__ = ["classic_floor"]
