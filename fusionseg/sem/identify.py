"""Mineral identification of measured spectra against reference spectra (a library).

Each measured spectrum x (counts per channel) is compared with every reference mean spectrum
m_k scaled to the same total counts, by the Poisson log-likelihood
``sum_c x_c log m_kc - m_kc`` — the exact noise model of photon counting. The posterior over
library entries (uniform prior) gives a confidence; a spectrum whose best match still fits
badly (deviance per count above ``max_deviance``) is labelled unknown.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fusionseg.errors import FusionSegError
from fusionseg.registry import POINT_LABELLERS
from fusionseg.sample import IGNORE_INDEX, Sample
from fusionseg.sem.meta import EnergyAxis, SemMeta
from fusionseg.sem.spectrum import hellinger, principal_axes

UNKNOWN = IGNORE_INDEX


@dataclass
class Identification:
    """labels (N,) library index or ``UNKNOWN``; confidence (N,) posterior of the best match;
    deviance (N,) Poisson deviance per count of the best match (0 = perfect fit)."""

    labels: Tensor
    confidence: Tensor
    deviance: Tensor


def poisson_log_likelihood(
    spectra: Tensor, references: Tensor, eps: float = 1e-9, dtype: torch.dtype = torch.float64
) -> Tensor:
    """(N, K) log-likelihood of each spectrum (N, C) under each reference shape (K, C).

    References are rescaled per spectrum to its total counts; constant terms (log x!) dropped.
    ``dtype`` float32 halves the memory traffic (the encoder's choice: LL differences between
    minerals are tens to thousands, float32 rounding of ~1e4-sized sums is ~1e-3).
    """
    x = spectra.to(dtype)
    ref = references.to(dtype).clamp(min=0)
    shape = ref / ref.sum(1, keepdim=True).clamp(min=eps)
    totals = x.sum(1, keepdim=True)
    # sum_c x_c log(t * s_kc) - t * s_kc  ==  x @ log(s).T + totals * log(t) - t   (sum_c s_kc = 1)
    return x @ (shape + eps).log().T + totals * totals.clamp(min=eps).log() - totals


def saturated_fit(
    spectra: Tensor, dtype: torch.dtype = torch.float64, overwrite: bool = False
) -> tuple[Tensor, Tensor]:
    """(N,) log-likelihood of the perfect model of each spectrum (N, C) (constants dropped as in
    `poisson_log_likelihood`) and (N,) its total counts: what `deviance_per_count` compares a match with.
    ``overwrite``: ``spectra`` (already ``dtype``) may be overwritten (no temporary of its size)."""
    x = spectra.to(dtype)
    total = x.sum(1)
    return (x.xlogy_(x) if overwrite else torch.xlogy(x, x)).sum(1) - total, total


def deviance_per_count(
    spectra: Tensor,
    log_likelihood: Tensor,
    dtype: torch.dtype = torch.float64,
    saturated: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """Poisson deviance per count (N,) of a match whose log-likelihood (N,) came from `poisson_log_likelihood`.

    2 (LL of the perfect model - LL of the match) / total counts; 0 is a perfect fit. ``saturated``: the spectra's
    `saturated_fit`, when already computed (one pass over the spectra saved).
    """
    perfect, total = saturated_fit(spectra, dtype) if saturated is None else saturated
    return 2 * (perfect - log_likelihood.to(dtype)) / total.clamp(min=1)


def identify_spectra(
    spectra: Tensor,
    references: Tensor,
    max_deviance: float | None = None,
    allowed: Tensor | None = None,
    saturated: tuple[Tensor, Tensor] | None = None,
) -> Identification:
    """Best-matching reference per spectrum, its posterior and fit quality.

    Args:
        spectra: (N, C) measured counts.
        references: (K, C) expected spectra (any scale), e.g. `reference_spectra(...)`.
        max_deviance: Poisson deviance per count above which a match is ``UNKNOWN``.
        allowed: optional (K,) bool mask of library entries to consider.
        saturated: the spectra's `saturated_fit` (float64), when already computed.
    """
    if spectra.dim() != 2 or references.dim() != 2 or spectra.shape[1] != references.shape[1]:
        raise ValueError(
            f"spectra {tuple(spectra.shape)} and references {tuple(references.shape)} must share the channel "
            "axis; simulate the references on the measured file's calibration."
        )
    ll = torch.cat([poisson_log_likelihood(x, references) for _, x in float64_chunks(spectra)])
    if allowed is not None:
        ll = ll.masked_fill(~allowed.to(ll.device)[None], float("-inf"))
    post = ll.softmax(1)
    conf, labels = post.max(1)
    best = ll.gather(1, labels[:, None]).squeeze(1)
    deviance = deviance_per_count(spectra, best, saturated=saturated or saturated_fits(spectra))
    if max_deviance is not None:
        labels = labels.masked_fill(deviance > max_deviance, UNKNOWN)
    return Identification(labels=labels, confidence=conf.float(), deviance=deviance.float())


def saturated_fits(spectra: Tensor) -> tuple[Tensor, Tensor]:
    """`saturated_fit` of spectra (N, C) in float64, converted `CHUNK_SPECTRA` rows at a time."""
    parts = [saturated_fit(x, overwrite=True) for _, x in float64_chunks(spectra)]
    return torch.cat([p for p, _ in parts]), torch.cat([t for _, t in parts])


CHUNK_SPECTRA = 4096
"""Spectra converted to float64 at once (identification, clustering): bounds the copies of a large map."""


def float64_chunks(spectra: Tensor) -> Iterator[tuple[slice, Tensor]]:
    """(rows, ``spectra[rows]`` in float64) for each `CHUNK_SPECTRA` rows (at least one slice, possibly empty),
    converted into one reused buffer (overwritten by the next chunk: use it before asking for the next). A fresh
    67 MB temporary per chunk costs the kernel a page fault and a zeroed page every 4 kB, more than the arithmetic
    (`label_points` at 2048²: 3.5 s)."""
    n = len(spectra)
    buffer = torch.empty(min(n, CHUNK_SPECTRA), spectra.shape[1], dtype=torch.float64)
    for start in range(0, max(n, 1), CHUNK_SPECTRA):
        rows = slice(start, min(start + CHUNK_SPECTRA, n))
        yield rows, buffer[: rows.stop - rows.start].copy_(spectra[rows])


def count_totals(spectra: Tensor) -> Tensor:
    """(N,) total counts of spectra (N, C). int16 counts (`fusionseg.sample.compact_counts`) are summed by NumPy
    into int64, a block at a time: torch would first widen the whole array to int64 (4x its memory)."""
    if spectra.is_floating_point():
        return spectra.sum(1)
    return torch.from_numpy(spectra.cpu().numpy().sum(1, dtype=np.int64))


def void_points(spectra: Tensor, fraction: float = 0.1) -> Tensor:
    """(N,) bool: spectra with under ``fraction`` x the median total counts: the beam hit a pore or crack.

    No material, no X-rays: such a point is void (a pore), not an unidentifiable mineral.
    """
    totals = count_totals(spectra)
    if totals.numel() == 0:
        return totals.bool()
    return totals < fraction * totals.median()


def mark_voids(labels: Tensor, spectra: Tensor, class_names: tuple[str, ...] | list[str]) -> Tensor:
    """``labels`` with `void_points` set to the library's void class (a pore), when ``class_names`` has one."""
    void = void_class(class_names)
    return labels if void is None else labels.masked_fill(void_points(spectra), void)


