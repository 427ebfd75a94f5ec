"""Adaptive EDS acquisition for SEM fields: a trained model as the planner's segmenter, and the loop run on
any dense source (the simulator draws spectra only where asked; a dense EDS file gives its pixels' spectra).

    planner = Planner(bse, budget=0.003, batch_size=0.00025, strategy="uncertainty",
                      segmenter=model_segmenter(model), meta=sample.meta)
    states = run_acquisition(planner, measure=field.spectra_at)  # fusionseg.acquisition.run_acquisition

``fusionseg segment FILE --acquire adaptive --eds-budget 0.003 --batch 0.00025`` runs `acquire_points` on a
dense map and maps the field from the points it chose.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from fusionseg.acquisition import Planner, PlannerState, run_acquisition
from fusionseg.errors import SegmentError
from fusionseg.inference import predict_field
from fusionseg.sample import Sample
from fusionseg.sem.data.acquisition import gather_spectra
from fusionseg.sem.identify import best_library_labels
from fusionseg.sem.meta import model_meta, sem_meta
from fusionseg.sem.spectrum import rebin_spectra


class IdentifiedPoints:
    """Library labels (in ``class_names``) of the points measured so far; each spectrum is identified once
    (points only grow)."""

    def __init__(self, class_names: tuple[str, ...]) -> None:
        self.class_names = tuple(class_names)
        self.labels = torch.zeros(0, dtype=torch.long)

    def __call__(self, sample: Sample) -> torch.Tensor:
        n = len(self.labels)
        if sample.num_points < n:  # another field or a restarted loop: start over
            self.labels, n = self.labels[:0], 0
        if sample.num_points > n:
            sem = sem_meta(sample.meta)
            new = best_library_labels(sample.point_features[n:], self.class_names, sem.energy_axis,
                                      sem.beam_energy_kev)  # fmt: skip
            self.labels = torch.cat([self.labels, new])
        return self.labels


def model_segmenter(model: Any, tile_px: int = 512) -> Callable[[Sample], tuple[np.ndarray, np.ndarray]]:
    """The planner's segmenter from a trained `FusionSegModule`: points identified against the mineral library
    in the model's classes (as the accuracy benchmark does), spectra rebinned onto the model's energy axis when
    the file's differs, the refiner adapted to the field's points once (as ``segment`` does; the model skips it
    below 50 identified points), map and confidence predicted (tiled beyond ``tile_px``). No held-out check or
    classic floor inside the loop (the final map of ``fusionseg segment`` has them)."""
    identified = IdentifiedPoints(tuple(model.class_names))
    axis = model_meta(model).energy_axis

    def segment(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
        sem = sem_meta(sample.meta)
        feats = sample.point_features
        if sem.energy_axis is not None and sem.energy_axis != axis:
            feats = rebin_spectra(feats, sem.energy_axis, axis)
        meta = replace(sample.meta, domain=replace(sem, energy_axis=axis), class_names=tuple(model.class_names))
        labelled = replace(sample, point_features=feats, meta=meta, point_target=identified(sample))
        with model.adapted_to(labelled, tile_px):  # once per field, not per tile
            with torch.inference_mode():
                labels, conf = predict_field(model, labelled, tile_px)
        return labels.numpy(), conf.numpy()

    return segment


def acquire_points(
    sample: Sample,
    model: Any,
    budget: float,
    batch_size: float | None = None,
    strategy: str = "uncertainty",
    seed: int = 0,
    tile_px: int = 512,
) -> tuple[Sample, Planner, list[PlannerState]]:
    """Simulate adaptive acquisition on a dense map: the planner asks, the map's spectrum at that pixel answers.

    ``sample`` holds a dense spectrum image (``meta.domain.dense_spectra``); only pixels with counts (the
    EDS-acquired area) can be measured. Returns the field with the measured points (as `sparse_acquisition`
    would), the planner (its ``order()`` is the acquisition order) and the state after each batch.
    """
    sem = sem_meta(sample.meta)
    cube = sem.dense_spectra
    if cube is None:
        raise SegmentError("--acquire simulates acquisition on a dense EDS map (it measures where the planner "
                           "asks); this input holds point spectra only: map it without --acquire.")  # fmt: skip
    measurable = sem.measured_mask
    measurable = np.asarray(cube.sum(-1) > 0 if measurable is None else measurable, dtype=bool)
    planner = Planner(sample.image, budget, batch_size, strategy, segmenter=model_segmenter(model, tile_px),
                      meta=sample.meta, seed=seed, measurable=measurable)  # fmt: skip
    states = run_acquisition(planner, lambda rc: gather_spectra(cube, rc[:, 0], rc[:, 1]))
    h, w = measurable.shape
    domain = replace(sem, sampler=f"acquire:{strategy}", eds_fraction=planner.measured / (h * w))
    acquired = replace(sample, point_coords=planner.coords.astype(np.float32),
                       point_features=np.concatenate(planner.features), meta=replace(sample.meta, domain=domain),
                       point_target=None)  # fmt: skip
    return acquired, planner, states


def acquisition_summary(planner: Planner, states: list[PlannerState], strategy: str) -> dict[str, Any]:
    """What ``summary.json`` records of the loop: settings, and per batch the points, mean confidence,
    changed share of the map and seconds."""
    return {
        "strategy": strategy,
        "budget_points": planner.budget,
        "batch_points": planner.batch_size,
        "measured": planner.measured,
        "stop": states[-1].reason if states else "nothing measured",
        "batches": [
            {
                "step": s.step,
                "measured": s.measured,
                "mean_confidence": round(s.mean_confidence, 4),
                "changed": round(s.changed, 4),
                **s.seconds,
            }
            for s in states
        ],  # fmt: skip
    }
