"""EDS spectrum physics: characteristic lines, continuum, detector response, Poisson counts.

Textbook forms (Goldstein et al., *Scanning Electron Microscopy and X-ray Microanalysis*):

* lines: energies and relative intensities from ``xraydb.xray_lines`` per ionised level,
  fluorescence yield ``omega`` from ``xraydb.xray_edges``; a level is excited only when the
  overvoltage U = E0 / Ec > 1, with ionisation ~ (U - 1)^1.67 (Green & Cosslett form).
  Line weight = (C / A) / S * omega * p(line) * (U - 1)^1.67: C / A atoms per unit mass (weight fraction over
  atomic mass), S = sum_j C_j Z_j / A_j the matrix's stopping power per unit mass (Castaing's first approximation).
* matrix absorption: simplified Philibert f(chi) = 1 / ((1 + chi/s)(1 + h/(1+h) chi/s)) with
  Heinrich's Lenard coefficient s = 4.5e5 / (E0^1.65 - Ec^1.65) (keV), h = 1.2 A / Z^2 and
  chi = (mu/rho)(E) / sin(take-off angle); mass attenuation from ``xraydb.mu_elam``.
* continuum: Kramers, dN/dE ~ Zbar (E0 - E) / E, absorbed like the lines.
* detector: polymer window + Al coating + Si dead layer transmission times absorption in a
  450 um Si crystal (``mu_elam``); Gaussian peaks with FWHM(E) = sqrt(FWHM_Mn^2 + 2.5 (E - 5895 eV)) eV.
* counts: Poisson in every channel at a mean total per spectrum (sampled exactly as a Poisson
  total distributed over channels by the inverse CDF, which costs O(counts), not O(channels)).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache, lru_cache

import numpy as np
import xraydb
from scipy.special import erf

from fusionseg.sem.meta import EnergyAxis
from fusionseg.sem.minerals import Mineral, SimulationError, get_mineral

MN_KA_EV = 5895.0
LOW_ENERGY_CUT_EV = 100.0  # detector noise threshold: nothing recorded below
TAKEOFF_DEG = 35.0
# Line weights' scale: quartz's Si K weight is C_Si as before atoms and stopping entered (A_Si / (Z/A)_quartz), so the
# CONTINUUM_SCALE calibrated on quartz keeps its balance.
LINE_SCALE = 28.0855 * (0.46744 * 14 / 28.0855 + 0.53256 * 8 / 15.999)
CONTINUUM_SCALE = 1.3e-6  # Kramers constant vs line weights: ~35 % continuum counts in quartz, as the Bruker test file
VOID_YIELD = 0.03  # a pore returns this fraction of the counts of solid matter (stray scatter)
# Detector layers (material, density g/cm^3, thickness cm): AP3.3-type polymer window, Al coating, Si dead layer.
WINDOW_LAYERS = (("C10H8O4", 1.39, 300e-7), ("Al", 2.70, 30e-7), ("Si", 2.33, 30e-7))
CRYSTAL_SI_CM = 450e-4

_LEVELS = ("K", "L1", "L2", "L3", "M1", "M2", "M3", "M4", "M5")
_LOG_E_GRID = np.linspace(np.log(100.0), np.log(1.0e5), 6000)  # Elam tables start at 100 eV


def fwhm_ev(energy_ev: np.ndarray | float, fwhm_mn_ka_ev: float = 130.0) -> np.ndarray:
    """Detector resolution (eV) at energy (eV): sqrt(FWHM_Mn^2 + 2.5 (E - 5895))."""
    return np.sqrt(np.maximum(fwhm_mn_ka_ev**2 + 2.5 * (np.asarray(energy_ev, dtype=np.float64) - MN_KA_EV), 1.0))


@cache
def _log_mu_element(element: str) -> np.ndarray:
    """log of the mass attenuation coefficient (cm^2/g) of ``element`` on ``_LOG_E_GRID``: ``xraydb.mu_elam``
    (photo-absorption + coherent + incoherent), with its Elam spline evaluated on the whole grid at once
    (`_elam_spline`; xraydb loops over energies in Python: 1.8 s per process for the library)."""
    log_e = np.log(np.clip(np.exp(_LOG_E_GRID), 100.0, 8.0e5))  # xraydb's clipping and log, as it computes them
    photo = xraydb.get_xraydb().get_cache("photoabsorption", column="element", value=xraydb.atomic_symbol(element))
    scatter = xraydb.get_xraydb().get_cache("scattering", column="element", value=xraydb.atomic_symbol(element))
    mu = np.zeros_like(log_e)
    for row, kind in ((photo[0], "photoabsorption"), (scatter[0], "coherent_scatter"),
                      (scatter[0], "incoherent_scatter")):  # fmt: skip
        table = [np.array(json.loads(getattr(row, name))) for name in ("log_energy", f"log_{kind}",
                                                                        f"log_{kind}_spline")]  # fmt: skip
        mu += np.exp(_elam_spline(*table, log_e))
    return np.log(np.maximum(mu, 1e-30))


def _elam_spline(x: np.ndarray, y: np.ndarray, second: np.ndarray, at: np.ndarray) -> np.ndarray:
    """xraydb's ``utils.elam_spline`` (cubic spline from tabulated second derivatives), the same arithmetic with
    the bracketing indices found by one ``searchsorted`` instead of a Python loop (a test checks equality)."""
    lo = np.maximum(np.searchsorted(x, at, side="left") - 1, 0)  # last x < e (0 when none)
    hi = np.minimum(np.searchsorted(x, at, side="right"), len(x) - 1)  # first x > e (the last when none)
    diff = x[hi] - x[lo]
    a = (x[hi] - at) / diff
    b = (at - x[lo]) / diff
    return a * y[lo] + b * y[hi] + (diff * diff / 6) * ((a * a - 1) * a * second[lo] + (b * b - 1) * b * second[hi])


def mass_attenuation(weight_fractions: dict[str, float], energy_ev: np.ndarray) -> np.ndarray:
    """(mu/rho) in cm^2/g of a compound at energies (eV): weight-fraction sum of the elements."""
    log_e = np.log(np.clip(energy_ev, 100.0, 1.0e5))
    mu = np.zeros_like(log_e)
    for el, w in weight_fractions.items():
        mu += w * np.exp(np.interp(log_e, _LOG_E_GRID, _log_mu_element(el)))
    return mu


def detector_efficiency(energy_ev: np.ndarray) -> np.ndarray:
    """Fraction of photons of energy (eV) recorded: window transmission x crystal absorption."""
    energy_ev = np.asarray(energy_ev, dtype=np.float64)
    trans = np.ones_like(energy_ev)
    for material, density, thick in WINDOW_LAYERS:
        wf = Mineral.from_formula(material, material, density).weight_fractions
        trans *= np.exp(-mass_attenuation(dict(wf), energy_ev) * density * thick)
    absorbed = 1.0 - np.exp(-mass_attenuation({"Si": 1.0}, energy_ev) * 2.33 * CRYSTAL_SI_CM)
    return np.where(energy_ev >= LOW_ENERGY_CUT_EV, trans * absorbed, 0.0)


def _absorption(mineral: Mineral, energy_ev: np.ndarray, edge_ev: np.ndarray, beam_kev: float) -> np.ndarray:
    """Simplified Philibert matrix absorption factor f(chi) in (0, 1] for X-rays of energy (eV)."""
    chi = mass_attenuation(dict(mineral.weight_fractions), energy_ev) / np.sin(np.radians(TAKEOFF_DEG))
    ec = np.clip(edge_ev / 1000.0, 0.0, 0.999 * beam_kev)
    sigma = 4.5e5 / (beam_kev**1.65 - ec**1.65)
    mean_a = sum(w * xraydb.atomic_mass(el) for el, w in mineral.weight_fractions.items())
    h = 1.2 * mean_a / max(mineral.mean_z, 1.0) ** 2
    x = chi / sigma
    return 1.0 / ((1.0 + x) * (1.0 + h / (1.0 + h) * x))


def characteristic_lines(mineral: Mineral, beam_energy_kev: float) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Excitable lines of a mineral: energies (eV), generated weights (before absorption), labels 'Fe Ka1'."""
    e0 = beam_energy_kev * 1000.0
    energies, weights, labels = [], [], []
    fractions = mineral.weight_fractions.items()
    stopping = sum(c * xraydb.atomic_number(el) / xraydb.atomic_mass(el) for el, c in fractions)
    for el, c in fractions:
        edges = xraydb.xray_edges(el)
        atoms = c * LINE_SCALE / (xraydb.atomic_mass(el) * stopping)  # ionised atoms: per gram, over the path
        for level in _LEVELS:
            edge = edges.get(level)
            if edge is None or edge.energy <= 0 or edge.energy >= e0 or edge.fyield <= 0:
                continue
            ionisation = (e0 / edge.energy - 1.0) ** 1.67
            for name, line in xraydb.xray_lines(el, initial_level=level).items():
                if line.energy < LOW_ENERGY_CUT_EV or line.intensity <= 0:
                    continue
                energies.append(line.energy)
                weights.append(atoms * edge.fyield * line.intensity * ionisation)
                labels.append(f"{el} {name}")
    return np.array(energies, dtype=np.float64), np.array(weights, dtype=np.float64), labels