def void_class(class_names: tuple[str, ...] | list[str]) -> int | None:
    """Index of the first void entry (a pore) among ``class_names`` of the mineral library, or None."""
    from fusionseg.sem.minerals import SimulationError, get_mineral

    for k, name in enumerate(class_names):
        try:
            if get_mineral(name).is_void:
                return k
        except SimulationError:  # a name outside the library (e.g. a cluster) is not void
            continue
    return None


def library_references(
    class_names: tuple[str, ...] | list[str],
    energy_axis: EnergyAxis,
    beam_energy_kev: float = 20.0,
    fwhm_mn_ka_ev: float = 130.0,
) -> tuple[Tensor, Tensor]:
    """References (K, C) simulated at a file's calibration, and a (K,) mask of entries that emit X-rays.

    Void classes (pores) have no spectrum of their own and cannot be identified from one.
    """
    from fusionseg.sem.minerals import get_mineral
    from fusionseg.sem.physics import reference_spectra

    minerals = [get_mineral(name) for name in class_names]
    usable = torch.tensor([not m.is_void for m in minerals])
    refs = torch.zeros(len(minerals), energy_axis.size, dtype=torch.float64)
    chosen = [m for m, ok in zip(minerals, usable.tolist(), strict=True) if ok]
    refs[usable] = torch.from_numpy(reference_spectra(chosen, energy_axis, beam_energy_kev, fwhm_mn_ka_ev))
    return refs, usable


