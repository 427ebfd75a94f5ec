"""Element-line fit: net X-ray line intensities of many spectra at once, by linear least squares.

A spectrum (counts per channel) is modelled as a non-negative sum of line families (`lines.Family`,
Gaussian peaks of the detector's resolution FWHM(E) = sqrt(FWHM_Mn^2 + 2.5 (E - 5895 eV)), Fiori &
Newbury) and a smooth continuum: cubic B-splines in sqrt(E), too broad to take a peak's place, so any
continuum shape and detector window is followed without a model of either. Weights are Poisson, from
the field's mean spectrum, so one projection serves every spectrum: the fit is two matrix products and
a batched active-set pass that drops negative line amplitudes (Lawson & Hanson's NNLS, restricted to
removing; the few spectra it touches are re-solved in one batch). Written here rather than with
exspy's model fitting, which fits one spectrum at a time with iterative optimisers (seconds per spectrum).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
import torch
import xraydb
from scipy.interpolate import BSpline
from scipy.special import erf
from torch import Tensor

from fusionseg.sem.identification.lines import Family, quant_family
from fusionseg.sem.meta import EnergyAxis
from fusionseg.sem.physics import fwhm_ev, gaussian_bins

LOW_EV = 150.0  # fitted range starts here: below it the detector's noise peak and cut-off dominate
BACKGROUND_KNOTS = 14  # B-spline intervals over sqrt(E) of the fitted range
CHUNK = 4096  # spectra converted to float at once
FEW_SPECTRA = 8  # up to this many spectra (sums) are fitted in float64 without the (P, C) projection


@dataclass(frozen=True)
class Instrument:
    """What the fit needs of the acquisition: the channel calibration, beam energy (keV) and FWHM at Mn Kα (eV)."""

    axis: EnergyAxis
    beam_kev: float
    fwhm_mn_ev: float = 130.0

    def fit_range(self) -> tuple[float, float]:
        """Energies (eV) fitted: from `LOW_EV` (or the axis start) to the beam energy (or the axis end)."""
        e = self.axis.energies_ev().numpy()
        return max(LOW_EV, float(e[0])), min(float(e[-1]), self.beam_kev * 1000.0 * 0.98)


class LineModel:
    """Design matrix of line families and continuum on one instrument's channels (the fitted range).

    Without ``efficiency`` each family is a free column. With it (a function of energy in eV: the continuum per
    unit of Kramers' generated continuum, `quantify.FieldEfficiency`), each element is one column, its quantified
    family (`lines.quant_family`) plus its other families at the ratio the standardless model predicts
    (generation x efficiency): a Ti L or Fe L family can then not take the O K or F K counts it overlaps.
    ``edge_elements``: whose absorption edges step the continuum (default: the families' elements; the window
    elements are always added)."""

    def __init__(
        self,
        fams: Sequence[Family],
        instrument: Instrument,
        efficiency: Callable | None = None,
        edge_elements: Iterable[str] | None = None,
    ) -> None:
        self.instrument = instrument
        self.channels, self.energies = _channels(instrument)
        templates = {fam: _template(fam, instrument) for fam in fams}
        if efficiency is None:
            self.families = tuple(fams)
            self.peaks = np.stack([templates[f] for f in fams], 1) if fams else np.zeros((len(self.energies), 0))
        else:
            quant = quant_family(fams, instrument.beam_kev)
            self.families = tuple(quant.values())
            self.peaks = np.zeros((len(self.energies), len(self.families)))
            for j, q in enumerate(self.families):
                ref = q.generation * float(efficiency(np.array([q.main_ev]))[0])
                for fam in (f for f in fams if f.element == q.element):
                    ratio = fam.generation * float(efficiency(np.array([fam.main_ev]))[0]) / max(ref, 1e-300)
                    self.peaks[:, j] += templates[fam] * (1.0 if fam is q else ratio)
        elements = {f.element for f in fams} if edge_elements is None else set(edge_elements)
        self.edges_ev = absorption_edges(frozenset(elements), instrument)
        self.background = _continuum(instrument, self.edges_ev)

    @cached_property
    def design(self) -> np.ndarray:
        """(C, F + B) peaks then continuum basis."""
        return np.concatenate([self.peaks, self.background], axis=1)

    @property
    def n_peaks(self) -> int:
        return len(self.families)

    @property
    def n_constrained(self) -> int:
        """Columns fitted >= 0: the line families and the edge steps."""
        return len(self.families) + 2 * len(self.edges_ev)


@lru_cache(maxsize=8)
def _channels(instrument: Instrument) -> tuple[np.ndarray, np.ndarray]:
    """Indices and energies (eV) of the channels in the instrument's fitted range."""
    lo, hi = instrument.fit_range()
    energies = instrument.axis.energies_ev().numpy()
    channels = np.flatnonzero((energies >= lo) & (energies <= hi))
    return channels, energies[channels]


@lru_cache(maxsize=4096)
def _template(fam: Family, instrument: Instrument) -> np.ndarray:
    """(C,) counts per fitted channel of one net count of ``fam``: its lines as Gaussians integrated over each
    channel (cached: a field's phases and calibration trials reuse them)."""
    _, energies = _channels(instrument)
    half = instrument.axis.scale_ev / 2
    edges = np.append(energies - half, energies[-1] + half)
    e, w = np.array(fam.energies_ev), np.array(fam.weights)
    return w @ gaussian_bins(e, fwhm_ev(e, instrument.fwhm_mn_ev), edges)


WINDOW_ELEMENTS = ("Al", "Si")  # detector window grids, coatings and dead layers: their K edges
MIN_EDGE_EV = 1000.0  # edges below this are left to the splines: a step beside the O K line would take its counts
EDGE_DECAYS_EV = (300.0, 3000.0)  # an absorption edge's step in the continuum fades over these energies


def absorption_edges(elements: set[str] | frozenset[str], instrument: Instrument) -> tuple[float, ...]:
    """K and L3 edge energies (eV) above `MIN_EDGE_EV` in the fitted range of ``elements`` and the window
    elements, where the continuum steps down (the matrix absorbs above its edges: -40 % at Si K in quartz)."""
    lo, hi = instrument.fit_range()
    out = set()
    for el in {*elements, *WINDOW_ELEMENTS}:
        for level in ("K", "L3"):
            edge = xraydb.xray_edges(el).get(level)
            if edge is not None and max(lo, MIN_EDGE_EV) < edge.energy < hi:
                out.add(round(float(edge.energy), 1))
    return tuple(sorted(out))


@lru_cache(maxsize=64)
def _continuum(instrument: Instrument, edges_ev: tuple[float, ...]) -> np.ndarray:
    lo, hi = instrument.fit_range()
    return continuum_basis(_channels(instrument)[1], lo, hi, edges_ev, instrument.fwhm_mn_ev)


def continuum_basis(
    energies_ev: np.ndarray,
    lo_ev: float,
    hi_ev: float,
    edges_ev: tuple[float, ...] = (),
    fwhm_mn_ev: float = 130.0,
    sharp: bool = False,
) -> np.ndarray:
    """(C, B) continuum basis: per absorption edge two downward steps that fade over `EDGE_DECAYS_EV`
    (`edge_steps`), then cubic B-splines on knots evenly spaced in sqrt(E) over [lo, hi] (dense below 2 keV,
    where the window bends the continuum; each spans >= 4 knot intervals, far wider than a peak)."""
    inner = np.linspace(np.sqrt(lo_ev), np.sqrt(hi_ev), BACKGROUND_KNOTS + 1) ** 2
    knots = np.concatenate([[inner[0]] * 3, inner, [inner[-1]] * 3])
    x = np.clip(energies_ev, inner[0], inner[-1] * (1 - 1e-12))
    splines = BSpline.design_matrix(x, knots, 3).toarray()
    return np.concatenate([edge_steps(energies_ev, edges_ev, fwhm_mn_ev, sharp), splines], 1)


def edge_steps(
    energies_ev: np.ndarray, edges_ev: tuple[float, ...], fwhm_mn_ev: float, sharp: bool = False
) -> np.ndarray:
    """(C, 2 x edges) downward continuum steps at absorption edges (negated: their amplitudes are fitted >= 0),
    blurred by the detector resolution unless ``sharp`` (the continuum as generated, before the detector)."""
    steps = []
    for edge in edges_ev:
        sigma = float(fwhm_ev(edge, fwhm_mn_ev)) / 2.3548
        z = (energies_ev - edge) / (np.sqrt(2) * sigma)
        rise = (energies_ev >= edge).astype(np.float64) if sharp else 0.5 * (1 + erf(z))
        above = np.clip(energies_ev - edge, 0, None)
        steps += [-rise * np.exp(-above / decay) for decay in EDGE_DECAYS_EV]
    return np.stack(steps, 1) if steps else np.zeros((len(energies_ev), 0))


@dataclass
class LineFit:
    """Fit of N spectra: ``net`` (N, F) net counts per family, ``sigma`` (N, F) their Poisson standard deviation,
    ``continuum`` (N, B) continuum coefficients; ``model`` the design they refer to."""

    net: Tensor
    sigma: Tensor
    continuum: Tensor
    model: LineModel
    misfit: np.ndarray | None = None  # (C,) weighted squared residual per channel (one spectrum: `calibrate.fit_one`)

    def continuum_at(self, energies_ev: np.ndarray, sharp: bool = False) -> Tensor:
        """(N, len(energies)) fitted continuum counts per channel at the given energies (eV); ``sharp``: with the
        absorption edges as generated (a line just below an edge sees the continuum before the step)."""
        inst = self.model.instrument
        lo, hi = inst.fit_range()
        energies = np.asarray(energies_ev, dtype=np.float64)
        basis = continuum_basis(energies, lo, hi, self.model.edges_ev, inst.fwhm_mn_ev, sharp)
        basis = torch.from_numpy(basis)
        return self.continuum.double() @ basis.T


def poisson_weights(mean_spectrum: np.ndarray, model: LineModel) -> np.ndarray:
    """(C,) weights 1 / expected counts on the model's channels, from a (smoothed) mean spectrum: one weighting
    for every spectrum of a field keeps the fit a single projection. Floored at 1 % of the mean level."""
    from scipy.ndimage import uniform_filter1d

    y = uniform_filter1d(np.asarray(mean_spectrum, dtype=np.float64), 3)[model.channels]
    return 1.0 / np.maximum(y, 0.01 * max(y.mean(), 1e-12))


def fit_lines(spectra: Tensor, model: LineModel, weights: np.ndarray, max_rounds: int = 12) -> LineFit:
    """Net line counts of ``spectra`` (N, channels of the instrument's axis; int16 or float counts).

    Weighted least squares with one weighting for all spectra (``weights``, (C,)); line amplitudes are kept
    >= 0 by dropping the negative ones and re-solving those spectra (at most ``max_rounds`` rounds). Sigma is
    the Poisson propagation of the counts through the unconstrained solution, sqrt(sum_c P_jc^2 y_c).
    """
    a = torch.from_numpy(model.design)  # (C, P) float64
    w = torch.from_numpy(weights)
    wa = a * w[:, None]
    gram = a.T @ wa  # (P, P)
    channels = torch.from_numpy(model.channels)
    n, p, f = len(spectra), a.shape[1], model.n_peaks
    if n <= FEW_SPECTRA:  # sums: the variance as G^-1 (A^T W diag(y) W A) G^-1, no (P, C) projection
        y = spectra.index_select(1, channels).double()
        rhs, inv = y @ wa, torch.linalg.inv(gram)
        var = torch.stack([torch.diagonal(inv @ (wa.T * row) @ wa @ inv) for row in y]) if n else rhs
    else:
        proj = torch.linalg.solve(gram, wa.T)  # (P, C): unconstrained solution x = proj @ y
        stacked = torch.cat([wa, (proj**2).T], dim=1).float()  # (C, 2P): A^T W y and the variance, one product
        rhs, var = torch.empty(n, p, dtype=torch.float64), torch.empty(n, p, dtype=torch.float64)
        for start in range(0, n, CHUNK):
            out = (spectra[start : start + CHUNK].index_select(1, channels).float() @ stacked).double()
            rhs[start : start + CHUNK], var[start : start + CHUNK] = out[:, :p], out[:, p:]
    x = nonnegative_lines(gram, rhs, model.n_constrained, max_rounds)
    return LineFit(x[:, :f].float(), var[:, :f].clamp(min=0).sqrt().float(), x[:, f:].float(), model)


def nonnegative_lines(gram: Tensor, rhs: Tensor, n_peaks: int, max_rounds: int) -> Tensor:
    """(N, P) solutions of gram x = rhs with the first ``n_peaks`` entries >= 0 (continuum free): an active-set
    pass that removes negative amplitudes and re-solves, batched over the spectra that still have one."""
    x = rhs @ torch.linalg.inv(gram)  # gram symmetric
    free = torch.ones_like(x, dtype=torch.bool)
    todo = torch.nonzero((x[:, :n_peaks] < 0).any(1)).squeeze(1)
    eye = torch.eye(len(gram), dtype=gram.dtype)
    for _ in range(max_rounds):
        if todo.numel() == 0:
            break
        neg = torch.zeros_like(free[todo])
        neg[:, :n_peaks] = x[todo, :n_peaks] < 0
        free[todo] &= ~neg
        m = free[todo].to(gram.dtype)
        g = gram[None] * m[:, :, None] * m[:, None, :] + eye * (1 - m)[:, None, :]
        x[todo] = torch.linalg.solve(g, (rhs[todo] * m)[..., None]).squeeze(-1) * m
        todo = todo[(x[todo, :n_peaks] < 0).any(1)]
    x[:, :n_peaks] = x[:, :n_peaks].clamp(min=0)
    return x
