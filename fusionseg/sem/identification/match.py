"""Composition -> mineral: the library candidate nearest a measured composition, in standard deviations.

Compared are the cation fractions (elements from Na up, renormalised among themselves, shrunk to 0 when
they carry under 10 % of the line counts: carbon, epoxy) and the presence of C, O and F, which a
standardless analysis quantifies poorly (0 absent, 1 at 10 wt % or more); La, Ce and Nd count as one.
Each has a tolerance that does not shrink with counts: counting error + a relative error (18 % above
1.6 keV, 20 % below) + an absolute floor; so a 50,000-count spectrum is judged like a 1,000-count one,
and the score (mean chi-square per element present) grows with a real difference, not with the counts.
Above `MAX_SCORE` no library entry fits: "unknown (Ca-Fe-Si-O)". Entries these features cannot tell apart
(magnetite and hematite differ only in O; corundum and gibbsite only in H) are *twins*, named together
("magnetite/hematite"), as automated mineralogy reports "Fe oxides": a choice between them would be a coin toss.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from torch import Tensor

from fusionseg.sem.identification.library import Library
from fusionseg.sem.identification.quantify import Composition

LIGHT = {"C": 0.6, "O": 0.35, "F": 0.35}  # light elements: tolerance of their presence (0 absent .. 1 present)
LIGHT_SATURATION = 0.1  # a light element at or above this weight fraction counts as fully present
RELATIVE_HIGH, RELATIVE_LOW, LOW_LINE_EV = 0.18, 0.2, 1600.0
UNMEASURED_VARIANCE = 1e6  # an element whose lines the detector barely records (O behind Be) is not compared
FLOOR = 0.04  # absolute tolerance of a cation fraction (bench_identify.validate_tolerances)
PRESENT = 0.02  # an element counts as present in a comparison above this fraction
CHUNK = 8192  # spectra compared at once
MAX_SCORE = 3.0  # mean chi-square per element present above which nothing fits (bench_identify.validate_tolerances)
TWIN_SCORE = 0.01  # entries of different series closer than this (mean chi-square per element) look alike to EDS
HEAVY_SHARE = 0.1  # net line counts of the elements from Na up under this share: cations count for less (carbon)


@dataclass
class Matches:
    """Per spectrum: ``best`` (N,) entry index or -1 (nothing fits), ``score`` (N,) its mean chi-square,
    ``second`` / ``second_score`` the best other entry, ``confidence`` (N,) the posterior of the best entry."""

    best: Tensor
    score: Tensor
    second: Tensor
    second_score: Tensor
    confidence: Tensor


def features(
    fractions: Tensor, sigma: Tensor | None, elements: tuple[str, ...], heavy_share: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """(N, E) comparison features and their variances: cation fractions (renormalised among the elements from Na
    up, shrunk when those carry under `HEAVY_SHARE` of the lines: carbon, epoxy) and the presence of C, O, F
    (their fraction over `LIGHT_SATURATION`, at most 1: a standardless O is off by up to 2x, its presence is not).
    ``heavy_share``: measured share of net counts in cations; library rows pass None (their weight share)."""
    fractions, sigma = _grouped(fractions, elements), None if sigma is None else _grouped(sigma, elements)
    light = torch.tensor([el in LIGHT for el in elements])
    cations = (fractions * ~light).sum(1, keepdim=True)
    share = cations if heavy_share is None else heavy_share.to(fractions.dtype)[:, None]
    scale = (share / HEAVY_SHARE).clamp(max=1) / cations.clamp(min=1e-9)
    presence = (fractions / LIGHT_SATURATION).clamp(max=1)
    feats = torch.where(light, presence, fractions * scale)
    rel, floor = _tolerances(elements)
    stat = torch.zeros_like(fractions) if sigma is None else torch.where(light, sigma / LIGHT_SATURATION, sigma * scale)
    var = stat**2 + (torch.where(light, 0.0, rel) * feats) ** 2 + floor**2
    return feats, var


REE_GROUP = ("La", "Ce", "Nd")  # compared as one: their L lines overlap, their ratios vary from deposit to deposit


def _grouped(values: Tensor, elements: tuple[str, ...]) -> Tensor:
    """``values`` (N, E) with the `REE_GROUP` summed into its first member (a monazite is a monazite at any La/Ce)."""
    cols = [elements.index(el) for el in REE_GROUP if el in elements]
    if len(cols) < 2:
        return values
    out = values.clone()
    out[:, cols[0]] = values[:, cols].sum(1)
    out[:, cols[1:]] = 0
    return out


@cache
def _tolerances(elements: tuple[str, ...]) -> tuple[Tensor, Tensor]:
    """(E,) relative and absolute tolerances: `RELATIVE_LOW` for lines under `LOW_LINE_EV`, `FLOOR` or `LIGHT`."""
    from fusionseg.sem.identification.lines import families

    line_ev = []
    for el in elements:
        fams = families([el], 20.0, 0.0, 1e9)
        line_ev.append(max(f.main_ev for f in fams) if fams else 0.0)
    rel = torch.where(torch.tensor(line_ev) < LOW_LINE_EV, RELATIVE_LOW, RELATIVE_HIGH)
    return rel, torch.tensor([LIGHT.get(el, FLOOR) for el in elements])


@dataclass(frozen=True)
class Twins:
    """Per library entry (K_entries,): ``representative`` the entry its twin group is ranked and reported as, and
    ``label`` the group's name: its members of the lowest abundance penalty, joined by '/' in library order
    (a rare twin of a common mineral is not named: the common one is the likelier)."""

    representative: np.ndarray
    label: tuple[str, ...]


@cache
def twins(library: Library, unseen: tuple[str, ...] = ()) -> Twins:
    """Twin groups of ``library``: entries of different series whose features (`features`) differ by under
    `TWIN_SCORE` in mean chi-square per element present, grouped transitively; ``unseen`` elements (the detector
    barely records them: O behind a Be window) left out, so that quartz and silicon are twins there."""
    k = len(library.entries)
    feats, var = features(torch.from_numpy(library.compositions[:k]), None, library.elements)
    if unseen:
        feats = feats.clone()
        feats[:, [library.elements.index(el) for el in unseen]] = 0.0
    present = (feats > PRESENT).double()
    chi2 = ((feats[:, None] - feats[None]) ** 2 / (var[:, None] + var[None])).sum(2)
    union = present.sum(1)[:, None] + present.sum(1)[None] - present @ present.T
    close = (chi2 / union.clamp(min=1) < TWIN_SCORE).numpy()
    series = [e.series for e in library.entries]
    parent = list(range(k))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i, j in zip(*np.nonzero(np.triu(close, 1)), strict=True):
        if not (series[i] and series[i] == series[j]):  # a join is matched along, not named as twins
            parent[root(int(j))] = root(int(i))
    groups: dict[int, list[int]] = {}
    for i in range(k):
        groups.setdefault(root(i), []).append(i)
    penalty = library.prior()[:k]
    representative, label = np.arange(k), [e.name for e in library.entries]
    for members in groups.values():
        lowest = min(penalty[i] for i in members)
        named = [i for i in members if penalty[i] == lowest]
        for i in members:
            representative[i], label[i] = named[0], "/".join(library.entries[j].name for j in named)
    return Twins(representative, tuple(label))


@cache
def _library_features(library: Library) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The library's comparison features (K, E) in float32, their squares, presence and ranking prior."""
    feats, _ = features(torch.from_numpy(library.compositions), None, library.elements)
    feats = feats.float()
    return feats, feats**2, (feats > PRESENT).float(), torch.from_numpy(library.prior()).float()