def _edge_of_lines(mineral: Mineral, beam_energy_kev: float) -> np.ndarray:
    """Edge energy (eV) of the level each excitable line starts from (same order as `characteristic_lines`)."""
    e0 = beam_energy_kev * 1000.0
    out = []
    for el in mineral.weight_fractions:
        edges = xraydb.xray_edges(el)
        for level in _LEVELS:
            edge = edges.get(level)
            if edge is None or edge.energy <= 0 or edge.energy >= e0 or edge.fyield <= 0:
                continue
            n = sum(
                1
                for line in xraydb.xray_lines(el, initial_level=level).values()
                if line.energy >= LOW_ENERGY_CUT_EV and line.intensity > 0
            )
            out += [edge.energy] * n
    return np.array(out, dtype=np.float64)


def _channel_edges(axis: EnergyAxis) -> np.ndarray:
    return axis.offset_ev + axis.scale_ev * (np.arange(axis.size + 1) - 0.5)


def gaussian_bins(centres: np.ndarray, fwhm: np.ndarray, bin_edges: np.ndarray) -> np.ndarray:
    """(L, C) fraction of each Gaussian line falling in each channel (exact integral over the bin)."""
    sigma = fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    z = (bin_edges[None, :] - centres[:, None]) / (np.sqrt(2.0) * sigma[:, None])
    cdf = 0.5 * (1.0 + erf(z))
    return np.diff(cdf, axis=1)


