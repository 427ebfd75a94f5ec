"""Shared pieces of the point (spectrum) encoders: normalisation, energy windows, validation.

Every encoder maps raw spectra ``(N, C)`` counts to ``(N, out_dim)`` features. Buffers that only
depend on the energy calibration (window and rebinning matrices) are non-persistent: they are
rebuilt from the constructor arguments, so a checkpoint loads onto any calibration after
`SpectrumEncoder.set_energy_axis`. Fitted state (PCA, standardisation) is persistent.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from fusionseg.contracts import PointEncoder
from fusionseg.errors import FusionSegError
from fusionseg.sem.meta import EnergyAxis, as_energy_axis
from fusionseg.sem.spectrum import normalise_counts, rebin_matrix

Normalise = Literal["none", "total", "sqrt", "hellinger"]
NORMALISATIONS = ("none", "total", "sqrt", "hellinger")
MN_KA_EV = 5895.0


class EncoderError(FusionSegError):
    """Bad encoder configuration or input; the message names the problem and the fix."""


def detector_fwhm_ev(energy_ev: Tensor, fwhm_mn_ka_ev: float = 130.0) -> Tensor:
    """Si(Li)/SDD peak FWHM in eV at ``energy_ev``: sqrt(FWHM_Mn^2 + 2.5 (E - 5895 eV)) (Fiori & Newbury 1978)."""
    return torch.sqrt((fwhm_mn_ka_ev**2 + 2.5 * (energy_ev - MN_KA_EV)).clamp_min(1.0))


def valid_channel_mask(axis: EnergyAxis, min_energy_ev: float, beam_energy_kev: float) -> Tensor:
    """Channels between ``min_energy_ev`` and the beam energy (excludes the zero-strobe peak and pile-up), (C,)."""
    e = axis.energies_ev()
    return ((e >= min_energy_ev) & (e <= beam_energy_kev * 1000.0)).float()


def check_normalise(mode: str) -> str:
    if mode not in NORMALISATIONS:
        raise EncoderError(f"normalise={mode!r} is not one of {NORMALISATIONS}.")
    return mode


class SpectrumEncoder(PointEncoder):
    """Base class: validates spectra against the energy axis and computes total counts.

    Subclasses set ``out_dim`` in ``__init__`` and implement `encode` on validated float spectra.
    """

    out_dim: int

    def __init__(
        self,
        energy_axis: EnergyAxis | dict | None = None,
        beam_energy_kev: float = 20.0,
        normalise: Normalise = "total",
        min_energy_ev: float = 100.0,
    ) -> None:
        super().__init__()
        if beam_energy_kev <= 0:
            raise EncoderError(f"beam_energy_kev must be > 0 keV, got {beam_energy_kev}.")
        self.beam_energy_kev = float(beam_energy_kev)
        self.normalise = check_normalise(normalise)
        self.min_energy_ev = float(min_energy_ev)
        self.set_energy_axis(as_energy_axis(energy_axis))

    def set_energy_axis(self, energy_axis: EnergyAxis) -> None:
        """Rebuild the calibration-dependent (non-persistent) buffers for another channel calibration."""
        self.energy_axis = energy_axis
        mask = valid_channel_mask(energy_axis, self.min_energy_ev, self.beam_energy_kev)
        if mask.sum() == 0:
            raise EncoderError(
                f"No channel of {energy_axis} lies between {self.min_energy_ev} eV and the beam energy "
                f"{self.beam_energy_kev} keV; check the calibration (offset_ev, scale_ev) and beam_energy_kev."
            )
        self.register_buffer("valid_mask", mask, persistent=False)

    def check(self, spectra: Tensor) -> Tensor:
        """Return ``spectra`` as float (N, C), or raise `EncoderError` naming the mismatch."""
        if spectra.dim() != 2:
            raise EncoderError(f"spectra must be (N, C) counts, got shape {tuple(spectra.shape)}.")
        size = self.energy_axis.size if self.energy_axis is not None else None
        if size is not None and spectra.shape[1] != size:
            raise EncoderError(
                f"spectra have {spectra.shape[1]} channels but the encoder's energy axis has {size}; "
                "call encoder.set_energy_axis(sample.meta.domain.energy_axis) for a different calibration."
            )
        return spectra.float()

    def total_counts(self, spectra: Tensor) -> Tensor:
        """Counts between ``min_energy_ev`` and the beam energy, (N, 1)."""
        return spectra @ self.valid_mask[:, None]

    def fit(self, spectra: Tensor) -> SpectrumEncoder:
        """Fit data-dependent state on training spectra (N, C); the base class has none."""
        self.check(spectra)
        return self

    def encode(self, spectra: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, spectra: Tensor) -> Tensor:
        """Raw counts (N, C) -> features (N, out_dim)."""
        return self.encode(self.check(spectra))

    def extra_repr(self) -> str:
        return f"out_dim={self.out_dim}, normalise={self.normalise!r}, axis={self.energy_axis}"


class Rebinned(SpectrumEncoder):
    """Encoder that first rebins spectra onto a fixed grid (``bin_ev`` wide, ``min_energy_ev`` to the beam
    energy), so fitted or learned weights do not depend on the detector's channel calibration."""

    def __init__(
        self,
        energy_axis: EnergyAxis | dict | None = None,
        beam_energy_kev: float = 20.0,
        normalise: Normalise = "hellinger",
        min_energy_ev: float = 100.0,
        bin_ev: float = 20.0,
    ) -> None:
        if bin_ev <= 0:
            raise EncoderError(f"bin_ev must be > 0 eV, got {bin_ev}.")
        self.bin_ev = float(bin_ev)
        self.num_bins = max(1, math.floor((beam_energy_kev * 1000.0 - min_energy_ev) / bin_ev))
        super().__init__(energy_axis, beam_energy_kev, normalise, min_energy_ev)

    def set_energy_axis(self, energy_axis: EnergyAxis) -> None:
        super().set_energy_axis(energy_axis)
        grid = EnergyAxis(self.num_bins, self.bin_ev, self.min_energy_ev + self.bin_ev / 2)  # bins as channels
        self.register_buffer("rebin", rebin_matrix(energy_axis, grid), persistent=False)

    def rebinned(self, spectra: Tensor) -> Tensor:
        """Normalised counts on the fixed grid, (N, num_bins)."""
        return normalise_counts(spectra @ self.rebin, self.total_counts(spectra), self.normalise)
