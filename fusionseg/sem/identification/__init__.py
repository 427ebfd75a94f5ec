"""Naming measured spectra by composition, on any detector, beam energy and count level.

The stages, each its own module: `lines` (X-ray line families, xraydb), `calibrate` (what a summed spectrum
tells: elements, calibration, FWHM), `fit` (net line counts of every spectrum at once), `quantify`
(standardless weight fractions), `library` (~250 materials and their solid-solution joins) and `match`
(composition -> library entry, or "unknown (elements)"). `identify` runs them in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from fusionseg.errors import FusionSegError
from fusionseg.sem.identification.calibrate import (
    MIN_DELTA_CHI2,
    Survey,
    continuum_efficiency,
    detect_elements,
    fit_one,
    survey,
)
from fusionseg.sem.identification.fit import Instrument, LineModel, fit_lines, poisson_weights
from fusionseg.sem.identification.library import Library, load_library
from fusionseg.sem.identification.lines import CANDIDATE_ELEMENTS, families
from fusionseg.sem.identification.match import Matches, match, twins, unknown_name
from fusionseg.sem.identification.quantify import Composition, FieldEfficiency, quantify
from fusionseg.sem.meta import EnergyAxis

MIN_RANGE_EV = 1500.0  # fitted range an identification needs at least (e.g. 0.15-1.65 keV: C K to Si K)


class IdentificationInputError(FusionSegError):
    """Spectra that cannot be identified as given; the message names what is missing and the fix."""


__all__ = [
    "Identified",
    "IdentificationInputError",
    "identify",
    "name_summed",
    "PhaseName",
    "check_inputs",
    "summed_spectrum",
    "load_library",
    "Survey",
    "Instrument",
]


@dataclass
class Identified:
    """Identification of N spectra: the field's survey, each spectrum's composition and library matches."""

    survey: Survey
    composition: Composition
    matches: Matches
    library: Library

    def name(self, row: int) -> str:
        """The entry name of spectrum ``row``, or 'unknown (elements)' when nothing fits."""
        best = int(self.matches.best[row])
        if best >= 0:
            return twins(self.library, self.composition.unmeasured).label[best]
        return unknown_name(self.fractions(row), self.composition.elements)

    def names(self) -> list[str]:
        """`name` of every spectrum."""
        return [self.name(i) for i in range(len(self.matches.best))]

    def fractions(self, row: int) -> np.ndarray:
        return self.composition.fractions[row].double().numpy()


def check_inputs(spectra: Tensor, axis: EnergyAxis | None, beam_kev: float | None) -> None:
    """Refuse, before any work, spectra without a calibration, an axis too short to hold the lines, or a beam
    that excites none."""
    if axis is None:
        raise IdentificationInputError(
            "the spectra have no energy calibration; give the file's EnergyAxis(size, scale_ev, offset_ev) (its "
            "channel width and the energy of channel 0), e.g. from the acquisition software's export."
        )
    if spectra.dim() != 2 or spectra.shape[1] != axis.size:
        raise IdentificationInputError(
            f"spectra of shape {tuple(spectra.shape)} do not match the energy axis of {axis.size} channels; pass the "
            "axis the spectra were recorded on."
        )
    if beam_kev is None or not np.isfinite(beam_kev) or beam_kev <= 0:
        raise IdentificationInputError(f"beam energy {beam_kev!r} keV is not a beam energy; give the SEM's (5-30 kV).")
    lo, hi = Instrument(axis, float(beam_kev)).fit_range()
    if hi - lo < MIN_RANGE_EV:
        raise IdentificationInputError(
            f"the energy axis and beam leave {lo / 1000:.2f}-{hi / 1000:.2f} keV to fit, under the "
            f"{MIN_RANGE_EV / 1000:.1f} keV needed for the K lines of C to Si; check the calibration (channel width "
            f"{axis.scale_ev} eV, offset {axis.offset_ev} eV) and the beam energy ({beam_kev} keV: lines above it "
            "are not excited)."
        )


def summed_spectrum(spectra: Tensor) -> np.ndarray:
    """(C,) float64 sum of spectra (N, C) of any dtype: `identify.cluster_references` with one cluster (a block at
    a time, no float copy of them all)."""
    from fusionseg.sem.identify import cluster_references

    if len(spectra) == 0:
        return np.zeros(spectra.shape[1])
    return cluster_references(spectra, torch.zeros(len(spectra), dtype=torch.long))[0].numpy()


def identify(
    spectra: Tensor,
    axis: EnergyAxis,
    beam_kev: float,
    fwhm_mn_ev: float = 130.0,
    library: Library | None = None,
    field: Survey | None = None,
    refine: bool = True,
    rounds: int = 1,
) -> Identified:
    """Name every spectrum (N, C) by composition. ``field``: a survey made before (of a larger set of spectra);
    else the survey of these spectra's sum. Then ``rounds`` of phase refinement (`refine_by_phase`)."""
    check_inputs(spectra, axis, beam_kev)
    library = library or load_library()
    summed = summed_spectrum(spectra)
    field = field or survey(summed, Instrument(axis, float(beam_kev), float(fwhm_mn_ev)), refine=refine)
    first_rounds = FIRST_PASS_ROUNDS if rounds else ACTIVE_SET_ROUNDS  # unrefined, the first fit is the answer
    composition = _fit_and_quantify(spectra, field, field.elements, field.efficiency, summed, first_rounds)
    matches = match(composition, library)
    if not field.elements:  # no line stands out of the noise: nothing can be named
        matches.best[:] = -1
        return Identified(field, composition, matches, library)
    for _ in range(rounds):
        composition = refine_by_phase(spectra, field, matches, composition)
        matches = match(composition, library)
    return Identified(field, composition, matches, library)


