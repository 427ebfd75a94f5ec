"""Realism of the simulator against the real files in ../shared/data/real (skipped when absent).

Tolerances (printed numbers show the margins):
* EDS line positions: peak centres fitted (Gaussian + linear background, +-80 eV) on the simulated
  spectra and on the summed spectrum of the Bruker 30x30 file, both on the file's calibration.
  Absolute difference <= 1.5 channels (the README measures the file's own calibration off by up to
  ~1.5 channels at 3-4 keV); after removing the common (calibration) offset, <= 1 channel.
* BSE: in granite, quartz/albite/orthoclase mean levels differ by less than the per-pixel noise std;
  galena, pyrite and magnetite lie > 2.5 per-pixel noise std and > 5x the felsic spread above them.
* Texture vs the Repka (2025) field: area-weighted median equivalent grain diameter within a factor
  of 3, number of phases present within a factor of 2, largest phase fraction within a factor of 2.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import curve_fit

from fusionseg.sem.data.synthetic import class_index, reference_spectra, simulate_field
from fusionseg.sem.data.synthetic.field import render_bse
from fusionseg.sem.meta import EnergyAxis

warnings.filterwarnings("ignore", message="Elam tables")

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
BCF = REAL / "bruker" / "30x30_instructively_packed_16bit_compressed.bcf"
REPKA = REAL / "repka2025"
needs = pytest.mark.skipif(not REAL.is_dir(), reason=f"real data folder {REAL} is absent")

# element: (mineral that shows it, xraydb K-alpha1 energy in eV)
VISIBLE = {
    "O": ("quartz", 524.9),
    "Mg": ("forsterite", 1253.6),
    "Al": ("anorthite", 1486.7),
    "Si": ("quartz", 1740.0),
    "K": ("orthoclase", 3313.8),
    "Ca": ("calcite", 3691.7),
    "Ti": ("rutile", 4510.8),
    "Fe": ("fayalite", 6403.8),
}


def _peak_centre(energy: np.ndarray, spec: np.ndarray, e0: float) -> float:
    """Centre (eV) of a Gaussian + linear background fitted within +-80 eV of e0."""
    m = np.abs(energy - e0) < 80
    x, y = energy[m], spec[m] / spec[m].max()

    def model(x, a, mu, s, b0, b1):
        return a * np.exp(-0.5 * ((x - mu) / s) ** 2) + b0 + b1 * (x - mu)

    p, _ = curve_fit(model, x, y, p0=[1 - y.min(), x[np.argmax(y)], 40, y.min(), 0], maxfev=5000)
    return float(p[1])


@needs
def test_line_positions_match_bruker_spectrum():
    from rsciio.bruker import file_reader

    eds = file_reader(str(BCF))[-1]
    cal = eds["axes"][-1]
    axis = EnergyAxis(eds["data"].shape[-1], cal["scale"] * 1000.0, cal["offset"] * 1000.0)
    real = eds["data"].reshape(-1, axis.size).sum(0).astype(np.float64)
    energy = axis.energies_ev().numpy()
    sim = reference_spectra([m for m, _ in VISIBLE.values()], axis, 20.0, 130.0)
    diffs = {}
    for (el, (_, e0)), spec in zip(VISIBLE.items(), sim, strict=True):
        diffs[el] = (_peak_centre(energy, spec, e0) - _peak_centre(energy, real, e0)) / axis.scale_ev
    d = np.array(list(diffs.values()))
    print("simulated - real peak centre (channels):", {k: round(v, 2) for k, v in diffs.items()})
    print("after removing the common offset", round(float(np.median(d)), 2), ":", np.round(d - np.median(d), 2))
    assert np.all(np.abs(d) <= 1.5)
    assert np.all(np.abs(d - np.median(d)) <= 1.0)


def test_bse_confusable_and_distinct_minerals():
    """Quartz/albite/orthoclase overlap in BSE; galena, pyrite, magnetite stand apart (granite, several fields)."""
    names = ("quartz", "albite", "orthoclase", "galena", "pyrite", "magnetite")
    labels = np.repeat(np.array([class_index(n) for n in names]), 64 * 64).reshape(6 * 64, 64)
    worst = []
    for seed in range(8):  # per-field random gain/offset/noise: check every field
        img, _ = render_bse(labels, np.random.default_rng(seed))
        blocks = img.reshape(6, 64, 64)[:, 4:-4, 4:-4]  # away from block edges (blur)
        mean, std = blocks.mean((1, 2)), blocks.std((1, 2))
        silicate_spread = mean[:3].max() - mean[:3].min()
        noise = std[:3].min()
        gap = mean[3:].min() - mean[:3].max()
        worst.append((silicate_spread / noise, gap / noise, gap / silicate_spread))
        print(f"seed {seed}: means {dict(zip(names, np.round(mean, 3), strict=True))} noise std {noise:.3f}")
    worst = np.array(worst)
    print(
        "max (qz/ab/or spread / noise std):",
        worst[:, 0].max().round(2),
        "min (heavy gap / noise):",
        worst[:, 1].min().round(2),
    )
    assert worst[:, 0].max() < 1.0
    assert worst[:, 1].min() > 2.5 and worst[:, 2].min() > 5.0
    # and inside a simulated granite field the three felsic minerals are present and confusable
    fld = simulate_field("granite", 192, seed=11)
    means = [fld.bse[fld.labels == class_index(n)].mean() for n in names[:3]]
    stds = [fld.bse[fld.labels == class_index(n)].std() for n in names[:3]]
    print("granite field means", np.round(means, 3), "stds", np.round(stds, 3))
    assert max(means) - min(means) < min(stds)


def _texture_stats(phases: np.ndarray) -> dict[str, float]:
    from skimage.measure import label

    _, inv, counts = np.unique(phases, return_inverse=True, return_counts=True)
    comps = label(inv.reshape(phases.shape) + 1, connectivity=1, background=0)
    areas = np.bincount(comps.ravel())[1:]
    diam = 2 * np.sqrt(areas / np.pi)
    order = np.argsort(diam)
    cum = np.cumsum(areas[order]) / areas.sum()
    return {
        "area_weighted_median_diameter_px": float(diam[order][np.searchsorted(cum, 0.5)]),
        "phases": int(len(counts)),
        "largest_phase_fraction": float(counts.max() / phases.size),
    }


@needs
def test_texture_statistics_vs_repka_field():
    import tifffile

    real = _texture_stats(tifffile.imread(REPKA / "phases.tiff"))
    sims = [_texture_stats(simulate_field("granite", 150, seed=s).labels) for s in range(4)]
    sim = {k: float(np.median([s[k] for s in sims])) for k in real}
    print("real Repka field:", real)
    print("simulated granite (median of 4 fields, 150x150 px at 1.5 um/px):", sim)
    for key, factor in (("area_weighted_median_diameter_px", 3.0), ("phases", 2.0), ("largest_phase_fraction", 2.0)):
        ratio = sim[key] / real[key]
        assert 1 / factor <= ratio <= factor, f"{key}: simulated {sim[key]} vs real {real[key]}"
