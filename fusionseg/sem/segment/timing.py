"""The one place `segment` records how long its stages took: the keys of ``SegmentResult.timings`` (seconds).

Every stage writes its seconds through `record` (or `timed`), rounded to 10 ms; a key not listed in
`STAGE_SECONDS` is refused, so a new stage is named here first. ``summary.json`` holds the timings, and
`benchmarks/bench_segment.py` prints them per stage.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

STAGE_SECONDS = {
    "read_s": "reading the field (command line)",
    "identify_s": "labelling the measured points (library, clusters, the checkpoint's classes)",
    "train_s": "per-field training",
    "adapt_s": "encoding the points and fine-tuning the checkpoint's refiner on them",
    "predict_s": "the map (with the weights: encoding and adaptation included)",
    "voids_s": "pores, epoxy and background from the BSE image (the voids stage)",
    "qc_predict_s": "the held-out check's blind map",
    "classic_floor_s": "the classic floor's fills and test",
    "classic_features_s": "the refiner's classic features, every pass together",
    "total_s": "the whole field before writing (command line)",
    "write_s": "writing the outputs (command line)",
}


def record(timings: dict[str, float], key: str, start: float | None = None, *, seconds: float | None = None,
           add: bool = False) -> None:  # fmt: skip
    """``timings[key]``: the seconds since ``start`` (`time.perf_counter`), or ``seconds``; ``add`` adds them to
    the stage's earlier seconds. Rounded to 10 ms."""
    if key not in STAGE_SECONDS:
        raise KeyError(f"unknown segment stage {key!r}; name it in STAGE_SECONDS ({', '.join(STAGE_SECONDS)})")
    value = seconds if seconds is not None else time.perf_counter() - (start or 0.0)
    timings[key] = round(timings[key] + value if add else value, 2)


@contextmanager
def timed(timings: dict[str, float], key: str, add: bool = False) -> Iterator[None]:
    """Record the seconds the ``with`` block takes as ``timings[key]`` (see `record`)."""
    start = time.perf_counter()
    yield
    record(timings, key, start, add=add)


__all__ = ["STAGE_SECONDS", "record", "timed"]
