"""`Sample`: the one data model every stage speaks (image + sparse point measurements)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

IGNORE_INDEX = -1
"""Target value for pixels/points without a label; losses and metrics skip it."""


class SampleError(ValueError):
    """A `Sample` field is malformed; the message names the field and the fix."""


@dataclass(frozen=True)
class EnergyAxis:
    """Calibration of spectrum channels: energy(channel i) = offset_ev + i * scale_ev (eV)."""

    size: int = 2048
    scale_ev: float = 10.0
    offset_ev: float = -470.0

    def __post_init__(self) -> None:
        if self.size <= 0 or self.scale_ev <= 0:
            raise SampleError(
                f"EnergyAxis needs size > 0 and scale_ev > 0 (got size={self.size}, scale_ev={self.scale_ev}); "
                "take them from the spectrum file's calibration."
            )

    def energies_ev(self) -> Tensor:
        """Channel centre energies in eV, shape (size,)."""
        return self.offset_ev + self.scale_ev * torch.arange(self.size, dtype=torch.float64)

    def channel(self, energy_ev: float) -> float:
        """Fractional channel index of an energy in eV."""
        return (energy_ev - self.offset_ev) / self.scale_ev


@dataclass
class SampleMeta:
    """Acquisition metadata. Units: keV, eV, micrometres."""

    class_names: tuple[str, ...] = ()
    energy_axis: EnergyAxis | None = None
    beam_energy_kev: float = 20.0
    fwhm_mn_ka_ev: float = 130.0
    pixel_size_um: float = 1.0
    name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Sample:
    """A dense image plus sparse point measurements, validated at construction.

    image:          (C, H, W) float, e.g. C=1 normalised BSE.
    point_coords:   (N, 2) float pixel coordinates (row, col); sub-pixel allowed.
    point_features: (N, D) float, raw spectra (counts per channel) or encoded features.
    target:         optional (H, W): int64 class ids (``IGNORE_INDEX`` = unlabelled), or float values
                    for regression (NaN = unlabelled; kept float).
    point_target:   optional (N,): int64 class ids of the measured points, or float values.
    meta:           `SampleMeta` (class names, energy calibration, beam energy, pixel size).
    """

    image: Tensor
    point_coords: Tensor
    point_features: Tensor
    meta: SampleMeta = field(default_factory=SampleMeta)
    target: Tensor | None = None
    point_target: Tensor | None = None

    def __post_init__(self) -> None:
        self.image = _as_float(self.image, "image")
        self.point_coords = _as_float(self.point_coords, "point_coords")
        self.point_features = _as_float(self.point_features, "point_features")
        self.target = _as_target(self.target)
        self.point_target = _as_target(self.point_target)
        self.validate()

    @property
    def height(self) -> int:
        return int(self.image.shape[1])

    @property
    def width(self) -> int:
        return int(self.image.shape[2])

    @property
    def num_points(self) -> int:
        return int(self.point_coords.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.meta.class_names)

    def validate(self) -> None:
        """Raise `SampleError` naming the first malformed field and how to fix it."""
        img = self.image
        if img.dim() == 2:
            raise SampleError(f"image has shape {tuple(img.shape)}; add a channel axis: image[None] -> (1, H, W).")
        if img.dim() != 3 or min(img.shape) == 0:
            raise SampleError(f"image must be (C, H, W) with all sizes > 0, got {tuple(img.shape)}.")
        if not torch.isfinite(img).all():
            raise SampleError("image contains NaN or inf; fill or mask those pixels before building a Sample.")
        pts, feats = self.point_coords, self.point_features
        if pts.dim() != 2 or pts.shape[1] != 2:
            raise SampleError(f"point_coords must be (N, 2) (row, col) in pixels, got {tuple(pts.shape)}.")
        if feats.dim() != 2 or feats.shape[0] != pts.shape[0]:
            raise SampleError(
                f"point_features must be (N, D) with N = {pts.shape[0]} rows like point_coords, "
                f"got {tuple(feats.shape)}."
            )
        if not (torch.isfinite(pts).all() and torch.isfinite(feats).all()):
            raise SampleError("point_coords or point_features contain NaN or inf; drop those points.")
        h, w = self.height, self.width
        if len(pts) and ((pts < -0.5).any() or (pts[:, 0] > h - 0.5).any() or (pts[:, 1] > w - 0.5).any()):
            raise SampleError(
                f"point_coords fall outside the {h}x{w} image (valid rows -0.5..{h - 0.5}, cols -0.5..{w - 0.5}); "
                "coordinates are (row, col) in pixels, not (x, y) or micrometres."
            )
        if self.meta.energy_axis is not None and feats.shape[1] != self.meta.energy_axis.size:
            if feats.shape[1] > 0 and self.meta.extra.get("encoded") is not True:
                raise SampleError(
                    f"point_features have {feats.shape[1]} channels but meta.energy_axis.size is "
                    f"{self.meta.energy_axis.size}; fix the calibration or set meta.extra['encoded']=True."
                )
        n_cls = self.num_classes
        for name, tgt, shape in (("target", self.target, (h, w)), ("point_target", self.point_target, (len(pts),))):
            if tgt is None:
                continue
            if tuple(tgt.shape) != shape:
                raise SampleError(f"{name} must have shape {shape}, got {tuple(tgt.shape)}.")
            if tgt.is_floating_point():  # regression values: any real, NaN = unlabelled
                continue
            bad = (tgt != IGNORE_INDEX) & ((tgt < 0) | (tgt >= max(n_cls, 1)))
            if n_cls and bad.any():
                raise SampleError(
                    f"{name} holds class ids outside 0..{n_cls - 1} (meta.class_names has {n_cls} names); "
                    f"use {IGNORE_INDEX} for unlabelled."
                )

    def to(self, device: torch.device | str) -> Sample:
        """A copy with every tensor on ``device``."""
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return replace(
            self,
            image=move(self.image),
            point_coords=move(self.point_coords),
            point_features=move(self.point_features),
            target=move(self.target),
            point_target=move(self.point_target),
        )

    def __repr__(self) -> str:
        c, h, w = self.image.shape
        return (
            f"Sample(name={self.meta.name!r}, image={c}x{h}x{w}, points={self.num_points} "
            f"({100 * self.num_points / (h * w):.2g} %), features={self.point_features.shape[1]}, "
            f"classes={self.num_classes}, target={'yes' if self.target is not None else 'no'})"
        )


def _as_float(value: Any, name: str) -> Tensor:
    try:
        t = torch.as_tensor(value)
    except Exception as err:
        raise SampleError(f"{name} cannot be turned into a tensor ({err}); pass a numpy array or tensor.") from err
    return t.float() if not t.is_floating_point() or t.dtype == torch.float64 else t


def _as_target(value: Any) -> Tensor | None:
    """Class ids as int64, regression values as float32 (NaN = unlabelled); None stays None."""
    if value is None:
        return None
    t = torch.as_tensor(value)
    return t.float() if t.is_floating_point() else t.long()


def point_fraction(sample: Sample) -> float:
    """Measured points per pixel (0..1)."""
    return sample.num_points / max(1, sample.height * sample.width)


__all__ = ["IGNORE_INDEX", "EnergyAxis", "Sample", "SampleError", "SampleMeta", "point_fraction"]