def match(composition: Composition, library: Library) -> Matches:
    """Best library entries for each measured composition (elements mapped onto the library's)."""
    n = len(composition.fractions)
    index = [library.elements.index(el) for el in composition.elements]
    frac = torch.zeros(n, len(library.elements), dtype=torch.float64)
    sig = torch.zeros_like(frac)
    frac[:, index], sig[:, index] = composition.fractions.double(), composition.sigma.double()
    m, v = features(frac, sig, library.elements, composition.heavy_share)
    if composition.unmeasured:
        v[:, [library.elements.index(el) for el in composition.unmeasured]] = UNMEASURED_VARIANCE
    lib, lib_sq, lib_present, prior = _library_features(library)
    if composition.unmeasured:
        lib_present = lib_present.clone()
        lib_present[:, [library.elements.index(el) for el in composition.unmeasured]] = 0
    groups = twins(library, composition.unmeasured)
    entry = torch.from_numpy(groups.representative[library.entry])  # twins ranked as one
    parts = []
    for start in range(0, n, CHUNK):  # (chunk, K) float32 matrices: bounded memory at any N
        mc, inv = m[start : start + CHUNK].float(), 1.0 / v[start : start + CHUNK].float()
        chi2 = (mc**2 * inv).sum(1, keepdim=True) - 2 * (mc * inv) @ lib.T + inv @ lib_sq.T  # (n, K)
        pm = (mc > PRESENT).float()
        present = pm.sum(1, keepdim=True) + lib_present.sum(1)[None] - pm @ lib_present.T
        parts.append(_best_two(chi2.clamp(min=0) / present.clamp(min=1), prior, entry))
    return Matches(*(torch.cat([getattr(p, f) for p in parts]) for f in
                     ("best", "score", "second", "second_score", "confidence")))  # fmt: skip


def _best_two(score: Tensor, prior: Tensor, entry: Tensor) -> Matches:
    """Best and second-best distinct entries per row, ranked by score + prior (`Library.prior`); the best's
    posterior (softmax of -score/2 over entries, prior included) as its confidence; above `MAX_SCORE`: -1."""
    n_entries = int(entry.max()) + 1
    ranked = score + prior[None]
    per_entry = torch.full((len(score), n_entries), float("inf"), dtype=score.dtype)
    per_entry.scatter_reduce_(1, entry.expand_as(score), ranked, reduce="amin")
    raw = torch.full_like(per_entry, float("inf")).scatter_reduce_(1, entry.expand_as(score), score, reduce="amin")
    top = torch.topk(-per_entry, k=min(2, n_entries), dim=1)
    best, second = top.indices[:, 0], top.indices[:, -1]
    best_score, second_score = raw.gather(1, best[:, None])[:, 0], raw.gather(1, second[:, None])[:, 0]
    confidence = torch.softmax(-0.5 * per_entry, dim=1).gather(1, best[:, None])[:, 0]
    best = torch.where(best_score <= MAX_SCORE, best, torch.full_like(best, -1))
    return Matches(best, best_score.float(), second, second_score.float(), confidence.float())


def unknown_name(fractions: np.ndarray, elements: tuple[str, ...], min_fraction: float = 0.03) -> str:
    """'unknown (Ca-Fe-Si-O)': the elements above ``min_fraction`` (weight) by decreasing abundance."""
    order = np.argsort(-np.asarray(fractions))
    found = [elements[i] for i in order if fractions[i] >= min_fraction][:6]
    return f"unknown ({'-'.join(found) or 'no lines'})"
