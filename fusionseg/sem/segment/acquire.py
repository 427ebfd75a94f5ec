"""`segment --acquire STRATEGY`: replay an adaptive acquisition on a dense map, the model's maps in the loop
(`fusionseg.sem.acquire`), before the field is mapped from the points it measured."""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np

from fusionseg.errors import SegmentError
from fusionseg.sample import Sample
from fusionseg.sem.segment.checkpoint import load_checkpoint_model

log = logging.getLogger(__name__)

ACQUIRE_BUDGET = 0.003  # --acquire default: 0.3 % of the pixels (in `fusionseg.acquisition.DEFAULT_BATCHES` batches)


def check_acquisition_args(a: argparse.Namespace) -> None:
    """Before any work: a known strategy, and --eds-budget/--batch only with --acquire."""
    from fusionseg.registry import ACQUISITION_STRATEGIES

    if a.acquire is None:
        if a.eds_budget is not None or a.batch is not None:
            raise SegmentError("--eds-budget and --batch set an adaptive acquisition; add --acquire adaptive "
                               "(or another strategy), or keep a fixed share with --eds-fraction.")  # fmt: skip
        return
    ACQUISITION_STRATEGIES.get(a.acquire)  # an unknown name lists the known ones


def acquire_field(sample: Sample, a: argparse.Namespace, tile_px: int) -> tuple[Sample, tuple[dict, np.ndarray]]:
    """``--acquire``: the points an acquisition planner measures on the dense map, batch by batch, with the
    maps of ``--checkpoint`` (else the shipped weights) in the loop; (field, (summary, acquisition order))."""
    from fusionseg.paths import DEFAULT_WEIGHTS
    from fusionseg.sem.acquire import acquire_points, acquisition_summary

    start = time.perf_counter()
    model = load_checkpoint_model(a.checkpoint or DEFAULT_WEIGHTS)
    budget = a.eds_budget or ACQUIRE_BUDGET
    acquired, planner, states = acquire_points(sample, model, budget, a.batch, a.acquire, a.seed, tile_px)
    for s in states:
        log.info("acquisition batch %d: %d points, mean confidence %.3f", s.step, s.measured, s.mean_confidence)
    summary = acquisition_summary(planner, states, a.acquire)
    summary["seconds"] = round(time.perf_counter() - start, 2)
    return acquired, (summary, planner.order())


__all__ = ["ACQUIRE_BUDGET", "acquire_field", "check_acquisition_args"]
