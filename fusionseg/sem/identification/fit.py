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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
import torch
from scipy.interpolate import BSpline
from torch import Tensor

from fusionseg.sem.identification.lines import Family, quant_family
from fusionseg.sem.meta import EnergyAxis
from fusionseg.sem.physics import fwhm_ev, gaussian_bins

LOW_EV = 150.0  # fitted range starts here: below it the detector's noise peak and cut-off dominate
BACKGROUND_KNOTS = 14  # B-spline intervals over sqrt(E) of the fitted range
MAX_MASKS = 32  # distinct sets of removed lines solved one by one; above, one batched solve of per-spectrum systems
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
    (generation x efficiency): a Ti L or Fe L family can then not take the O K or F K counts it overlaps."""

    def __init__(self, fams: Sequence[Family], instrument: Instrument, efficiency: Callable | None = None) -> None:
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
        self.background = _continuum(instrument)

    @cached_property
    def design(self) -> np.ndarray:
        """(C, F + B) peaks then continuum basis."""
        return np.concatenate([self.peaks, self.background], axis=1)

    @property
    def n_peaks(self) -> int:
        return len(self.families)


def chunk_spectra() -> int:
    """Spectra converted to float at once: `fusionseg.sem.identify.CHUNK_SPECTRA`, the project's one such bound
    (read at call time, so a test can lower it)."""
    from fusionseg.sem import identify

    return identify.CHUNK_SPECTRA


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


@lru_cache(maxsize=8)
def _continuum(instrument: Instrument) -> np.ndarray:
    lo, hi = instrument.fit_range()
    return continuum_basis(_channels(instrument)[1], lo, hi)


def continuum_basis(energies_ev: np.ndarray, lo_ev: float, hi_ev: float) -> np.ndarray:
    """(C, B) cubic B-splines on knots evenly spaced in sqrt(E) over [lo, hi]: dense where the window and the
    matrix bend the continuum (below 2 keV), sparse above; each spans >= 4 knot intervals, far wider than a peak.
    (Steps at absorption edges were tried: they lowered the accuracy on both physics and misfit a real file.)"""
    inner = np.linspace(np.sqrt(lo_ev), np.sqrt(hi_ev), BACKGROUND_KNOTS + 1) ** 2
    knots = np.concatenate([[inner[0]] * 3, inner, [inner[-1]] * 3])
    x = np.clip(energies_ev, inner[0], inner[-1] * (1 - 1e-12))
    return BSpline.design_matrix(x, knots, 3).toarray()


@dataclass
class LineFit:
    """Fit of N spectra: ``net`` (N, F) net counts per family, ``sigma`` (N, F) their Poisson standard deviation,
    ``continuum`` (N, B) continuum coefficients; ``model`` the design they refer to."""

    net: Tensor
    sigma: Tensor
    continuum: Tensor
    model: LineModel
    misfit: np.ndarray | None = None  # (C,) weighted squared residual per channel (one spectrum: `calibrate.fit_one`)
    weights: np.ndarray | None = None  # (C,) the fit's weights (one spectrum: `calibrate.fit_one`)

    def continuum_at(self, energies_ev: np.ndarray) -> Tensor:
        """(N, len(energies)) fitted continuum counts per channel at the given energies (eV)."""
        lo, hi = self.model.instrument.fit_range()
        basis = torch.from_numpy(continuum_basis(np.asarray(energies_ev, dtype=np.float64), lo, hi))
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
    if n <= FEW_SPECTRA:  # sums: float64 throughout
        y = spectra.index_select(1, channels).double()
        rhs, inv = y @ wa, torch.linalg.inv(gram)
        var = ((inv @ wa.T) ** 2 @ y.T).T  # sum_c P_jc^2 y_c with P = G^-1 A^T W
    else:
        proj = torch.linalg.solve(gram, wa.T)  # (P, C): unconstrained solution x = proj @ y
        stacked = torch.cat([wa, (proj**2).T], dim=1).float()  # (C, 2P): A^T W y and the variance, one product
        rhs, var = torch.empty(n, p, dtype=torch.float64), torch.empty(n, p, dtype=torch.float64)
        step = chunk_spectra()
        for start in range(0, n, step):
            out = (spectra[start : start + step].index_select(1, channels).float() @ stacked).double()
            rhs[start : start + step], var[start : start + step] = out[:, :p], out[:, p:]
    x = nonnegative_lines(gram, rhs, f, max_rounds)
    return LineFit(x[:, :f].float(), var[:, :f].clamp(min=0).sqrt().float(), x[:, f:].float(), model)


def nonnegative_lines(gram: Tensor, rhs: Tensor, n_peaks: int, max_rounds: int) -> Tensor:
    """(N, P) solutions of gram x = rhs with the first ``n_peaks`` entries >= 0 (continuum free): an active-set
    pass that removes negative amplitudes and re-solves. Spectra sharing a set of removed lines (a phase's
    spectra mostly do) are solved together, one small system per distinct set."""
    x = rhs @ torch.linalg.inv(gram)  # gram symmetric
    free = torch.ones_like(x, dtype=torch.bool)
    todo = torch.nonzero((x[:, :n_peaks] < 0).any(1)).squeeze(1)
    for _ in range(max_rounds):
        if todo.numel() == 0:
            break
        free[todo, :n_peaks] &= x[todo, :n_peaks] >= 0
        masks, which = torch.unique(free[todo], dim=0, return_inverse=True)
        if len(masks) > MAX_MASKS:  # many distinct sets: one batched solve, each spectrum its own masked system
            m = free[todo].to(gram.dtype)
            g = gram[None] * m[:, :, None] * m[:, None, :] + torch.diag_embed(1 - m)
            x[todo] = torch.linalg.solve(g, (rhs[todo] * m)[..., None]).squeeze(-1) * m
        else:
            for u, mask in enumerate(masks):
                rows, cols = todo[which == u], torch.nonzero(mask).squeeze(1)
                solved = torch.zeros(len(rows), x.shape[1], dtype=x.dtype)
                solved[:, cols] = rhs[rows][:, cols] @ torch.linalg.inv(gram[cols][:, cols])
                x[rows] = solved
        todo = todo[(x[todo, :n_peaks] < 0).any(1)]
    x[:, :n_peaks] = x[:, :n_peaks].clamp(min=0)
    return x
