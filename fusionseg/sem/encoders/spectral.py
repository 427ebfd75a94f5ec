"""Fixed and fitted spectrum encoders: element windows (xraydb lines), PCA."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import xraydb
from torch import Tensor

from fusionseg.registry import POINT_ENCODERS
from fusionseg.sem.encoders.base import (
    EncoderError,
    Normalise,
    Rebinned,
    SpectrumEncoder,
    detector_fwhm_ev,
)
from fusionseg.sem.meta import EnergyAxis
from fusionseg.sem.spectrum import normalise_counts, overlap_matrix, principal_axes

DEFAULT_ELEMENTS: tuple[str, ...] = (
    "C", "O", "F", "Na", "Mg", "Al", "Si", "P", "S", "Cl", "K", "Ca",
    "Ti", "Mn", "Fe", "Cu", "Zn", "Zr", "Ba", "Ce", "Pb",
)  # fmt: skip
"""Common rock-forming and ore elements."""


# Electrons per subshell: ionisation of a subshell scales with its occupancy.
_OCCUPANCY = {"K": 2, "L1": 2, "L2": 2, "L3": 4, "M1": 2, "M2": 2, "M3": 4, "M4": 4, "M5": 6}


def excitable_lines(
    element: str, beam_energy_kev: float, min_relative_intensity: float = 0.1, min_energy_ev: float = 100.0
) -> Tensor:
    """Energies (eV) of the lines of ``element`` the beam can excite (edge < E0, from xraydb).

    A line's strength is its xraydb intensity (relative within its initial level) x the level's
    fluorescence yield x the level's occupancy (a first-order ionisation weight); lines weaker than
    ``min_relative_intensity`` x the strongest line of the same family (K, L, M) or below
    ``min_energy_ev`` are dropped.
    """
    try:
        lines = xraydb.xray_lines(element, excitation_energy=beam_energy_kev * 1000.0)
    except ValueError as err:
        raise EncoderError(f"Unknown element symbol {element!r} ({err}); use symbols like 'Si', 'Fe'.") from err
    strength = {
        name: ln.intensity * xraydb.xray_edge(element, ln.initial_level).fyield * _OCCUPANCY.get(ln.initial_level, 2)
        for name, ln in lines.items()
    }
    family_max: dict[str, float] = {}
    for name, ln in lines.items():
        family_max[ln.initial_level[0]] = max(family_max.get(ln.initial_level[0], 0.0), strength[name])
    energies = [
        ln.energy
        for name, ln in lines.items()
        if strength[name] > 0
        and strength[name] >= min_relative_intensity * family_max[ln.initial_level[0]]
        and ln.energy >= min_energy_ev
    ]
    return torch.tensor(sorted(energies), dtype=torch.float64)


@POINT_ENCODERS.register("element-windows", "windows")
class ElementWindows(SpectrumEncoder):
    """Counts integrated in windows around each element's excitable X-ray lines.

    Each line gets a box window ``width_fwhm`` x detector FWHM(E) wide centred on its energy; an
    element's window is the union (max of channel fractions) of its lines' windows. Precomputed as
    a (C, n_elements) matrix, so forward is one matmul. Window counts are then normalised
    (``normalise``, default fraction of total counts) and, after `fit`, standardised per element.
    Overlapping lines of different elements (e.g. S Ka / Pb Ma, Ti Ka / Ba La) share counts.
    Lines below ``min_line_energy_ev`` (e.g. Si L at 92-148 eV, absorbed by the detector window)
    are skipped; ``min_energy_ev`` bounds the channels counted in the total.
    """

    def __init__(
        self,
        energy_axis: EnergyAxis | dict | None = None,
        beam_energy_kev: float = 20.0,
        elements: Sequence[str] = DEFAULT_ELEMENTS,
        normalise: Normalise = "total",
        fwhm_mn_ka_ev: float = 130.0,
        width_fwhm: float = 1.2,
        min_relative_intensity: float = 0.1,
        min_line_energy_ev: float = 200.0,
        min_energy_ev: float = 100.0,
        standardise: bool = True,
    ) -> None:
        if isinstance(elements, str) or len(elements) == 0:
            raise EncoderError(f"elements must be a non-empty list of symbols like ['Si', 'Fe'], got {elements!r}.")
        if len(set(elements)) != len(elements):
            raise EncoderError(f"elements lists a symbol twice: {list(elements)}.")
        if width_fwhm <= 0:
            raise EncoderError(f"width_fwhm must be > 0 (window width in detector FWHMs), got {width_fwhm}.")
        self.elements = tuple(elements)
        self.fwhm_mn_ka_ev = float(fwhm_mn_ka_ev)
        self.width_fwhm = float(width_fwhm)
        self.out_dim = len(self.elements)
        self.standardise = standardise
        lines = [
            excitable_lines(el, beam_energy_kev, min_relative_intensity, min_line_energy_ev) for el in self.elements
        ]
        self._line_energy = torch.cat(lines)
        self._line_element = torch.repeat_interleave(torch.arange(self.out_dim), torch.tensor([len(x) for x in lines]))
        super().__init__(energy_axis, beam_energy_kev, normalise, min_energy_ev)
        self.register_buffer("feature_mean", torch.zeros(self.out_dim))
        self.register_buffer("feature_std", torch.ones(self.out_dim))

    def set_energy_axis(self, energy_axis: EnergyAxis) -> None:
        super().set_energy_axis(energy_axis)
        half = self.width_fwhm * detector_fwhm_ev(self._line_energy, self.fwhm_mn_ka_ev) / 2
        per_line = overlap_matrix(energy_axis, self._line_energy - half, self._line_energy + half)  # (C, L)
        index = self._line_element[None].expand_as(per_line)
        weights = per_line.new_zeros(energy_axis.size, self.out_dim).scatter_reduce(1, index, per_line, "amax")
        empty = [el for el, w in zip(self.elements, weights.sum(0).tolist(), strict=True) if w == 0]
        if empty:
            raise EncoderError(
                f"No excitable X-ray line of {empty} falls on the energy axis {energy_axis} at "
                f"{self.beam_energy_kev} keV; drop them from `elements` or check the calibration."
            )
        self.register_buffer("weights", weights, persistent=False)

    def window_features(self, spectra: Tensor) -> Tensor:
        """Normalised window counts before standardisation, (N, n_elements)."""
        return normalise_counts(spectra @ self.weights, self.total_counts(spectra), self.normalise)

    @torch.no_grad()
    def fit(self, spectra: Tensor) -> ElementWindows:
        """Store per-element mean and std of the training features (if ``standardise``)."""
        feats = self.window_features(self.check(spectra))
        if self.standardise and len(feats) > 1:
            self.feature_mean.copy_(feats.mean(0))
            self.feature_std.copy_(feats.std(0).clamp_min(1e-6))
        return self

    def encode(self, spectra: Tensor) -> Tensor:
        return (self.window_features(spectra) - self.feature_mean) / self.feature_std


@POINT_ENCODERS.register("pca")
class PCAEncoder(Rebinned):
    """Principal components of normalised spectra, rebinned onto a fixed ``bin_ev`` grid.

    `fit` computes the mean and the leading ``n_components`` right singular vectors (sign fixed so
    the largest loading is positive); ``whiten`` scales components to unit training variance.
    """

    def __init__(
        self,
        energy_axis: EnergyAxis | dict | None = None,
        beam_energy_kev: float = 20.0,
        n_components: int = 16,
        normalise: Normalise = "hellinger",
        whiten: bool = True,
        bin_ev: float = 20.0,
        min_energy_ev: float = 100.0,
    ) -> None:
        super().__init__(energy_axis, beam_energy_kev, normalise, min_energy_ev, bin_ev)
        if not 1 <= n_components <= self.num_bins:
            raise EncoderError(f"n_components must be in 1..{self.num_bins} (energy bins), got {n_components}.")
        self.out_dim = int(n_components)
        self.whiten = whiten
        self.register_buffer("mean", torch.zeros(self.num_bins))
        self.register_buffer("components", torch.zeros(self.out_dim, self.num_bins))
        self.register_buffer("scale", torch.ones(self.out_dim))
        self.register_buffer("fitted", torch.tensor(False))

    @torch.no_grad()
    def fit(self, spectra: Tensor) -> PCAEncoder:
        """Fit on training spectra (N, C) counts; needs N >= n_components."""
        x = self.rebinned(self.check(spectra))
        if len(x) < self.out_dim:
            raise EncoderError(f"PCA with n_components={self.out_dim} needs at least that many spectra, got {len(x)}.")
        mean, comps, std = principal_axes(x, self.out_dim)
        self.mean.copy_(mean.float())
        self.components.copy_(comps.float())
        self.scale.copy_(std.clamp_min(1e-8).float() if self.whiten else torch.ones_like(self.scale))
        self.fitted.fill_(True)
        return self

    def encode(self, spectra: Tensor) -> Tensor:
        if not bool(self.fitted):
            raise EncoderError("PCA encoder is not fitted; call encoder.fit(training_spectra) first.")
        return (self.rebinned(spectra) - self.mean) @ self.components.T / self.scale
