"""Adaptive acquisition: where to measure the next points, with the current map in the loop.

`Planner` runs the propose -> measure -> add -> update loop; strategies (`ACQUISITION_STRATEGIES`) choose the
pixels. Domain-free: a domain supplies the segmenter (SEM: `fusionseg.sem.acquire`).
"""

from fusionseg.acquisition import strategies  # noqa: F401  (registers the strategies)
from fusionseg.acquisition.planner import (
    DEFAULT_BATCHES,
    AcquisitionError,
    Planner,
    PlannerState,
    Segmenter,
    run_acquisition,
)

__all__ = ["DEFAULT_BATCHES", "AcquisitionError", "Planner", "PlannerState", "Segmenter", "run_acquisition"]
