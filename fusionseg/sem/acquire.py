"""Adaptive EDS acquisition for SEM fields: the shipped model as the planner's segmenter, and the loop run on
any dense source (the simulator draws spectra only where asked; a dense EDS file gives its pixels' spectra).

    planner = Planner(bse, budget=0.003, batch_size=0.0005, strategy="hybrid",
                      segmenter=model_segmenter(model), meta=model_meta_of(model, sample.meta))
    states = run_acquisition(planner, measure=field.spectra_at)  # fusionseg.acquisition.run_acquisition
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from fusionseg.inference import predict_field
from fusionseg.sample import Sample
from fusionseg.sem.identify import best_library_labels
from fusionseg.sem.meta import sem_meta


class IdentifiedPoints:
    """Library labels of the points measured so far; each spectrum is identified once (points only grow)."""

    def __init__(self) -> None:
        self.labels = torch.zeros(0, dtype=torch.long)

    def __call__(self, sample: Sample) -> torch.Tensor:
        n = len(self.labels)
        if sample.num_points < n:  # another field or a restarted loop: start over
            self.labels, n = self.labels[:0], 0
        if sample.num_points > n:
            sem = sem_meta(sample.meta)
            new = best_library_labels(sample.point_features[n:], sample.meta.class_names, sem.energy_axis,
                                      sem.beam_energy_kev)  # fmt: skip
            self.labels = torch.cat([self.labels, new])
        return self.labels


def model_segmenter(model: Any, tile_px: int = 512) -> Callable[[Sample], tuple[np.ndarray, np.ndarray]]:
    """The planner's segmenter from a trained `FusionSegModule`: points identified against the mineral library
    (as the accuracy benchmark does), map and confidence predicted (tiled beyond ``tile_px``); no field
    adaptation or held-out check inside the loop (the final map may use them: ``fusionseg segment``)."""
    identified = IdentifiedPoints()

    def segment(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
        labelled = replace(sample, point_target=identified(sample))
        with torch.inference_mode():
            labels, conf = predict_field(model, labelled, tile_px)
        return labels.numpy(), conf.numpy()

    return segment
