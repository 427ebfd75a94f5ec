"""SEM acquisition metadata: the energy calibration of EDS spectra, beam energy and detector resolution.

`SemMeta` is the SEM domain's typed slot ``Sample.meta.domain`` (contract:
`fusionseg.contracts.DomainMeta`): it checks raw spectra (counts >= 0, one per channel of the energy
axis), tells the spectrum encoders their calibration (``model.point_context``) and is stored in
sample files under ``meta.domain`` (its arrays as arrays, `SemMeta.arrays`). It also carries what the
SEM readers, the sparse acquisition and the simulator know of a field (dense cube, measured area,
navigation axes, provenance), so none of it travels in the free-form ``meta.extra``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
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

    def describe(self) -> str:
        """The calibration in words: channels, their width and the energies they cover (eV, keV)."""
        top = (self.offset_ev + self.scale_ev * self.size) / 1000
        return f"{self.size} channels of {self.scale_ev:.4g} eV, {self.offset_ev / 1000:.3g} to {top:.3g} keV"

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


@dataclass
class Simulation:
    """Provenance of a simulated field (`fusionseg.sem.data.synthetic`): rock preset, generator seed,
    mean X-ray counts per spectrum and the BSE image model's parameters."""

    rock: str
    seed: int
    counts_per_spectrum: float
    bse: dict[str, float] = field(default_factory=dict)


_ARRAYS = ("dense_spectra", "measured_mask", "original_target")
_NOTES = ("nav_axes", "eds_metadata", "original_metadata", "source_path", "has_eds", "sampler", "eds_fraction")
_SIDE = {"compare": False, "repr": False}  # side data: equality and repr are the calibration's