def best_library_labels(
    spectra: Tensor, class_names: tuple[str, ...] | list[str], energy_axis: EnergyAxis, beam_energy_kev: float = 20.0
) -> Tensor:
    """(N,) index into ``class_names`` of each spectrum's best library match (no threshold); pores by counts.

    The labels an instrument gives its measured points, without the truth: what evaluation should
    give a model that restricts its predictions to the minerals found among the points.
    """
    refs, usable = library_references(class_names, energy_axis, beam_energy_kev)
    return mark_voids(identify_spectra(spectra, refs, allowed=usable).labels, spectra, class_names)


# ----------------------------------------------------------------------------- point labelling
# (added for `fusionseg segment`: confidence threshold, "unknown", unsupervised clustering)
UNKNOWN_NAME = "unknown"
LOW_COUNT_NAME = "low counts (pore?)"
N_COMPONENTS = 8  # principal components of the Hellinger spectra that clustering reads


class IdentificationError(FusionSegError):
    """Spectra cannot be labelled (too few, empty); the message names the problem and the fix."""


@dataclass
class PointLabels:
    """labels (N,) index into ``names`` (``UNKNOWN`` = unidentified); confidence (N,) in [0, 1];
    mode ``"library"`` (mineral names) or ``"clusters"`` (``cluster-0``, ... from unsupervised clustering)."""

    labels: Tensor
    names: tuple[str, ...]
    confidence: Tensor
    mode: str
    clustering: dict[str, Any] | None = None  # `Clustering.report` (mode "clusters")
    phases: dict[str, dict[str, Any]] | None = None  # name -> `PhaseName.report` (identified from summed spectra)
    matches: dict[str, list] | None = None  # per point: best_match, best_score, second_match, second_score

    def counts(self) -> dict[str, int]:
        """Points per name (unknown included)."""
        lab = self.labels
        out = {name: int((lab == k).sum()) for k, name in enumerate(self.names)}
        if (lab == UNKNOWN).any():
            out[UNKNOWN_NAME] = int((lab == UNKNOWN).sum())
        return {k: v for k, v in out.items() if v}


