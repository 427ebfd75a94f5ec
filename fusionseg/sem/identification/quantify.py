"""Standardless quantification: net line counts -> element weight fractions, by peak-to-background ratios.

Assumptions (state them with any result): the continuum follows Kramers' law, N(E) ~ Zbar (E0 - E) / E per
unit energy, and leaves the sample and crosses the detector window like the lines at the same energy; so
the measured continuum divided by Kramers' shape is the field's efficiency T(E) (window x detector x mean
matrix absorption; Statham's peak-to-background idea). An element's net counts per unit weight fraction are
then its family's generation (fluorescence yield x subshell share x (U - 1)^1.67, Green & Cosslett, over the
atomic mass: lines come from atoms, C / A per gram) x T(E) at its main line. No atomic-number or fluorescence
correction; fractions are normalised to 100 % of the elements found (H, Li, Be, B are invisible). Expect ~10 %
relative error above 1.5 keV, ~30 % for O, F, Na.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from fusionseg.sem.identification.fit import LineFit
from fusionseg.sem.identification.lines import CANDIDATE_ELEMENTS, families, quant_family

LIGHT_ELEMENTS = ("C", "O", "F")  # lines under 0.7 keV: quantified poorly, compared as present or absent
MIN_EFFICIENCY = 0.03  # T(E) relative to its maximum under which an element's lines are not measured (O behind Be)


@dataclass(frozen=True)
class FieldEfficiency:
    """T(E): the continuum of a (summed) spectrum over Kramers' generated shape, on a grid of energies (eV)."""

    energies_ev: np.ndarray
    values: np.ndarray

    @classmethod
    def from_fit(cls, fit: LineFit, row: int = 0) -> FieldEfficiency:
        """From the continuum of ``fit``'s spectrum ``row`` (a sum over the field, or over one phase)."""
        lo, hi = fit.model.instrument.fit_range()
        beam_ev = fit.model.instrument.beam_kev * 1000.0
        e = np.linspace(lo, hi, 400)
        cont = fit.continuum_at(e)[row].numpy()
        t = np.clip(cont, 0, None) * e / np.maximum(beam_ev - e, 1e-3 * beam_ev)
        floor = 1e-3 * max(float(t.max()), 1e-300)  # a continuum fitted to ~0 would make any line infinite
        return cls(e, np.maximum(t, floor) / max(float(t.max()), 1e-300))

    def __call__(self, energies_ev: np.ndarray) -> np.ndarray:
        return np.interp(energies_ev, self.energies_ev, self.values)


@dataclass
class Composition:
    """Weight fractions (N, E) of ``elements`` (rows sum to 1 where anything was found), their standard
    deviations (N, E) from counting statistics, and the net line counts (N,) they rest on."""

    elements: tuple[str, ...]
    fractions: Tensor
    sigma: Tensor
    net_counts: Tensor
    unmeasured: tuple[str, ...] = ()  # elements the detector barely records here (efficiency < `MIN_EFFICIENCY`)
    heavy_share: Tensor | None = None  # (N,) share of the net line counts in elements from Na up

    def formula_text(self, row: int, min_fraction: float = 0.02) -> str:
        """'Si 46.7, O 53.3' wt % of the elements above ``min_fraction`` in one row, by decreasing share."""
        f = self.fractions[row]
        order = torch.argsort(f, descending=True).tolist()
        return ", ".join(f"{self.elements[i]} {100 * float(f[i]):.1f}" for i in order if f[i] >= min_fraction)


def quantify(fit: LineFit, efficiency: FieldEfficiency) -> Composition:
    """Weight fractions of the elements of ``fit`` (one column per element: `LineModel` with an efficiency)."""
    fams = fit.model.families
    energies = np.array([f.main_ev for f in fams])
    factor = torch.tensor([f.generation for f in fams], dtype=torch.float64) * torch.from_numpy(efficiency(energies))
    amount = fit.net.double() / factor
    sigma = fit.sigma.double() / factor
    total = amount.sum(1, keepdim=True)
    scale = torch.where(total > 0, 1.0 / total.clamp(min=1e-300), torch.zeros_like(total))
    heavy = torch.tensor([f.element not in LIGHT_ELEMENTS for f in fams], dtype=torch.float64)
    net = fit.net.double()
    share = (net @ heavy / net.sum(1).clamp(min=1e-9)).float()
    blind = unmeasured(efficiency, fit.model.instrument.beam_kev)
    return Composition(tuple(f.element for f in fams), (amount * scale).float(), (sigma * scale).float(),
                       net.sum(1).float(), blind, share)  # fmt: skip


def unmeasured(efficiency: FieldEfficiency, beam_kev: float) -> tuple[str, ...]:
    """Candidate elements whose quantified line falls where the efficiency is under `MIN_EFFICIENCY` (O, C and F
    behind a Be window): what a spectrum shows of them says nothing, found in the field's sum or not (a line at
    0.1 % efficiency takes its counts from the continuum's misfit). `match` leaves them out, and entries that differ
    only in them are twins there (quartz/silicon)."""
    lo, hi = efficiency.energies_ev[0], efficiency.energies_ev[-1]
    quant = quant_family(families(CANDIDATE_ELEMENTS, beam_kev, 0.0, 1e9), beam_kev)
    return tuple(el for el, fam in quant.items()
                 if lo <= fam.main_ev <= hi and efficiency(np.array([fam.main_ev]))[0] < MIN_EFFICIENCY)  # fmt: skip


# Oxidation states for oxygen by stoichiometry (the oxide convention of microprobe reports; Fe as FeO).
VALENCE = {"Na": 1, "K": 1, "Mg": 2, "Ca": 2, "Fe": 2, "Mn": 2, "Co": 2, "Ni": 2, "Cu": 2, "Zn": 2, "Sr": 2, "Ba": 2,
           "Pb": 2, "Cd": 2, "Hg": 2, "Al": 3, "Cr": 3, "Y": 3, "La": 3, "Ce": 3, "Nd": 3, "Bi": 3, "As": 3, "Sb": 3,
           "Si": 4, "Ti": 4, "Zr": 4, "Sn": 4, "Th": 4, "U": 4, "C": 4, "P": 5, "Nb": 5, "Ta": 5, "S": 6, "Mo": 6,
           "W": 6}  # fmt: skip
ANIONS = {"F": 1, "Cl": 1}  # each takes the place of half an oxygen


def oxygen_by_stoichiometry(weight: dict[str, float], with_carbon: bool) -> dict[str, float]:
    """Weight fractions with O replaced by the oxygen the measured cations carry (`VALENCE`; F and Cl take
    their share), renormalised: a standardless O is off by up to 2x, a cation ratio by ~10 %. C is dropped
    unless ``with_carbon`` (a carbonate): otherwise it is the coat. H (OH, water) is invisible and not added."""
    from fusionseg.sem.identification.library import atomic_mass

    cations = {el: w for el, w in weight.items() if el not in ("O", *ANIONS) and (el != "C" or with_carbon)}
    anions = {el: w for el, w in weight.items() if el in ANIONS}
    oxygen_moles = sum(w / atomic_mass(el) * VALENCE.get(el, 2) / 2 for el, w in cations.items())
    oxygen_moles -= sum(w / atomic_mass(el) * ANIONS[el] / 2 for el, w in anions.items())
    out = {**cations, **anions, "O": max(oxygen_moles, 0.0) * atomic_mass("O")}
    total = sum(out.values())
    return {el: w / total for el, w in out.items()} if total > 0 else out