FIRST_PASS_ROUNDS = 0  # active-set rounds of the field-wide first fit: it only groups the spectra into phases
ACTIVE_SET_ROUNDS = 12  # active-set rounds of a fit whose amplitudes are the answer (`fit.fit_lines`)
MIN_PHASE_COUNTS = 20_000.0  # a phase's summed spectrum needs this many counts for its own efficiency T(E)
MIN_DETECT_COUNTS = 1000.0  # ... and this many to find its own elements (bench_identify.validate_detect_counts)


def refine_by_phase(spectra: Tensor, field: Survey, matches: Matches, composition: Composition) -> Composition:
    """Compositions re-measured phase by phase: the spectra matched to one entry (or one unknown element set) are
    summed; the sum gives that phase its own elements (the field's, tested again on the sum) and its own
    efficiency T(E) (its own matrix absorption); each spectrum is refitted with them. A spectrum thus never gets
    an element its phase does not show (Na from a Zn L residual), and its light lines are corrected for its own
    matrix. Phases whose sum has under `MIN_PHASE_COUNTS` keep the field's fit."""
    keys = _phase_keys(matches, composition)
    fractions, sigma = composition.fractions.clone(), composition.sigma.clone()
    share = composition.heavy_share.clone()
    for key in torch.unique(keys):
        rows = torch.nonzero(keys == key).squeeze(1)
        part = spectra.index_select(0, rows)
        summed = summed_spectrum(part)
        if summed.sum() < MIN_DETECT_COUNTS:
            continue
        phase = phase_survey(summed, field)
        comp = _fit_and_quantify(part, field, phase.elements, phase.efficiency, summed)
        index = [composition.elements.index(el) for el in comp.elements]
        fractions[rows], sigma[rows] = 0.0, 0.0
        fractions[rows[:, None], torch.tensor(index)[None]] = comp.fractions
        sigma[rows[:, None], torch.tensor(index)[None]] = comp.sigma
        share[rows] = comp.heavy_share
    return Composition(composition.elements, fractions, sigma, composition.net_counts, composition.unmeasured, share)


