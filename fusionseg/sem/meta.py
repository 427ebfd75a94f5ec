"""SEM acquisition metadata: the energy calibration of EDS spectra, beam energy and detector resolution.

`SemMeta` is the SEM domain's typed slot ``Sample.meta.domain`` (contract:
`fusionseg.contracts.DomainMeta`): it checks raw spectra (counts >= 0, one per channel of the energy
axis), tells the spectrum encoders their calibration (``model.point_context``) and is stored in
sample files under ``meta.domain``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from fusionseg.registry import DOMAINS
from fusionseg.sample import SampleError, SampleMeta, check_positive, real_number

if TYPE_CHECKING:
    from fusionseg.sample import Sample


@dataclass(frozen=True)
class EnergyAxis:
    """Calibration of spectrum channels: energy(channel i) = offset_ev + i * scale_ev (eV)."""

    size: int = 2048
    scale_ev: float = 10.0
    offset_ev: float = -470.0

    def __post_init__(self) -> None:
        size, scale, offset = self.size, real_number(self.scale_ev), real_number(self.offset_ev)
        if isinstance(size, bool) or not isinstance(size, int | np.integer) or size <= 0:
            raise SampleError(f"EnergyAxis.size must be a whole number of channels > 0, got {size!r}.")
        if scale is None or not math.isfinite(scale) or scale <= 0:
            raise SampleError(
                f"EnergyAxis.scale_ev must be a finite channel width > 0 in eV, got {self.scale_ev!r}; take it from "
                "the spectrum file's calibration (e.g. 10 eV per channel)."
            )
        if offset is None or not math.isfinite(offset):
            raise SampleError(f"EnergyAxis.offset_ev must be a finite energy in eV, got {self.offset_ev!r}.")
        object.__setattr__(self, "size", int(size))

    def energies_ev(self) -> Tensor:
        """Channel centre energies in eV, shape (size,)."""
        return self.offset_ev + self.scale_ev * torch.arange(self.size, dtype=torch.float64)

    def channel(self, energy_ev: float) -> float:
        """Fractional channel index of an energy in eV."""
        return (energy_ev - self.offset_ev) / self.scale_ev


def as_energy_axis(value: EnergyAxis | dict | None) -> EnergyAxis:
    """An `EnergyAxis` from itself, its dict (a checkpoint's hyper-parameters) or None (the default calibration)."""
    if value is None:
        return EnergyAxis()
    return value if isinstance(value, EnergyAxis) else EnergyAxis(**value)


_POSITIVE = {
    "beam_energy_kev": "beam energy in keV (e.g. 20)",
    "fwhm_mn_ka_ev": "detector resolution at Mn Ka in eV (e.g. 130)",
}


@DOMAINS.register("sem")
@dataclass
class SemMeta:
    """SEM/EDS acquisition: ``energy_axis`` of the raw spectra (None: no spectra or unknown), beam energy (keV),
    detector FWHM at Mn Ka (eV); ``encoded``: point features are not raw counts (no count checks)."""

    domain: ClassVar[str] = "sem"
    energy_axis: EnergyAxis | None = None
    beam_energy_kev: float = 20.0
    fwhm_mn_ka_ev: float = 130.0
    encoded: bool = False

    def __post_init__(self) -> None:
        check_positive(self, _POSITIVE, "meta.domain")
        if isinstance(self.energy_axis, dict):
            self.energy_axis = EnergyAxis(**self.energy_axis)

    def validate(self, sample: Sample) -> None:
        """Raw spectra are counts >= 0 with one value per channel of ``energy_axis``."""
        feats = sample.point_features
        if self.energy_axis is None or self.encoded or feats.shape[1] == 0:
            return
        if len(feats) and (feats < 0).any():
            i = int((feats < 0).any(1).nonzero()[0])
            raise SampleError(
                f"point_features hold negative X-ray counts ({int((feats < 0).any(1).sum())} spectra, first: point "
                f"{i}, min {float(feats.min()):g}); raw spectra are counts >= 0. Export raw counts (not "
                "background-subtracted), or set meta.domain.encoded=True for features that are not counts."
            )
        if feats.shape[1] != self.energy_axis.size:
            raise SampleError(
                f"point_features have {feats.shape[1]} channels but meta.domain.energy_axis.size is "
                f"{self.energy_axis.size}; fix the calibration or set meta.domain.encoded=True."
            )

    def encoder_context(self) -> dict[str, Any]:
        """What spectrum encoders are built with: the calibration (default one when unknown) and beam energy."""
        return {"energy_axis": asdict(as_energy_axis(self.energy_axis)), "beam_energy_kev": self.beam_energy_kev}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SemMeta:
        ax = d.get("energy_axis")
        return cls(
            energy_axis=None
            if ax is None
            else EnergyAxis(int(ax["size"]), float(ax["scale_ev"]), float(ax["offset_ev"])),
            beam_energy_kev=float(d.get("beam_energy_kev", 20.0)),
            fwhm_mn_ka_ev=float(d.get("fwhm_mn_ka_ev", 130.0)),
            encoded=bool(d.get("encoded", False)),
        )


def sem_meta(meta: SampleMeta) -> SemMeta:
    """The SEM slot of a sample's metadata; the defaults (no calibration, 20 keV, 130 eV) when it has none."""
    return meta.domain if isinstance(meta.domain, SemMeta) else SemMeta()


def model_meta(model: Any) -> SemMeta:
    """The calibration and beam energy a `FusionSegModule`'s encoder was built for (its ``point_context``)."""
    context = model.hparams.get("point_context") or {}
    return SemMeta(as_energy_axis(context.get("energy_axis")), float(context.get("beam_energy_kev", 20.0)))


__all__ = ["EnergyAxis", "SemMeta", "as_energy_axis", "model_meta", "sem_meta"]
