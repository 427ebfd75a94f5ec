"""What a field's summed spectrum tells before any single spectrum is read: which elements are there, the
true channel calibration and the detector's resolution.

The sum of a field's spectra has counts enough to find the energy shift and gain error of the file's
calibration (real files are off by up to ~15 eV), the FWHM at Mn Kα, and the elements whose lines stand
above the noise. Each is chosen by the weighted residual of the element-line fit (`fit.fit_lines`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from fusionseg.sem.identification.fit import Instrument, LineFit, LineModel, fit_lines, poisson_weights
from fusionseg.sem.identification.lines import CANDIDATE_ELEMENTS, families
from fusionseg.sem.identification.quantify import FieldEfficiency
from fusionseg.sem.meta import EnergyAxis

MIN_SIGNIFICANCE = 5.0  # an element is found when its net counts exceed this many Poisson standard deviations
MIN_DELTA_CHI2 = 25.0  # likelihood-ratio threshold (x the reduced chi-square) of the thorough test
MIN_SHARE = 0.0005  # ... and this share of all net line counts (a minor phase of 1 in 50 still has its elements)
SHIFTS_EV = np.arange(-60.0, 61.0, 10.0)
GAINS = np.arange(0.994, 1.0061, 0.002)
FWHMS_EV = np.arange(95.0, 221.0, 10.0)


def fit_one(
    spectrum: np.ndarray,
    instrument: Instrument,
    elements: Sequence[str],
    efficiency: FieldEfficiency | None = None,
) -> tuple[LineFit, float]:
    """Fit of one (summed) spectrum (C,) with every family of ``elements`` (one column per element when
    ``efficiency`` is given); returns it and its weighted residual sum of squares per channel (reduced chi-square)."""
    lo, hi = instrument.fit_range()
    model = LineModel(families(elements, instrument.beam_kev, lo, hi), instrument, efficiency)
    weights = poisson_weights(spectrum, model)
    y = torch.from_numpy(np.asarray(spectrum, dtype=np.float64))[None]
    fit = fit_lines(y, model, weights)
    x = torch.cat([fit.net, fit.continuum], 1).double()[0].numpy()
    resid = y[0].numpy()[model.channels] - model.design @ x
    fit.misfit = weights * resid**2  # (C,) weighted squared residual per channel
    fit.weights = weights
    return fit, float(fit.misfit.sum() / len(resid))


def detect_elements(
    spectrum: np.ndarray, instrument: Instrument, efficiency: FieldEfficiency,
    candidates: Sequence[str] = CANDIDATE_ELEMENTS, thorough: bool = False,
) -> list[str]:  # fmt: skip
    """Elements significant in ``spectrum`` (C,) (usually a sum), refitted until the set is stable. Significant:
    net counts > `MIN_SHARE` of all, and either (``thorough``) the fit without the element is worse by
    `MIN_DELTA_CHI2` x the reduced chi-square (a likelihood-ratio test, by backward elimination: the weakest
    goes first, so of two candidates sharing a line the likelier keeps it), or its net counts exceed
    `MIN_SIGNIFICANCE` Poisson standard deviations scaled by the reduced chi-square (a real detector's peak
    shapes misfit big peaks; that misfit is no element)."""
    elements = list(candidates)
    for _ in range(4 * len(elements)):
        fit, chi2 = fit_one(spectrum, instrument, elements, efficiency)
        net, sigma = fit.net[0].double().numpy(), fit.sigma[0].double().numpy()
        found = [f.element for f in fit.model.families]
        if not found:  # too few counts for any line to stand out
            return []
        big = net > MIN_SHARE * net.sum()
        if not big.all():  # too small to matter: out at once
            elements = [el for el, ok in zip(found, big, strict=True) if ok]
            continue
        if not thorough:
            strong = net > MIN_SIGNIFICANCE * sigma * np.sqrt(max(chi2, 1.0))
            keep = [el for el, ok in zip(found, strong, strict=True) if ok]
            if keep == found:
                return found
            elements = keep
            continue
        gain = _chi2_without_each(fit) / max(chi2, 1.0)  # chi-square lost without each element, reduced units
        if gain.min() >= MIN_DELTA_CHI2:
            return found
        weakest = int(np.argmin(gain))  # one at a time: a line shared by two candidates goes to the likelier one
        elements = [el for j, el in enumerate(found) if j != weakest and gain[j] >= MIN_DELTA_CHI2 / 5]
    return elements


def _chi2_without_each(fit: LineFit) -> np.ndarray:
    """(F,) weighted chi-square the fit of one spectrum would gain without each line family: x_j^2 / (G^-1)_jj,
    exact for linear least squares (the constrained fit differs little), so one fit tests every element."""
    a = fit.model.design
    weights = fit.weights
    inv = np.linalg.inv(a.T @ (a * weights[:, None]))
    x = fit.net[0].double().numpy()
    return x**2 / np.diag(inv)[: len(x)]


def continuum_efficiency(spectrum: np.ndarray, instrument: Instrument, elements: Sequence[str]) -> FieldEfficiency:
    """`FieldEfficiency` of ``spectrum`` from a fit with every family of ``elements`` free."""
    return FieldEfficiency.from_fit(fit_one(spectrum, instrument, elements)[0])


@dataclass(frozen=True)
class Survey:
    """What a (summed) spectrum told: the refined instrument, the elements found, the efficiency T(E)."""

    instrument: Instrument
    elements: tuple[str, ...]
    efficiency: FieldEfficiency


def survey(spectrum: np.ndarray, instrument: Instrument, refine: bool = True) -> Survey:
    """Efficiency from a free fit of every candidate, the elements found, the calibration and FWHM refined on
    them (``refine``), then the elements and efficiency again at the refined calibration."""
    efficiency = continuum_efficiency(spectrum, instrument, CANDIDATE_ELEMENTS)
    elements = detect_elements(spectrum, instrument, efficiency, thorough=True)
    if refine:
        instrument = refine_instrument(spectrum, instrument, elements, efficiency)
        efficiency = continuum_efficiency(spectrum, instrument, elements)
        elements = detect_elements(spectrum, instrument, efficiency, thorough=True)
    return Survey(instrument, tuple(elements), efficiency)


def _shifted(instrument: Instrument, shift_ev: float, gain: float, fwhm_ev: float) -> Instrument:
    axis = instrument.axis
    return replace(instrument, fwhm_mn_ev=float(fwhm_ev),
                   axis=EnergyAxis(axis.size, axis.scale_ev * gain, axis.offset_ev + shift_ev))  # fmt: skip


def refine_instrument(
    spectrum: np.ndarray, instrument: Instrument, elements: Sequence[str], efficiency: FieldEfficiency
) -> Instrument:
    """The instrument whose calibration (energy shift, gain) and FWHM at Mn Kα best fit ``spectrum`` (C,):
    coordinate search over `SHIFTS_EV`, `GAINS`, `FWHMS_EV`, then 2 eV / 0.0005 / 2 eV steps around the best."""
    if not elements:
        return instrument
    base, shift, gain, fwhm = instrument, 0.0, 1.0, instrument.fwhm_mn_ev

    def search(shifts: np.ndarray, gains: np.ndarray, fwhms: np.ndarray) -> tuple[float, float, float]:
        trials = [(s, g, f) for s in shifts for g in gains for f in fwhms]
        return min(trials, key=lambda t: fit_one(spectrum, _shifted(base, *t), elements, efficiency)[1])

    shift, gain, fwhm = search(SHIFTS_EV, [gain], [fwhm])
    shift, gain, fwhm = search([shift], GAINS, [fwhm])
    shift, gain, fwhm = search([shift], [gain], FWHMS_EV)
    shift, gain, fwhm = search(shift + np.arange(-4.0, 5.0, 2.0), [gain], [fwhm])
    shift, gain, fwhm = search([shift], gain + np.arange(-0.001, 0.0011, 0.0005), [fwhm])
    shift, gain, fwhm = search([shift], [gain], fwhm + np.arange(-4.0, 5.0, 2.0))
    return _shifted(base, shift, gain, fwhm)