def phase_survey(spectrum: np.ndarray, field: Survey) -> Survey:
    """What one phase's summed spectrum (C,) tells on the field's calibration and resolution: its own elements (the
    field's, tested again on the sum) and, with at least `MIN_PHASE_COUNTS`, its own efficiency T(E) (its own
    matrix absorption); a smaller sum's continuum is too noisy to stand for it: the field's."""
    elements = detect_elements(spectrum, field.instrument, field.efficiency, field.elements)
    if not elements:
        return field
    elements = _with_partners(spectrum, field, elements)
    own = spectrum.sum() >= MIN_PHASE_COUNTS
    efficiency = continuum_efficiency(spectrum, field.instrument, elements) if own else field.efficiency
    return Survey(field.instrument, tuple(elements), efficiency)


def overlap_partners(inst: Instrument, elements: Sequence[str]) -> tuple[str, ...]:
    """Candidates not among ``elements`` with a line family within `PARTNER_EV` of one of theirs (Ba L for Ti K)."""
    lo, hi = inst.fit_range()
    found = [f.main_ev for f in families(elements, inst.beam_kev, lo, hi)]
    near = [f.element for f in families(CANDIDATE_ELEMENTS, inst.beam_kev, lo, hi)
            if f.element not in elements and any(abs(f.main_ev - e) <= PARTNER_EV for e in found)]  # fmt: skip
    return tuple(dict.fromkeys(near))


def _with_partners(spectrum: np.ndarray, field: Survey, elements: list[str]) -> list[str]:
    """``elements`` of a phase sum, with each `overlap_partners` whose lines the fit needs: adding it lowers the
    chi-square by `calibrate.MIN_DELTA_CHI2` x the reduced chi-square (an element the field sum explained away by
    an overlap, Ba L under Ti K, is found on a barite sum); then the set is tested again (Ti may go)."""
    inst, eff = field.instrument, field.efficiency
    fit, base = fit_one(spectrum, inst, elements, eff)
    n = len(fit.model.channels)
    gain = {p: (base - fit_one(spectrum, inst, [*elements, p], eff)[1]) * n for p in overlap_partners(inst, elements)}
    added = [p for p, g in gain.items() if g >= MIN_DELTA_CHI2 * max(base, 1.0)]
    if not added:
        return elements
    return detect_elements(spectrum, inst, eff, [*elements, *added]) or elements


PARTNER_EV = 60.0  # lines closer than this (eV) are not resolved at 120-170 eV FWHM


def _phase_keys(matches: Matches, composition: Composition) -> Tensor:
    """(N,) phase of each spectrum: its best entry, or for 'unknown' its two most abundant elements (as -1 - code)."""
    top = torch.topk(composition.fractions, k=min(2, composition.fractions.shape[1]), dim=1).indices
    code = top[:, 0] * len(composition.elements) + top[:, -1]
    return torch.where(matches.best >= 0, matches.best, -1 - code)


def _fit_and_quantify(
    spectra: Tensor,
    field: Survey,
    elements: tuple[str, ...] | list[str],
    efficiency: FieldEfficiency,
    summed: np.ndarray,
    max_rounds: int = ACTIVE_SET_ROUNDS,
) -> Composition:
    """Compositions of ``spectra`` fitted with ``elements`` on the field's instrument, quantified with ``efficiency``;
    columns: every candidate element (`lines.CANDIDATE_ELEMENTS`), 0 for those not fitted."""
    inst = field.instrument
    lo, hi = inst.fit_range()
    model = LineModel(families(elements, inst.beam_kev, lo, hi), inst, efficiency)
    fit = fit_lines(spectra, model, poisson_weights(summed / max(len(spectra), 1), model), max_rounds)
    comp = quantify(fit, efficiency)
    fractions = torch.zeros(len(spectra), len(CANDIDATE_ELEMENTS), dtype=comp.fractions.dtype)
    sigma = torch.zeros_like(fractions)
    columns = [CANDIDATE_ELEMENTS.index(el) for el in comp.elements]
    if columns:
        fractions[:, columns], sigma[:, columns] = comp.fractions, comp.sigma
    return Composition(CANDIDATE_ELEMENTS, fractions, sigma, comp.net_counts, comp.unmeasured, comp.heavy_share)