@DOMAINS.register("sem")
@dataclass
class SemMeta:
    """SEM/EDS acquisition of one field.

    Calibration (compared by ``==``):

    energy_axis:       `EnergyAxis` of the raw spectra (eV); None: no spectra or unknown.
    beam_energy_kev:   beam energy (keV).
    fwhm_mn_ka_ev:     detector resolution at Mn Ka (eV).
    encoded:           point features are not raw counts (no count checks).

    Side data of readers, acquisition and simulator (None / empty when unknown):

    dense_spectra:     (H, W, C) counts of a dense spectrum image, numpy or a lazy dask array (kept on
                       disk; neither stored in sample files nor counted in memory budgets); the points
                       are drawn from it by `fusionseg.sem.data.acquisition.sparse_acquisition`.
    measured_mask:     (H, W) bool, pixels whose spectrum has counts (the EDS-acquired area).
    original_target:   (H, W) int64 class ids of a labelled field whose ``target`` was removed (for the
                       report's agreement score).
    nav_axes:          navigation axes (y, x) as RosettaSciIO axis dicts (``scale``, ``units``, ...).
    eds_metadata / original_metadata:  the EDS signal's RosettaSciIO metadata dicts.
    source_path:       the file or folder the field was read from.
    has_eds:           False for a folder with an image but no spectra (None: not a folder).
    sampler / eds_fraction:  point sampler and measured share of pixels (0..1] of a sparse acquisition.
    simulation:        `Simulation` provenance of a simulated field.
    """

    domain: ClassVar[str] = "sem"
    energy_axis: EnergyAxis | None = None
    beam_energy_kev: float = 20.0
    fwhm_mn_ka_ev: float = 130.0
    encoded: bool = False
    dense_spectra: Any = field(default=None, **_SIDE)
    measured_mask: np.ndarray | None = field(default=None, **_SIDE)
    original_target: np.ndarray | None = field(default=None, **_SIDE)
    nav_axes: list[dict[str, Any]] = field(default_factory=list, **_SIDE)
    eds_metadata: dict[str, Any] = field(default_factory=dict, **_SIDE)
    original_metadata: dict[str, Any] = field(default_factory=dict, **_SIDE)
    source_path: str | None = field(default=None, **_SIDE)
    has_eds: bool | None = field(default=None, **_SIDE)
    sampler: str | None = field(default=None, **_SIDE)
    eds_fraction: float | None = field(default=None, **_SIDE)
    simulation: Simulation | None = field(default=None, **_SIDE)

    def __post_init__(self) -> None:
        check_positive(self, _POSITIVE, "meta.domain")
        if isinstance(self.energy_axis, dict):
            self.energy_axis = EnergyAxis(**self.energy_axis)
        if isinstance(self.simulation, dict):
            self.simulation = Simulation(**self.simulation)

    def validate(self, sample: Sample) -> None:
        """Raw spectra are counts >= 0 with one value per channel of ``energy_axis``."""
        feats = sample.point_features
        if self.energy_axis is None or self.encoded or feats.shape[1] == 0:
            return
        if len(feats) and float(feats.min()) < 0:  # a reduction: no (N, C) mask on every Sample built (1.4 GB at 8192²)
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

    def arrays(self) -> dict[str, np.ndarray]:
        """The in-memory numpy arrays (dense cube, measured mask, original target); a lazy cube is left out."""
        return {k: v for k in _ARRAYS if isinstance(v := getattr(self, k), np.ndarray)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready calibration and notes (no arrays: `arrays`)."""
        d: dict[str, Any] = {
            "energy_axis": None if self.energy_axis is None else asdict(self.energy_axis),
            "beam_energy_kev": self.beam_energy_kev,
            "fwhm_mn_ka_ev": self.fwhm_mn_ka_ev,
            "encoded": self.encoded,
        }
        d |= {k: getattr(self, k) for k in _NOTES}
        d["simulation"] = None if self.simulation is None else asdict(self.simulation)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SemMeta:
        """From `to_dict` plus `arrays` (a sample file's); missing keys take their defaults (older files)."""
        ax = d.get("energy_axis")
        return cls(
            energy_axis=None
            if ax is None
            else EnergyAxis(int(ax["size"]), float(ax["scale_ev"]), float(ax["offset_ev"])),
            beam_energy_kev=float(d.get("beam_energy_kev", 20.0)),
            fwhm_mn_ka_ev=float(d.get("fwhm_mn_ka_ev", 130.0)),
            encoded=bool(d.get("encoded", False)),
            **{k: d[k] for k in (*_ARRAYS, "simulation") if d.get(k) is not None},
            **{k: d[k] for k in _NOTES if k in d},
        )


def sem_meta(meta: SampleMeta) -> SemMeta:
    """The SEM slot of a sample's metadata; the defaults (no calibration, 20 keV, 130 eV) when it has none."""
    return meta.domain if isinstance(meta.domain, SemMeta) else SemMeta()


def hide_target(sample: Sample, name: str) -> Sample:
    """``sample`` named ``name`` without its ``target``, kept as ``meta.domain.original_target`` (the report scores
    against it; nothing trains on it)."""
    sem = sem_meta(sample.meta)
    if sample.target is not None:
        sem = replace(sem, original_target=sample.target.cpu().numpy())
    return replace(sample, target=None, meta=replace(sample.meta, name=name, domain=sem))


def model_meta(model: Any) -> SemMeta:
    """The calibration and beam energy a `FusionSegModule`'s encoder was built for (its ``point_context``)."""
    return context_meta(model.hparams.get("point_context"))


def context_meta(point_context: dict | None) -> SemMeta:
    """The calibration and beam energy of an encoder's ``point_context`` (a model's or a checkpoint's)."""
    context = point_context or {}
    return SemMeta(as_energy_axis(context.get("energy_axis")), float(context.get("beam_energy_kev", 20.0)))


__all__ = ["EnergyAxis", "SemMeta", "Simulation", "as_energy_axis", "context_meta", "hide_target", "model_meta",
           "sem_meta"]  # fmt: skip