@lru_cache(maxsize=512)
def _reference(mineral: Mineral, axis: EnergyAxis, beam_energy_kev: float, fwhm_mn_ka_ev: float) -> np.ndarray:
    """(C,) expected spectrum of one mineral, normalised to a total of 1 count."""
    e_ch = axis.offset_ev + axis.scale_ev * np.arange(axis.size, dtype=np.float64)
    e0 = beam_energy_kev * 1000.0
    eff = detector_efficiency(e_ch)
    valid = (e_ch > LOW_ENERGY_CUT_EV) & (e_ch < e0)
    kramers = np.where(valid, (e0 - e_ch) / np.where(valid, e_ch, 1.0), 0.0) * axis.scale_ev
    if mineral.is_void:  # stray continuum only, nothing absorbs it
        spec = kramers * eff
        return spec / spec.sum()
    energies, weights, _ = characteristic_lines(mineral, beam_energy_kev)
    if energies.size == 0:
        raise SimulationError(
            f"Mineral {mineral.name!r} ({mineral.formula}) has no X-ray line the {beam_energy_kev} keV beam can "
            f"excite above {LOW_ENERGY_CUT_EV:.0f} eV; raise beam_energy_kev or drop the mineral."
        )
    edges = _edge_of_lines(mineral, beam_energy_kev)
    line_w = weights * _absorption(mineral, energies, edges, beam_energy_kev) * detector_efficiency(energies)
    peaks = line_w @ gaussian_bins(energies, fwhm_ev(energies, fwhm_mn_ka_ev), _channel_edges(axis))
    cont = CONTINUUM_SCALE * mineral.mean_z * kramers * _absorption(mineral, e_ch, e_ch, beam_energy_kev) * eff
    spec = peaks + cont
    total = spec.sum()
    if not np.isfinite(total) or total <= 0:
        raise SimulationError(
            f"Mineral {mineral.name!r} gives no counts on the energy axis {axis}; widen the axis to cover its lines."
        )
    return spec / total


