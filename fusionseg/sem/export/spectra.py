"""Mean spectra of the phases of a map and an EDS ``.hspy`` file of them (phases are named by `segment.naming`).

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
