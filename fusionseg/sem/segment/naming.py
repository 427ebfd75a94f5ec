"""Phases named by composition in `segment` (`fusionseg.sem.identification`): spectrum clusters by their summed
spectra, library points the simulator's references do not fit by their own spectra, and every point's two best
matches for ``points.csv``."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from fusionseg.sem.identification import Identified, identify, name_summed, summed_spectrum
from fusionseg.sem.identification.match import twins
from fusionseg.sem.identify import LOW_COUNT_NAME, UNKNOWN, PointLabels
from fusionseg.sem.meta import SemMeta


def named_by_composition(points: PointLabels, spectra: Tensor, sem: SemMeta) -> PointLabels:
    """``points`` with clusters (mode "clusters") or unknown points (mode "library") named by composition, the
    phases' measured compositions (``phases``) and each point's two best matches (``matches``)."""
    field = identify(spectra, sem.energy_axis, sem.beam_energy_kev)
    matches = point_matches(field)
    if points.mode == "clusters":
        return _named_clusters(points, spectra, field, matches)
    return _named_unknowns(points, spectra, field, matches)


def point_matches(field: Identified) -> dict[str, list]:
    """Per point: its best entry (or 'unknown (elements)'), the mean chi-square per element, the runner-up."""
    m, names = field.matches, twins(field.library, field.composition.unmeasured).label
    return {"best_match": field.names(), "best_score": [round(float(v), 2) for v in m.score],
            "second_match": [names[int(k)] for k in m.second],
            "second_score": [round(float(v), 2) for v in m.second_score]}  # fmt: skip


def _named_clusters(points: PointLabels, spectra: Tensor, field: Identified, matches: dict) -> PointLabels:
    """Each cluster named by the identification of its summed spectrum; clusters named alike merged into one class
    (their sum then measured again for its composition). The low-count cluster keeps its name."""
    named = {k: name_summed(summed_spectrum(spectra[points.labels == k]), field.survey, field.library)
             for k, old in enumerate(points.names) if old != LOW_COUNT_NAME and (points.labels == k).any()}  # fmt: skip
    names = [named[k].name if k in named else old for k, old in enumerate(points.names)]
    unique = tuple(dict.fromkeys(names))
    remap = torch.tensor([unique.index(n) for n in names], dtype=torch.long)
    labels = torch.where(points.labels == UNKNOWN, points.labels, remap[points.labels.clamp(min=0)])
    phases = {}
    for k, name in enumerate(unique):
        members = [c for c, n in enumerate(names) if n == name and c in named]
        if len(members) == 1:  # one cluster: its own identification
            phases[name] = named[members[0]].report()
        elif members:
            phases[name] = name_summed(summed_spectrum(spectra[labels == k]), field.survey, field.library).report()
    clustering = {**(points.clustering or {}), "named_by": "identification of each cluster's summed spectrum",
                  "clusters_per_phase": {n: names.count(n) for n in unique}}  # fmt: skip
    return replace(points, labels=labels, names=unique, clustering=clustering, phases=phases, matches=matches)


def _named_unknowns(points: PointLabels, spectra: Tensor, field: Identified, matches: dict) -> PointLabels:
    """Library labels kept; each point the library left unknown takes its own composition's library name (a new
    class when new); points no entry fits stay unknown."""
    names, labels = list(points.names), points.labels.clone()
    for i in torch.nonzero(labels == UNKNOWN).squeeze(1).tolist():
        name = matches["best_match"][i]
        if name.startswith("unknown ("):  # no entry fits: stays unknown (one class), its elements in points.csv
            continue
        if name not in names:
            names.append(name)
        labels[i] = names.index(name)
    phases = {name: name_summed(summed_spectrum(spectra[labels == k]), field.survey, field.library).report()
              for k, name in enumerate(names) if (labels == k).any()}  # fmt: skip
    return replace(points, labels=labels, names=tuple(names), phases=phases, matches=matches)