def _check_settings(beam_energy_kev: float, fwhm_mn_ka_ev: float) -> None:
    if not np.isfinite(beam_energy_kev) or beam_energy_kev <= 0:
        raise SimulationError(f"beam_energy_kev must be > 0 keV (got {beam_energy_kev}); SEMs use 5-30 keV.")
    if not np.isfinite(fwhm_mn_ka_ev) or fwhm_mn_ka_ev <= 0:
        raise SimulationError(f"fwhm_mn_ka_ev must be > 0 eV (got {fwhm_mn_ka_ev}); SDDs have 120-140 eV.")


def reference_spectra(
    minerals: Sequence[str | Mineral],
    axis: EnergyAxis | None = None,
    beam_energy_kev: float = 20.0,
    fwhm: float = 130.0,
    counts: float = 1.0,
) -> np.ndarray:
    """(K, C) noise-free expected spectrum per mineral, each summing to ``counts`` (fwhm: Mn Ka FWHM, eV)."""
    axis = axis or EnergyAxis()
    _check_settings(beam_energy_kev, fwhm)
    mins = [m if isinstance(m, Mineral) else get_mineral(m) for m in minerals]
    if not mins:
        return np.zeros((0, axis.size))
    return counts * np.stack([_reference(m, axis, float(beam_energy_kev), float(fwhm)) for m in mins])


def element_peaks(mineral: str | Mineral, beam_energy_kev: float = 20.0, min_share: float = 0.05) -> list[tuple]:
    """Strongest line per element as (label, energy eV) for elements with >= ``min_share`` of the line weight."""
    m = mineral if isinstance(mineral, Mineral) else get_mineral(mineral)
    energies, weights, labels = characteristic_lines(m, beam_energy_kev)
    out = []
    for el in m.weight_fractions:
        idx = [i for i, lab in enumerate(labels) if lab.split()[0] == el]
        if idx and weights[idx].sum() >= min_share * weights.sum():
            best = idx[int(np.argmax(weights[idx]))]
            out.append((labels[best], float(energies[best])))
    return out


