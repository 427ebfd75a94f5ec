"""Mean spectra of the phases of a map: cluster names from their dominant elements, an EDS ``.hspy`` file.

- `dominant_elements`: the elements with the most net counts (window counts above the continuum,
  estimated by a wide median filter) in a spectrum: names clusters by composition ("Si-Al-K");
- `mean_spectra`: each phase's (or cluster's) mean measured spectrum from its points;
- `write_mean_spectra_hspy`: those spectra as a HyperSpy EDS_SEM signal (one spectrum per phase on a
  calibrated energy axis in keV), readable by ``hs.load`` / exspy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fusionseg.sample import IGNORE_INDEX
from fusionseg.sem.meta import EnergyAxis


def principal_line_ev(element: str, beam_energy_kev: float) -> float:
    """Energy (eV) of the element's strongest line in the highest family the beam excites well (overvoltage > 1.5).

    Kα for light elements, Lα for Pb or Ba: a heavy element's M or L lines would sit on a light one's K line
    (Pb Mα on S Kα, Ti L on O K), its highest well-excited family rarely does.
    """
    import xraydb

    lines = xraydb.xray_lines(element, excitation_energy=beam_energy_kev * 1000.0)
    for family, edge in (("K", "K"), ("L", "L3"), ("M", "M5")):
        try:
            e_edge = xraydb.xray_edge(element, edge).energy
        except (ValueError, AttributeError, KeyError):
            continue
        chosen = [ln for ln in lines.values() if ln.initial_level.startswith(family)]
        if chosen and e_edge * 1.5 < beam_energy_kev * 1000.0:
            return float(max(chosen, key=lambda ln: ln.intensity).energy)
    return float(max(lines.values(), key=lambda ln: ln.intensity).energy)


def dominant_elements(
    spectrum: np.ndarray, energy_axis: EnergyAxis, beam_energy_kev: float = 20.0, n: int = 3
) -> list[str]:
    """Up to ``n`` element symbols with the most net counts at their principal line in ``spectrum`` (C,).

    Net counts: counts above the continuum (a 61-channel median filter, wider than any peak at 10 eV per
    channel) in a window of one detector FWHM around `principal_line_ev`; common rock-forming elements.
    """
    from scipy.ndimage import median_filter

    from fusionseg.sem.encoders.spectral import DEFAULT_ELEMENTS
    from fusionseg.sem.physics import fwhm_ev

    x = np.asarray(spectrum, dtype=np.float64)
    net = np.clip(x - median_filter(x, size=61, mode="nearest"), 0, None)
    energies = energy_axis.energies_ev().numpy()
    score = {}
    for el in DEFAULT_ELEMENTS:
        e = principal_line_ev(el, beam_energy_kev)
        half = float(fwhm_ev(e)) / 2
        score[el] = float(net[(energies >= e - half) & (energies <= e + half)].sum())
    top = max(score.values()) if score else 0.0
    ranked = sorted(score, key=lambda el: -score[el])
    return [el for el in ranked[:n] if top > 0 and score[el] > 0.05 * top]


def mean_spectra(spectra: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(K, C) mean spectrum of each class's points and (K,) point counts (0 rows for classes without points)."""
    from fusionseg.sem.identify import cluster_references

    ok = (labels != IGNORE_INDEX) & (labels < num_classes)
    counts = np.bincount(labels[ok], minlength=num_classes).astype(np.int64)
    means = np.zeros((num_classes, np.shape(spectra)[1]))
    if ok.any():  # summed in float64 chunks (identify.cluster_references), not a float64 copy of every spectrum;
        # the other points go to an extra row that is dropped (masking the spectra would copy them all)
        target = torch.from_numpy(np.where(ok, labels, num_classes)).long()
        sums = cluster_references(torch.as_tensor(np.asarray(spectra)), target).numpy()[:num_classes]
        means[: len(sums)] = sums
    return means / np.maximum(counts, 1)[:, None], counts


def cluster_names(
    spectra: np.ndarray, labels: np.ndarray, names: tuple[str, ...], energy_axis: EnergyAxis, beam_energy_kev: float
) -> tuple[str, ...]:
    """``cluster-k`` names extended with each cluster's dominant elements: ``cluster-0 (Si-Al-K)``."""
    means, counts = mean_spectra(spectra, labels, len(names))
    out = []
    for name, mean, count in zip(names, means, counts, strict=True):
        elements = dominant_elements(mean, energy_axis, beam_energy_kev) if count else []
        out.append(f"{name} ({'-'.join(elements)})" if elements and name.startswith("cluster-") else name)
    return tuple(out)


def write_mean_spectra_hspy(
    path: Path,
    spectra: np.ndarray,
    labels: np.ndarray,
    class_names: tuple[str, ...],
    energy_axis: EnergyAxis,
    beam_energy_kev: float,
    title: str = "mean spectra",
) -> Path:
    """Mean spectrum of each phase with points as an EDS_SEM ``.hspy`` (navigation: phase; signal: energy, keV)."""
    from rsciio.hspy import file_writer

    from fusionseg.export.writers import atomic_path

    means, counts = mean_spectra(spectra, labels, len(class_names))
    keep = np.flatnonzero(counts)
    signal = {
        "data": means[keep].astype(np.float32),
        "axes": [
            {"name": "phase", "size": len(keep), "offset": 0.0, "scale": 1.0, "units": "", "navigate": True},
            {
                "name": "Energy",
                "size": energy_axis.size,
                "offset": energy_axis.offset_ev / 1000.0,
                "scale": energy_axis.scale_ev / 1000.0,
                "units": "keV",
                "navigate": False,
            },
        ],  # fmt: skip
        "metadata": {
            "General": {"title": title},
            "Signal": {"signal_type": "EDS_SEM", "quantity": "X-rays (counts, mean per spectrum)"},
            "Acquisition_instrument": {"SEM": {"beam_energy": float(beam_energy_kev)}},
            "Sample": {
                "phases": [class_names[k] for k in keep],
                "points_per_phase": counts[keep].tolist(),
            },
        },
        "original_metadata": {},
        "tmp_parameters": {},
        "attributes": {"_lazy": False, "ragged": False},
        "learning_results": {},
        "models": {},
        "package_info": {"name": "fusionseg", "version": "0.1.0"},
    }
    with atomic_path(path) as tmp:
        file_writer(str(tmp), signal, show_progressbar=False)
    return path