@dataclass
class PhaseName:
    """A summed spectrum named: ``name`` (library entry or 'unknown (elements)'), its formula and group, the match's
    mean chi-square per element ``score`` (0 perfect, `match.MAX_SCORE` the limit) and the runner-up; the measured
    composition (element -> (wt %, counting standard deviation wt %); O by stoichiometry where the phase holds
    oxygen, `quantify.oxygen_by_stoichiometry`) and the line families found."""

    name: str
    formula: str
    group: str
    score: float
    second: str
    second_score: float
    composition: dict[str, tuple[float, float]]
    lines: list[str]

    def report(self) -> dict:
        """Plain data for summary.json."""
        return {"mineral": self.name, "formula": self.formula, "group": self.group, "match_score": round(self.score, 2),
                "runner_up": self.second, "runner_up_score": round(self.second_score, 2),
                "composition_wt%": {el: [round(v, 1), round(s, 1)] for el, (v, s) in self.composition.items()},
                "lines": self.lines}  # fmt: skip


def name_summed(spectrum: np.ndarray, field: Survey, library: Library | None = None) -> PhaseName:
    """Name one summed spectrum (C,) (a cluster's, a grain's) measured with its `phase_survey` on the field's
    calibration and resolution."""
    x = torch.from_numpy(np.asarray(spectrum, dtype=np.float64))[None]
    phase = phase_survey(x[0].numpy(), field)
    elements = phase.elements
    ident = identify(x, field.instrument.axis, field.instrument.beam_kev, field.instrument.fwhm_mn_ev, library,
                     field=phase, rounds=0)  # fmt: skip
    lib, m = ident.library, ident.matches
    best, second = int(m.best[0]), int(m.second[0])
    entry = lib.entries[best] if best >= 0 else None
    comp = _reported_composition(ident.composition, entry.formula if entry else None)
    twin_formulas = " / ".join(lib.entries[lib.index(n)].formula for n in ident.name(0).split("/")) if entry else ""
    lo, hi = field.instrument.fit_range()
    lines = [f.label for f in families(elements, field.instrument.beam_kev, lo, hi)]
    runner_up = twins(lib, ident.composition.unmeasured).label[second]
    return PhaseName(ident.name(0), twin_formulas, entry.group if entry else "", float(m.score[0]),
                     runner_up, float(m.second_score[0]), comp, lines)  # fmt: skip


def _reported_composition(composition: Composition, formula: str | None) -> dict[str, tuple[float, float]]:
    """Element -> (wt %, sd wt %) of the first row, largest first: O by stoichiometry when the phase holds oxygen
    (its formula has O, or it is unknown and O was measured), C kept only when the formula has C."""
    from fusionseg.sem.identification.library import atoms
    from fusionseg.sem.identification.quantify import oxygen_by_stoichiometry

    frac, sig = composition.fractions[0].double(), composition.sigma[0].double()
    measured = {el: float(frac[i]) for i, el in enumerate(composition.elements) if frac[i] > 0}
    relative = {el: float(sig[i]) / max(float(frac[i]), 1e-12) for i, el in enumerate(composition.elements)}
    formula_atoms = atoms(formula) if formula else {}
    oxide = "O" in formula_atoms if formula else "O" in measured
    if oxide:
        measured = oxygen_by_stoichiometry(measured, with_carbon="C" in formula_atoms)
    out = {
        el: (100 * w, 100 * w * (0.0 if el == "O" and oxide else relative.get(el, 0.0))) for el, w in measured.items()
    }
    return dict(sorted(out.items(), key=lambda kv: -kv[1][0]))