class SpectrumModel:
    """Samples EDS spectra (counts per channel) for class ids of the global vocabulary.

    Expected spectra are computed once per (mineral, calibration, beam, resolution) and cached;
    sampling draws a Poisson total per point and distributes its counts over channels with
    the exact inverse CDF (guide table, Chen & Asau 1974): cost grows with counts, not channels.
    """

    _GUIDE_BITS = 16
    _GUIDE = 1 << _GUIDE_BITS

    def __init__(
        self,
        class_names: Sequence[str],
        axis: EnergyAxis | None = None,
        beam_energy_kev: float = 20.0,
        fwhm_mn_ka_ev: float = 130.0,
        counts_per_spectrum: float = 1000.0,
    ) -> None:
        _check_settings(beam_energy_kev, fwhm_mn_ka_ev)
        if not np.isfinite(counts_per_spectrum) or counts_per_spectrum <= 0:
            raise SimulationError(
                f"counts_per_spectrum must be > 0 (got {counts_per_spectrum}); ~1000 is fast mapping."
            )
        self.class_names = tuple(class_names)
        self.axis = axis or EnergyAxis()
        self.beam_energy_kev = float(beam_energy_kev)
        self.fwhm_mn_ka_ev = float(fwhm_mn_ka_ev)
        self.counts = float(counts_per_spectrum)
        self._minerals = [get_mineral(n) for n in self.class_names]
        self._yield = np.array([VOID_YIELD if m.is_void else 1.0 for m in self._minerals])
        self._tables: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def check(self, class_ids: Sequence[int]) -> None:
        """Compute (and cache) the expected spectra of these classes; raises for unexcitable minerals."""
        for k in class_ids:
            self.reference(int(k))

    def reference(self, class_id: int) -> np.ndarray:
        """(C,) expected spectrum of one class, summing to 1."""
        return _reference(self._minerals[class_id], self.axis, self.beam_energy_kev, self.fwhm_mn_ka_ev)

    def expected(self, class_ids: np.ndarray) -> np.ndarray:
        """(N, C) expected counts for points of the given class ids."""
        ids = np.asarray(class_ids, dtype=np.int64)
        uniq, inv = np.unique(ids, return_inverse=True)
        refs = np.stack([self.reference(int(k)) * self.counts * self._yield[k] for k in uniq]) if len(uniq) else None
        return refs[inv.ravel()] if refs is not None else np.zeros((0, self.axis.size))

    def _table(self, class_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Integer inverse-CDF thresholds (C,) uint64 on a 2^32 scale and the signed int16 guide table."""
        if class_id not in self._tables:
            cdf = np.cumsum(self.reference(class_id))
            thr = np.ceil(cdf / cdf[-1] * 2.0**32).astype(np.uint64)
            thr[-1] = 1 << 32
            slot_lo = np.arange(self._GUIDE, dtype=np.uint64) << np.uint64(32 - self._GUIDE_BITS)
            first = np.searchsorted(thr, slot_lo, side="right")  # channel of the slot's lowest draw
            step_inside = thr[first] < slot_lo + np.uint64(1 << (32 - self._GUIDE_BITS))
            guide = np.where(step_inside, -first - 1, first).astype(np.int16)  # < 0: slot holds a CDF step
            self._tables[class_id] = (thr, guide)
        return self._tables[class_id]

    def sample(self, class_ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(N, C) float32 Poisson counts for points of the given class ids."""
        ids = np.asarray(class_ids, dtype=np.int64).ravel()
        n, c = len(ids), self.axis.size
        if n == 0:
            return np.zeros((0, c), np.float32)
        if self.counts > 0.5 * c:  # dense regime: one Poisson draw per channel is cheaper
            return rng.poisson(self.expected(ids)).astype(np.float32)
        totals = rng.poisson(self.counts * self._yield[ids])
        flat = np.empty(int(totals.sum()), dtype=np.int64)
        pos = 0
        for k in np.unique(ids):  # loop over the few classes present, vectorised over counts
            pts = np.flatnonzero(ids == k)
            m = int(totals[pts].sum())
            flat[pos : pos + m] = np.repeat(pts * c, totals[pts]) + self._draw_channels(int(k), m, rng)
            pos += m
        return np.bincount(flat, minlength=n * c).reshape(n, c).astype(np.float32)

    def _draw_channels(self, class_id: int, m: int, rng: np.random.Generator) -> np.ndarray:
        """m channel indices drawn from the class's spectrum by exact inverse CDF (guide table)."""
        thr, guide = self._table(class_id)
        r = rng.integers(0, 1 << 32, size=m, dtype=np.uint32)
        ch = guide[r >> np.uint32(32 - self._GUIDE_BITS)].astype(np.int64)
        todo = np.flatnonzero(ch < 0)
        ch[todo] = -ch[todo] - 1
        while todo.size:  # draws in a slot holding a CDF step walk forward (few % of draws, few steps)
            up = r[todo] >= thr[ch[todo]]
            todo = todo[up]
            ch[todo] += 1
        return ch
