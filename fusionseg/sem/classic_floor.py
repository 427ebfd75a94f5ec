"""A classic fill as `segment`'s floor: used instead of the model when the withheld points prove it better.

`segment` already withholds some identified points and maps the field without them (the QC held-out
check). The same points score a classic propagation (`FLOOR_METHODS`, filled from the same kept points);
when the best of them beats the model on those points by a paired McNemar margin (more points only it
gets right than only the model gets right, by ``Z_MIN`` standard errors), the classic map of all the
points is what `segment` returns. On a field unlike anything the model knew, the user gets at least an
edge-aware classic fill rather than a confidently wrong model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fusionseg.baselines import classic_map
from fusionseg.inference import predict_field
from fusionseg.sample import IGNORE_INDEX, Sample
from fusionseg.sem.export.qc import PointCalls, map_names_at

FLOOR_METHODS = ("geodesic", "random-walker")  # the best classic fills on the benchmark's synthetic and real fields
Z_MIN = 2.0  # McNemar margin (standard errors) a classic fill needs over the model on the withheld points


class ClassicFill:
    """A classic method with a model's ``predict_samples``, so `predict_field` tiles it (bounded memory)."""

    def __init__(self, method: str, num_classes: int) -> None:
        self.method, self.num_classes = method, num_classes

    def predict_samples(self, samples: list[Sample]) -> list[dict[str, Any]]:
        out = []
        for s in samples:
            labels = torch.from_numpy(classic_map(self.method, s.image.numpy(), s.point_coords.numpy(),
                                                  s.point_target.numpy(), self.num_classes))  # fmt: skip
            out.append({"labels": labels, "confidence": (labels != IGNORE_INDEX).float()})
        return out


def correct_at(labels: np.ndarray, class_names: tuple[str, ...], calls: PointCalls) -> np.ndarray:
    """(n_confident,) bool: the map names each confidently identified point's phase at its pixel."""
    at = map_names_at(labels, class_names, calls)
    return np.array([at[i] == calls.names[i] for i in np.flatnonzero(calls.confident)], dtype=bool)


def mcnemar_z(candidate: np.ndarray, incumbent: np.ndarray) -> float:
    """Paired z of ``candidate`` over ``incumbent`` (bool per point): (b - c) / sqrt(b + c); 0 without discordance."""
    b, c = int((candidate & ~incumbent).sum()), int((incumbent & ~candidate).sum())
    return 0.0 if b + c == 0 else (b - c) / float(np.sqrt(b + c))


def better_classic(
    model_blind: np.ndarray, rest: Sample, class_names: tuple[str, ...], withheld: PointCalls, tile_px: int,
    overlap_px: int, blind_fills: dict[str, torch.Tensor] | None = None,
) -> tuple[str, np.ndarray, float] | None:  # fmt: skip
    """The classic method whose map from ``rest``'s points beats ``model_blind`` on the ``withheld`` points by
    ``Z_MIN``: (method, its blind map, z); None when the model holds. ``blind_fills``: the methods' maps from
    ``rest``'s points already made (the refiner's region-graph fills: the decision costs nothing more); the
    per-pixel methods otherwise."""
    model_ok = correct_at(model_blind, class_names, withheld)
    if len(model_ok) == 0:
        return None
    best = None
    for method in FLOOR_METHODS:
        if blind_fills and method in blind_fills:
            blind = blind_fills[method].numpy()
        else:
            blind = predict_field(ClassicFill(method, len(class_names)), rest, tile_px, overlap_px)[0].numpy()
        ok = correct_at(blind, class_names, withheld)
        if best is None or ok.sum() > best[2].sum():
            best = (method, blind, ok)
    method, blind, ok = best
    z = mcnemar_z(ok, model_ok)
    return (method, blind, z) if z > Z_MIN else None
