"""The independent EDS simulator (other_physics): peak positions, detector effects, beam limits, counts, resolution,
and that its physics differs measurably from fusionseg.sem.physics."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import numpy as np
import pytest
import xraydb

from fusionseg.sem.data.synthetic import other_physics as op

FORTY = [
    "SiO2", "Mg2SiO4", "Fe2SiO4", "CaCO3", "CaMg(CO3)2", "KAlSi3O8", "NaAlSi3O8", "CaAl2Si2O8", "FeS2", "CuFeS2",
    "ZnS", "PbS", "Fe3O4", "Fe2O3", "FeTiO3", "TiO2", "ZrSiO4", "BaSO4", "CaSO4", "CaF2",
    "NaCl", "KCl", "Ca5(PO4)3F", "Al2O3", "MgAl2O4", "CaWO4", "SrSO4", "CePO4", "MnCO3", "FeCO3",
    "Cr2O3", "NiO", "Ag", "Au", "MoS2", "SnO2", "Cu2O", "MgSiO3", "CaSiO3", "KMg3AlSi3O10(OH)2",
]  # fmt: skip


def _energies(inst: op.Instrument) -> np.ndarray:
    return inst.offset_ev + inst.channel_ev * np.arange(inst.channels)


def _net(spec: np.ndarray, e: np.ndarray, centre: float, half: float) -> float:
    """Net counts within +-half eV of centre above a background averaged from two flanking windows."""
    peak = np.abs(e - centre) <= half
    lo = (e >= centre - 2.2 * half) & (e < centre - 1.2 * half)
    hi = (e > centre + 1.2 * half) & (e <= centre + 2.2 * half)
    return float(spec[peak].sum() - 0.5 * (spec[lo].mean() + spec[hi].mean()) * peak.sum())


def _ka(el: str) -> float:
    """Intensity-weighted Ka1/Ka2 energy (eV) from xraydb."""
    lines = [ln for name, ln in xraydb.xray_lines(el, initial_level="K").items() if name in ("Ka1", "Ka2")]
    return sum(ln.energy * ln.intensity for ln in lines) / sum(ln.intensity for ln in lines)


def _fwhm(spec: np.ndarray, e: np.ndarray, lo: float, hi: float) -> float:
    """FWHM (eV) of the peak in [lo, hi] eV above a straight background, half-maximum crossings interpolated."""
    i0, i1 = np.searchsorted(e, lo), np.searchsorted(e, hi)
    y = spec[i0:i1] - np.linspace(spec[i0], spec[i1 - 1], i1 - i0)
    k, half = int(np.argmax(y)), y.max() / 2
    left = k - int(np.argmax(y[k::-1] < half))
    right = k + int(np.argmax(y[k:] < half))
    x_left = left + (half - y[left]) / (y[left + 1] - y[left])
    x_right = right - 1 + (y[right - 1] - half) / (y[right - 1] - y[right])
    return float((x_right - x_left) * (e[1] - e[0]))


def test_module_is_independent_of_project_physics():
    tree = ast.parse(Path(op.__file__).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any(x.startswith(("fusionseg.sem.physics", "fusionseg.sem.minerals")) for x in names), names


@pytest.mark.parametrize(
    ("offset", "gain", "channels"), [(0.0, 5.0, 4096), (-470.0, 10.0, 2048), (-95.3, 2.5, 4096), (20.0, 7.5, 2000)]
)
def test_peaks_land_on_xraydb_energies(offset, gain, channels):
    inst = op.Instrument(offset_ev=offset, channel_ev=gain, channels=channels)
    e = _energies(inst)
    axis = op.energy_axis(inst)
    assert (axis.size, axis.scale_ev, axis.offset_ev) == (channels, gain, offset)
    for formula, el in (("SiO2", "Si"), ("CaCO3", "Ca"), ("Fe2O3", "Fe")):
        spec = op.expected_spectrum(formula, inst)
        assert spec.shape == (channels,) and spec.min() >= 0 and spec.sum() == pytest.approx(1.0)
        target = _ka(el)
        window = np.abs(e - target) < 150
        peak = e[window][np.argmax(spec[window])]
        assert abs(peak - target) <= gain, (formula, peak, target)
        assert abs(axis.channel(target) - np.flatnonzero(e == peak)[0]) <= 1.0


def test_si_free_mineral_has_no_si_peak():
    inst = op.Instrument()
    e = _energies(inst)
    calcite, quartz = op.expected_spectrum("CaCO3", inst), op.expected_spectrum("SiO2", inst)
    assert not any(k.startswith("Si ") for k in op.line_intensities("CaCO3", inst))
    assert abs(_net(calcite, e, _ka("Si"), 60)) < 1e-4
    assert _net(quartz, e, _ka("Si"), 60) > 0.25


def test_window_changes_mainly_low_energies():
    e = _energies(op.Instrument())
    spectra = {w: op.expected_spectrum("SiO2", op.Instrument(window=w)) for w in ("none", "polymer", "beryllium")}
    o_share = {w: _net(s, e, _ka("O"), 50) for w, s in spectra.items()}
    assert o_share["none"] > 1.3 * o_share["polymer"] > 1.3 * 10 * o_share["beryllium"]
    mid = (e > 2200) & (e < 8000)
    ratio = spectra["none"] / np.maximum(spectra["polymer"], 1e-30)
    ratio /= np.median(ratio[mid])
    assert np.abs(ratio[mid] - 1).max() < 0.05  # same shape 2.2-8 keV
    assert np.abs(ratio[(e > 150) & (e < 1000)] - 1).max() > 0.3  # very different below 1 keV


def test_lines_above_the_beam_are_absent():
    e = _energies(op.Instrument())
    low, high = op.Instrument(beam_kev=10.0), op.Instrument(beam_kev=20.0)
    w_la = xraydb.xray_lines("W", initial_level="L3")["La1"].energy  # L3 edge 10.2 keV
    lines10 = op.line_intensities("CaWO4", low)
    assert not any(k.startswith("W L") for k in lines10) and "W Ma" in lines10
    assert any(k.startswith("W L") for k in op.line_intensities("CaWO4", high))
    s10, s20 = op.expected_spectrum("CaWO4", low), op.expected_spectrum("CaWO4", high)

    def bump(s: np.ndarray) -> float:
        i = int(np.argmin(np.abs(e - w_la)))
        return float(s[i] / (0.5 * (s[i - 60] + s[i + 60])))

    assert bump(s10) < 1.05 and bump(s20) > 2.0
    assert s10[e > 10500].sum() < 1e-9  # nothing above the beam energy (+ resolution)
    fayalite = op.expected_spectrum("Fe2SiO4", low)  # Fe K edge 7.11 keV < 10 keV: Fe Ka present
    assert _net(fayalite, e, _ka("Fe"), 100) > 0.01


def test_poisson_totals_match_mean_counts():
    inst = op.Instrument(channels=2048, channel_ev=10.0)
    rng = np.random.default_rng(0)
    x = op.simulate(["SiO2", "Fe2SiO4"] * 1500, 400.0, inst, rng)
    assert x.dtype == np.float32 and x.shape == (3000, 2048) and (x >= 0).all() and (x == np.round(x)).all()
    totals = x.sum(1)
    assert abs(totals.mean() - 400.0) < 4 * np.sqrt(400.0 / 3000)
    assert totals.var() == pytest.approx(400.0, rel=0.1)  # Poisson: variance = mean
    mean_fa = x[1::2].mean(0)
    ref = op.expected_spectrum("Fe2SiO4", inst) * 400.0
    assert np.abs(mean_fa - ref).max() < 6 * np.sqrt(ref.max() / 1500)
    y = op.simulate(["SiO2", "CaCO3"], np.array([100.0, 5000.0]), inst, np.random.default_rng(1))
    assert y[1].sum() > 10 * y[0].sum()
    assert op.simulate([], 10.0, inst, rng).shape == (0, 2048)


@pytest.mark.parametrize(("formula", "fwhm_mn"), [("Mn", 135.0), ("Fe", 125.0)])
def test_peak_width_follows_fano(formula, fwhm_mn):
    for tail in (0.0, 0.02):
        inst = op.Instrument(fwhm_mn_ev=fwhm_mn, channel_ev=1.0, channels=8000, tail=tail)
        ka = _ka(formula)
        fano = float(np.sqrt(fwhm_mn**2 + 2.3548**2 * 0.115 * 3.64 * (ka - op.MN_KA_EV)))
        measured = _fwhm(op.expected_spectrum(formula, inst), _energies(inst), ka - 450, ka + 300)
        assert measured == pytest.approx(fano, rel=0.03), (formula, tail, measured, fano)
    assert float(op.Instrument(fwhm_mn_ev=fwhm_mn).fwhm_ev(op.MN_KA_EV)) == pytest.approx(fwhm_mn)


def test_physics_differs_from_project_simulator():
    from fusionseg.sem import physics  # only for the comparison
    from fusionseg.sem.meta import EnergyAxis
    from fusionseg.sem.minerals import Mineral

    axis = EnergyAxis(size=2048, scale_ev=10.0, offset_ev=-470.0)
    e = axis.offset_ev + axis.scale_ev * np.arange(axis.size)
    diffs = {}
    for kv in (15.0, 20.0):
        inst = op.Instrument(beam_kev=kv, fwhm_mn_ev=130.0, channel_ev=10.0, offset_ev=-470.0, channels=2048,
                             takeoff_deg=physics.TAKEOFF_DEG)  # fmt: skip
        for formula, (a, ha), (b, hb) in (
            ("Mg2SiO4", (_ka("Si"), 70), (_ka("Mg"), 60)),
            ("Fe2SiO4", (705, 60), (_ka("Fe"), 110)),
            ("BaSO4", (4466, 90), (_ka("S"), 70)),
        ):
            mine = op.expected_spectrum(formula, inst)
            theirs = physics.reference_spectra([Mineral.from_formula("x", formula, 3.5)], axis, kv, 130.0)[0]
            diffs[formula, kv] = _net(mine, e, a, ha) / _net(mine, e, b, hb) / (_net(theirs, e, a, ha) / _net(
                theirs, e, b, hb)) - 1.0  # fmt: skip
    assert abs(diffs["Mg2SiO4", 15.0]) > 0.05, diffs  # Si/Mg Ka in forsterite
    assert max(abs(v) for v in diffs.values()) > 0.2, diffs


def test_phi_rho_z_closed_form_matches_numerical_depth_integral():
    fr = op._fractions("Fe2SiO4")
    m = op._Matrix.of(fr)
    z = np.linspace(0.0, 3e-3, 200001)
    for ec, chi in ((0.532, 3000.0), (1.839, 800.0), (7.112, 60.0)):
        phi = op.phi_rho_z(z, ec, 15.0, fr)
        numeric = np.trapezoid(phi * np.exp(-chi * z), z) / np.trapezoid(phi, z)
        closed = float(op._absorption(np.array([chi]), np.array([ec]), 15.0, m)[0])
        assert closed == pytest.approx(numeric, rel=1e-4)
        assert phi[0] == pytest.approx(1.0 + 2.8 * m.eta * (1 - 0.9 * ec / 15.0))  # Reuter surface ionisation
        assert phi.argmax() > 0  # subsurface maximum


def test_inputs_options_and_speed():
    inst = op.Instrument()
    a = op.expected_spectrum("Mg2SiO4", inst)
    fr = dict(op._fractions("Mg2SiO4"))
    assert np.allclose(op.expected_spectrum({k: 2 * v for k, v in fr.items()}, inst), a)
    kramers = op.expected_spectrum("Mg2SiO4", op.Instrument(continuum="kramers"))
    assert 0.01 < np.abs(kramers - a).sum() < 0.5
    coated = op.expected_spectrum("SiO2", op.Instrument(coating_nm=20.0))
    e = _energies(inst)
    assert _net(coated, e, 525, 50) < 0.97 * _net(op.expected_spectrum("SiO2", inst), e, 525, 50)
    no_escape = op.expected_spectrum("Fe2O3", op.Instrument(escape=False))
    esc = _ka("Fe") - 1740.0
    with_escape = op.expected_spectrum("Fe2O3", inst)
    assert _net(with_escape, e, esc, 60) > 1e-4 > abs(_net(no_escape, e, esc, 60))
    for bad in (dict(window="glass"), dict(fwhm_mn_ev=100.0), dict(continuum="x"), dict(beam_kev=-1.0)):
        with pytest.raises(ValueError):
            op.Instrument(**bad)
    with pytest.raises(ValueError):
        op.expected_spectrum("Xx2O3", inst)
    fresh = op.Instrument(beam_kev=17.5, fwhm_mn_ev=128.0)
    t = time.perf_counter()
    spectra = np.stack([op.expected_spectrum(f, fresh) for f in FORTY])
    assert time.perf_counter() - t < 6.0  # ~0.5 s warm, ~1.5 s cold on one core
    assert np.allclose(spectra.sum(1), 1.0) and np.isfinite(spectra).all()