def spectrum_features(spectra: Tensor, n_components: int = 8, max_fit: int = 3000, fit: Tensor | None = None) -> Tensor:
    """(N, n_components) principal components of Hellinger-transformed spectra (sqrt of count fractions).

    The square root stabilises Poisson variance, so Euclidean distances suit k-means (float64).
    Components are fitted on at most ``max_fit`` spectra (evenly spaced; among the ``fit`` rows when given, a
    (N,) bool mask), then every spectrum is projected.
    """
    rows = torch.arange(len(spectra)) if fit is None else torch.nonzero(fit).squeeze(1)
    rows = rows[:: max(1, len(rows) // max_fit)]  # indices first: never a copy of every spectrum
    mean, components, _ = principal_axes(hellinger(spectra[rows]), n_components)
    return torch.cat([hellinger(x, overwrite=True).sub_(mean) @ components.T for _, x in float64_chunks(spectra)])


def silhouette(features: Tensor, labels: Tensor) -> float:
    """Mean silhouette width (Rousseeuw 1987); hand-written because scikit-learn is not a dependency."""
    d = torch.cdist(features, features)
    k = int(labels.max()) + 1
    onehot = torch.nn.functional.one_hot(labels, k).double()
    size = onehot.sum(0)
    mean_to = d @ onehot / size.clamp(min=1)  # (N, K) mean distance to each cluster
    own = labels[:, None]
    a = mean_to.gather(1, own).squeeze(1) * size[labels] / (size[labels] - 1).clamp(min=1)
    b = mean_to.scatter(1, own, float("inf")).masked_fill(size[None] == 0, float("inf")).min(1).values
    s = (b - a) / torch.maximum(a, b).clamp(min=1e-12)
    return float(s.masked_fill(size[labels] <= 1, 0).mean())


@dataclass
class Clustering:
    """labels (N,) cluster per spectrum, ids by decreasing size; ``silhouettes``: mean silhouette width per k
    tried (empty when k was given); ``low_counts``: id of the low-count cluster (kept out of the fit), or None."""

    labels: Tensor
    silhouettes: dict[int, float]
    chosen_by: str  # how k was chosen, in words
    low_counts: int | None = None

    def report(self, n_components: int) -> dict[str, Any]:
        """What an analyst needs to judge the clusters (``summary.json``'s ``clustering``)."""
        k = int(self.labels.max()) + 1 - (self.low_counts is not None)
        return {
            "clusters": k,
            "chosen_by": self.chosen_by,
            "silhouette_by_k": {str(n): round(v, 4) for n, v in self.silhouettes.items()},
            "features": f"Hellinger (square root of count fractions), {n_components} principal components",
            "low_count_spectra": 0 if self.low_counts is None else int((self.labels == self.low_counts).sum()),
            "low_count_rule": f"under {LOW_COUNT_SHARE:g} x the median total counts: kept out of the fit, own class",
        }


LOW_COUNT_SHARE = 0.1
"""Spectra with under this share of the median total counts (a pore, a crack: `void_points`) are kept out of the
clustering: their composition is noise, and they form a class of their own."""


def cluster_points(
    spectra: Tensor,
    n_clusters: int | None = None,
    max_clusters: int = 10,
    seed: int = 0,
    n_components: int = N_COMPONENTS,
) -> Clustering:
    """Unsupervised phase labels of spectra (N, C): k-means (scipy ``kmeans2``, k-means++) on Hellinger PCA.

    Low-count spectra (`void_points`) are kept out of the fit and labelled as one extra cluster, the last id.
    ``n_clusters=None`` picks k in 2..max_clusters by the best mean silhouette (on at most 2000 spectra).
    Cluster ids are ordered by decreasing size.
    """
    n = len(spectra)
    if n < 2:
        raise IdentificationError(f"clustering needs at least 2 spectra, got {n}; measure more points.")
    low = void_points(spectra, LOW_COUNT_SHARE)
    if int((~low).sum()) < 2:
        low[:] = False
    feats = spectrum_features(spectra, n_components, fit=~low)
    return _kmeans(feats, low, n_clusters, max_clusters, seed)


def _kmeans(feats: Tensor, low: Tensor, n_clusters: int | None, max_clusters: int, seed: int) -> Clustering:
    """k-means of the rows of ``feats`` outside ``low``; the ``low`` rows form the last cluster. The silhouette that
    picks k scores every row, the low-count cluster included (it is part of the partition the user gets)."""
    from scipy.cluster.vq import kmeans2

    fitted = feats[~low]
    n = len(fitted)
    sub = torch.randperm(len(feats), generator=torch.Generator().manual_seed(seed))[:2000]

    def run(k: int) -> Tensor:  # (N,) labels: k-means ids by decreasing size, the low-count rows k
        _, lab = kmeans2(fitted.numpy(), k, seed=seed, minit="++")
        lab = torch.from_numpy(lab).long()
        order = torch.argsort(torch.bincount(lab, minlength=k), descending=True)
        return torch.full((len(feats),), k, dtype=torch.long).masked_scatter(~low, torch.argsort(order)[lab])

    def result(labels: Tensor, silhouettes: dict[int, float], how: str) -> Clustering:
        k = int(labels[~low].max()) + 1
        labels = labels.masked_fill(low, k)
        return Clustering(labels, silhouettes, how, k if low.any() else None)

    if float((fitted - fitted.mean(0)).abs().max()) < 1e-9:  # identical spectra: one cluster, whatever k asks
        return result(torch.zeros(len(feats), dtype=torch.long), {}, "identical spectra: one cluster")
    if n_clusters is not None:
        if not 1 <= n_clusters <= n:
            raise IdentificationError(f"n_clusters must be in 1..{n} (the number of spectra), got {n_clusters}.")
        return result(run(n_clusters), {}, "given (--n-clusters)")
    ks = range(2, min(max_clusters, n - 1) + 1)
    if not ks:
        return result(torch.zeros(len(feats), dtype=torch.long), {}, f"{n} spectra: too few to compare k")
    fits = {k: run(k) for k in ks}
    silhouettes = {k: silhouette(feats[sub], fits[k][sub]) if fits[k][sub].unique().numel() > 1 else -1.0
                   for k in ks}  # fmt: skip
    return result(fits[max(ks, key=silhouettes.__getitem__)], silhouettes, "best mean silhouette width")


def cluster_references(spectra: Tensor, labels: Tensor) -> Tensor:
    """(K, C) summed spectra of each cluster (a data-driven reference per phase)."""
    out = torch.zeros(int(labels.max()) + 1, spectra.shape[1], dtype=torch.float64)
    for rows, x in float64_chunks(spectra):
        out.index_add_(0, labels[rows], x)
    return out


def label_points(
    spectra: Tensor,
    energy_axis: EnergyAxis,
    beam_energy_kev: float = 20.0,
    mode: str = "auto",
    class_names: tuple[str, ...] | list[str] | None = None,
    min_confidence: float = 0.9,
    max_deviance_ratio: float = 3.0,
    min_identified: float = 0.5,
    n_clusters: int | None = None,
    seed: int = 0,
) -> PointLabels:
    """Label measured spectra (N, C) counts by the mineral library, or by clustering when no mineral fits.

    A library match counts when its posterior is at least ``min_confidence`` and its Poisson deviance is
    at most ``max_deviance_ratio`` x the deviance of the spectrum's own cluster mean (a scale-free test:
    real spectra never fit simulated references perfectly, but a right mineral fits about as well as the
    field's own average spectrum of that phase). Other points are ``UNKNOWN``. ``mode="auto"`` uses the
    library when at least ``min_identified`` of the points match, else clusters (``cluster-0``, ...).
    """
    if mode not in ("auto", "library", "clusters"):
        raise IdentificationError(f"mode must be 'auto', 'library' or 'clusters', got {mode!r}.")
    if len(spectra) < 2:
        raise IdentificationError(f"only {len(spectra)} measured spectra; measure at least 2 points (more is better).")
    clustering = cluster_points(spectra, n_clusters=n_clusters, seed=seed)
    clusters = clustering.labels
    if mode != "clusters":
        lib = _library_labels(spectra, energy_axis, beam_energy_kev, class_names, clusters, min_confidence,
                              max_deviance_ratio)  # fmt: skip
        if mode == "library" or (lib.labels != UNKNOWN).float().mean() >= min_identified:
            return lib
    own = identify_spectra(spectra, cluster_references(spectra, clusters))
    ids = range(int(clusters.max()) + 1)
    names = tuple(LOW_COUNT_NAME if k == clustering.low_counts else f"cluster-{k}" for k in ids)
    return PointLabels(clusters, names, own.confidence, "clusters", clustering.report(N_COMPONENTS))


def _library_labels(
    spectra: Tensor,
    energy_axis: EnergyAxis,
    beam_energy_kev: float,
    class_names: tuple[str, ...] | list[str] | None,
    clusters: Tensor,
    min_confidence: float,
    max_deviance_ratio: float,
) -> PointLabels:
    """Library identification with the confidence and fit-quality thresholds; names = minerals found."""
    from fusionseg.sem.minerals import class_names as library_names

    names = tuple(class_names or library_names())
    refs, usable = library_references(names, energy_axis, beam_energy_kev)
    saturated = saturated_fits(spectra)  # shared by both identifications
    ident = identify_spectra(spectra, refs, allowed=usable, saturated=saturated)
    own = identify_spectra(spectra, cluster_references(spectra, clusters), saturated=saturated).deviance
    ok = (ident.confidence >= min_confidence) & (ident.deviance <= max_deviance_ratio * own.clamp(min=1e-6))
    labels = ident.labels.masked_fill(~ok, UNKNOWN)
    labels = mark_voids(labels, spectra, names)  # almost no counts: a pore, whatever the noise resembles
    found = torch.unique(labels[labels != UNKNOWN])
    remap = torch.full((len(names),), UNKNOWN, dtype=torch.long)
    remap[found] = torch.arange(len(found))
    compact = torch.where(labels == UNKNOWN, labels, remap[labels.clamp(min=0)])
    return PointLabels(compact, tuple(names[i] for i in found.tolist()), ident.confidence, "library")


@POINT_LABELLERS.register("identified")
def with_identified_point_labels(sample: Sample) -> Sample:
    """``sample`` whose point labels are the library identification of its spectra, not the source's labels.

    What a model sees on a real instrument: evaluation with the simulator's true point labels would
    let "only minerals found among the points" use knowledge no user has. The ``identified`` point
    labeller (``data.point_labels: identified``).
    """
    sem = sample.meta.domain
    if not isinstance(sem, SemMeta) or sem.energy_axis is None or sem.encoded:
        raise FusionSegError(
            f"data.point_labels='identified' needs raw spectra with an energy axis, but field {sample.meta.name!r} "
            "has none; set data.point_labels=given when the source's point labels are measured (another domain)."
        )
    labels = best_library_labels(sample.point_features, sample.meta.class_names, sem.energy_axis, sem.beam_energy_kev)
    return replace(sample, point_target=labels)
