"""`segment --method METHOD`: a classic propagation of the identified points instead of a model (for comparison)."""

from __future__ import annotations

from torch import Tensor

from fusionseg.sample import IGNORE_INDEX, Sample
from fusionseg.sem.classic_floor import ClassicFill
from fusionseg.sem.identify import PointLabels
from fusionseg.sem.segment.check import finish_result, withheld_points
from fusionseg.sem.segment.config import SegmentConfig, SegmentResult
from fusionseg.sem.segment.timing import timed


def classic_segment(
    sample: Sample, config: SegmentConfig, points: PointLabels | None, timings: dict[str, float]
) -> SegmentResult:
    """A classic propagation of the labelled points (`fusionseg.baselines`); confidence 1 where it names a class."""

    def fill(field: Sample) -> Tensor:
        return ClassicFill(config.method, len(field.meta.class_names)).predict_samples([field])[0]["labels"]

    with timed(timings, "predict_s"):
        labels = fill(sample)
    confidence = (labels != IGNORE_INDEX).float()  # a classic fill has no calibrated probability
    notes = [f"{config.method}: settings chosen on the benchmark's validation split (fusionseg.baselines); "
             "confidence is not calibrated"]  # fmt: skip
    result = SegmentResult(labels, confidence, sample.meta.class_names, sample, f"classic: {config.method}", points,
                           timings, info={"notes": notes})  # fmt: skip
    withheld = withheld_points(sample, config.held_out_share, config.seed)
    how = f"{int(withheld.sum())} identified points ({100 * config.held_out_share:.0f} %) withheld, filled without them"
    return finish_result(result, fill, config, withheld, how)


__all__ = ["classic_segment"]
