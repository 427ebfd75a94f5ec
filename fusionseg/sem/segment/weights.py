"""`segment` with trained weights (``--checkpoint``, or the shipped weights by default): the points labelled in the
model's classes (or clustered, the network's classes mixed into the clusters), the refiner adapted to the field,
the map, the held-out check and the classic floor. The shipped weights give way to per-field training
(`PerFieldInstead`, run by `fusionseg.sem.segment.pipeline`) where the field is unlike their training data."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fusionseg.inference import predict_field
from fusionseg.sample import IGNORE_INDEX, Sample
from fusionseg.sem.identify import PointLabels, best_library_labels
from fusionseg.sem.meta import model_meta
from fusionseg.sem.segment.check import finish_result, withheld_points
from fusionseg.sem.segment.checkpoint import adapt_to_checkpoint, load_checkpoint_model
from fusionseg.sem.segment.config import SegmentConfig, SegmentResult
from fusionseg.sem.segment.identify import cluster_class_map, clustering_notes, identify_points, with_point_labels
from fusionseg.sem.segment.timing import record

log = logging.getLogger(__name__)


@dataclass
class PerFieldInstead:
    """The weights give way: map the field as read without them (per-field training, or the nearest measured point
    when there are too few points to train) with ``config``; ``why``: the reason, said once with what was done
    (`fusionseg.sem.segment.pipeline`: logged and put first among the result's notes; None: nothing to say)."""

    config: SegmentConfig
    why: str | None = None


def per_field_instead(config: SegmentConfig, why: str) -> PerFieldInstead:
    """Fall back from the shipped weights to mapping the field without them, saying why."""
    return PerFieldInstead(replace(config, fallback_per_field=False), why)


def map_with_weights(
    sample: Sample, checkpoint: Path, config: SegmentConfig, notes: list[str]
) -> SegmentResult | PerFieldInstead:
    """Inductive prediction with a trained model: points labelled in its classes by the mineral library, or, for
    the shipped weights on a field the library cannot name, by clustering (`_weights_on_clusters`). ``notes``: the
    odd-input warnings so far. `PerFieldInstead` when the shipped weights give way to per-field training."""
    start = time.perf_counter()
    model = load_checkpoint_model(checkpoint)
    if not config.adapt_refiner:
        model.field_adaptation = None
    adapted, ckpt_notes = adapt_to_checkpoint(sample, model)
    pt = adapted.point_target
    identified = 0.0 if pt is None else float((pt != IGNORE_INDEX).float().mean())
    for note in ckpt_notes:
        log.warning(note)
    info = {"notes": notes + ckpt_notes, "checkpoint": str(checkpoint)}
    timings: dict[str, float] = {}
    record(timings, "identify_s", start)
    if config.mode == "clusters":
        return _weights_on_clusters(sample, adapted, model, config, "--mode clusters", info, timings)
    if config.fallback_per_field and identified < 0.5:
        why = f"the library identifies {100 * identified:.0f} % of the spectra, too few to name the phases"
        if config.mode == "library":  # minerals asked for: train on the named points instead
            return per_field_instead(config, why)
        return _weights_on_clusters(sample, adapted, model, config, why, info, timings)
    mode = "shipped weights" if config.fallback_per_field else "checkpoint"
    return _predict_with_weights(model, adapted, config, mode, None, info, timings)


def _weights_on_clusters(
    sample: Sample, adapted: Sample, model: Any, config: SegmentConfig, why: str, info: dict, timings: dict
) -> SegmentResult | PerFieldInstead:
    """The shipped weights on the field's spectrum clusters (`in_field_classes`): the network's classes are
    mixed into the clusters through the points' best library matches, and the refiner (fine-tuned on the
    field's points) propagates the cluster labels. Per-field training when there is no refiner or too few
    points to cluster."""
    start = time.perf_counter()
    if model.refiner is None or adapted.num_points < 4:
        return per_field_instead(config, why)
    points = identify_points(sample, replace(config, mode="clusters"))
    if len(points.names) < 2:  # one phase: nothing to propagate (the per-field path maps it and says so)
        return PerFieldInstead(replace(config, fallback_per_field=False, mode="clusters"))
    field = with_point_labels(adapted, points)
    library = best_library_labels(adapted.point_features, model.class_names, model_meta(model).energy_axis,
                                  model_meta(model).beam_energy_kev)  # fmt: skip
    class_map = cluster_class_map(library, field.point_target, model.num_outputs, len(field.meta.class_names))
    record(timings, "identify_s", start, add=True)
    new_notes = [f"{why}: the points are labelled by clustering their spectra ({len(points.names)} clusters)",
                 *clustering_notes(points)]  # fmt: skip
    for text in new_notes:
        log.warning(text)
    info["notes"][:0] = new_notes
    mode = f"{'shipped weights' if config.fallback_per_field else 'checkpoint'} on spectrum clusters"
    with model.in_field_classes(class_map):
        return _predict_with_weights(model, field, config, mode, points, info, timings)


def _predict_with_weights(
    model: Any, field: Sample, config: SegmentConfig, mode: str, points: PointLabels | None, info: dict,
    timings: dict,
) -> SegmentResult | PerFieldInstead:  # fmt: skip
    """Map ``field`` (points labelled in the classes the model predicts) with the refiner adapted to it, then the
    held-out check and classic floor; per-field training on the field as read instead (`PerFieldInstead`) when
    the shipped weights disagree with the withheld points."""
    start = time.perf_counter()
    withheld = withheld_points(field, config.held_out_share, config.seed)
    # Adapted once per field (not per tile, within a tile) on the points the held-out check keeps: the map and its
    # blind check share one adaptation that never saw the withheld points (the check used to adapt again: 2.4 s).
    with model.points_encoded(field) as encoded, model.adapted_to(encoded, config.tile_px, ~withheld) as refiner:
        record(timings, "adapt_s", start)
        labels, conf = predict_field(model, encoded, config.tile_px, config.overlap_px)
        record(timings, "predict_s", start)  # encoding and adaptation included
        result = SegmentResult(labels, conf, tuple(field.meta.class_names), field, mode, points, timings,
                               {**info, "refiner": refiner})  # fmt: skip
        how = f"{int(withheld.sum())} labelled points ({100 * config.held_out_share:.0f} %) withheld, map predicted "
        result = finish_result(result, model, config, withheld, how + "without them", encoded)
    if model.refiner is not None:
        record(timings, "classic_features_s", seconds=model.refiner.features.seconds)  # every pass together
    agree = result.qc["agreement_model"]["share"]
    if config.fallback_per_field and agree is not None and agree < 0.5:
        return per_field_instead(config, f"the shipped weights' map agrees with {100 * agree:.0f} % of the withheld "
                                 "points (this field is unlike their training data)")  # fmt: skip
    return result


__all__ = ["PerFieldInstead", "map_with_weights", "per_field_instead"]
