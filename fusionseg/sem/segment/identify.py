"""`segment`'s identification stage: the measured spectra labelled (mineral library or spectrum clusters).

One room: what the rest of `segment` asks of identification is `identify_points` (labels and names of the points),
`with_point_labels` (the field labelled with them), `clustering_notes` (warnings about the clusters) and
`cluster_class_map` (a model's classes mixed into the field's clusters).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from fusionseg.sample import IGNORE_INDEX, Sample
from fusionseg.sem.identify import UNKNOWN, PointLabels, label_points
from fusionseg.sem.meta import sem_meta
from fusionseg.sem.segment.config import SegmentConfig

WEAK_SILHOUETTE = 0.25  # a best mean silhouette below this: no substantial cluster structure (Kaufman & Rousseeuw)


def identify_points(sample: Sample, config: SegmentConfig) -> PointLabels:
    """Library/cluster labels of the measured spectra (a single spectrum is identified against the library).

    The simulator's library fit (`label_points`) names what it can; what it cannot is named by composition
    (`fusionseg.sem.identification`): each cluster by its summed spectrum (clusters named alike become one
    class) and, with ``--mode library``, each point the library leaves unknown by its own spectrum. A cluster no
    library entry fits keeps its elements: "unknown (Ca-Fe-Si-O)"."""
    spectra, sem = sample.point_features, sem_meta(sample.meta)
    single = len(spectra) == 1
    points = label_points(spectra.repeat(2, 1) if single else spectra, sem.energy_axis, sem.beam_energy_kev,
                          mode="library" if single else config.mode, min_confidence=config.min_confidence,
                          n_clusters=config.n_clusters, seed=config.seed)  # fmt: skip
    if single:
        return replace(points, labels=points.labels[:1])
    if points.mode == "clusters" or (config.mode == "library" and (points.labels == UNKNOWN).any()):
        from fusionseg.sem.segment.naming import named_by_composition

        points = named_by_composition(points, spectra, sem)
    return points


def clustering_notes(points: PointLabels | None) -> list[str]:
    """A warning when the chosen clusters show no substantial structure (best mean silhouette under
    `WEAK_SILHOUETTE`, Kaufman & Rousseeuw 1990): the phases are then tentative."""
    scores = (points.clustering or {}).get("silhouette_by_k") if points is not None else None
    if not scores or max(scores.values()) >= WEAK_SILHOUETTE:
        return []
    return [f"the spectra show no substantial cluster structure (best mean silhouette {max(scores.values()):.2f} < "
            f"{WEAK_SILHOUETTE}): the {points.clustering['clusters']} clusters may split one noisy phase; measure "
            "longer per point (more counts) before trusting them"]  # fmt: skip


def with_point_labels(sample: Sample, points: PointLabels) -> Sample:
    """The sample with identified point labels; unknown points become class ``unknown`` when present."""
    names, labels = points.names, points.labels.clone()
    if (labels == UNKNOWN).any():
        names = (*names, "unknown")
        labels[labels == UNKNOWN] = len(names) - 1
    return replace(sample, point_target=labels, meta=replace(sample.meta, class_names=names), target=None)


def cluster_class_map(model_labels: Tensor, field_labels: Tensor, n_model: int, n_field: int) -> Tensor:
    """(n_model, n_field) P(field class | model class) counted over points labelled in both (IGNORE_INDEX: not),
    plus one point spread evenly over the field classes: a model class no point resembles maps uniformly."""
    both = (model_labels != IGNORE_INDEX) & (field_labels != IGNORE_INDEX)
    counts = torch.zeros(n_model, n_field, dtype=torch.float64)
    counts.index_put_((model_labels[both], field_labels[both]), torch.ones(int(both.sum()), dtype=torch.float64),
                      accumulate=True)  # fmt: skip
    return (counts + 1.0 / n_field) / (counts.sum(1, keepdim=True) + 1.0)


__all__ = ["WEAK_SILHOUETTE", "cluster_class_map", "clustering_notes", "identify_points", "with_point_labels"]
