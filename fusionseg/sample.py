"""`Sample`: the one data model every stage speaks (image + sparse point measurements)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from fusionseg.errors import FusionSegError

IGNORE_INDEX = -1
"""Target value for pixels/points without a label; losses and metrics skip it."""


class SampleError(FusionSegError):
    """A `Sample` field is malformed; the message names the field and the fix."""


class OddInputWarning(UserWarning):
    """Legal but suspicious input (`odd_input_notes`): the result will be weak; the message says why and the fix."""


# each distinct odd-input message once per process: a field's copies and crops (`dataclasses.replace`) repeat it
warnings.filterwarnings("once", category=OddInputWarning)


_POSITIVE_META = {"pixel_size_um": "pixel size in µm (e.g. 1.0)"}


@runtime_checkable
class DomainMeta(Protocol):
    """Domain-specific acquisition metadata: the typed slot ``Sample.meta.domain`` (a dataclass of the domain).

    ``domain`` names the `DOMAINS` entry (the class itself) that restores it with ``from_dict``.
    ``validate(sample)`` raises `fusionseg.sample.SampleError` for point features the domain cannot
    accept (e.g. negative X-ray counts); ``encoder_context()`` is what point encoders are built with
    (linked from the data into ``model.point_context``); ``to_dict()`` is JSON-ready. Optional
    ``arrays() -> dict[str, np.ndarray]``: the slot's in-memory arrays (e.g. a dense measurement cube);
    sample files store them as arrays and hand them back to ``from_dict`` with the JSON keys, and
    memory budgets count them (`SampleMeta.nbytes`). A domain may
    register a Lightning ``BasePredictionWriter`` (``output_dir`` argument) under its name in
    ``PREDICTION_WRITERS``: ``fusionseg predict`` adds it when none is configured.
    """

    domain: ClassVar[str]

    def validate(self, sample: Sample) -> None: ...

    def encoder_context(self) -> dict[str, Any]: ...

    def to_dict(self) -> dict[str, Any]: ...


@dataclass
class SampleMeta:
    """Metadata of a field, the same for every domain.

    class_names:   output classes (segmentation), one id per name.
    pixel_size_um: pixel size in micrometres.
    name:          field name (file stem, output folder).
    domain:        the domain's typed metadata (`DomainMeta`, e.g.
                   `fusionseg.sem.meta.SemMeta`: energy calibration, beam energy); None for none.
    extra:         free-form notes of a third-party source or plugin without a typed domain slot; the core
                   reads none of them, sample files store them as JSON. Domains keep their side data in
                   ``domain`` instead (typed, documented).
    """

    class_names: tuple[str, ...] = ()
    pixel_size_um: float = 1.0
    name: str = ""
    domain: DomainMeta | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_positive(self, _POSITIVE_META, "meta")
        names = tuple(self.class_names)
        if not all(isinstance(n, str) and n.strip() for n in names):
            raise SampleError(f"meta.class_names must be non-empty strings, got {list(names)!r}.")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise SampleError(f"meta.class_names repeats {dupes}; every class needs its own name (one id per name).")
        self.class_names = names
        if self.domain is not None and not callable(getattr(self.domain, "validate", None)):
            raise SampleError(
                f"meta.domain must be a domain's metadata object (fusionseg.contracts.DomainMeta: validate, "
                f"encoder_context, to_dict), got {type(self.domain).__name__}."
            )

    def domain_arrays(self) -> dict[str, np.ndarray]:
        """The domain slot's in-memory arrays (`DomainMeta` ``arrays()``; none when it defines no such hook)."""
        arrays = getattr(self.domain, "arrays", None)
        return dict(arrays()) if callable(arrays) else {}

    def nbytes(self) -> int:
        """Bytes of the in-memory numpy arrays held by the domain slot and ``extra`` (lazy arrays: 0)."""
        held = [*self.domain_arrays().values(), *self.extra.values()]
        return sum(v.nbytes for v in held if isinstance(v, np.ndarray))


LABEL_BLOCK = 1 << 20
"""Values of a label map counted at once by `label_counts`."""


def label_counts(labels: np.ndarray, minlength: int = 0) -> np.ndarray:
    """(K,) pixels per class id of an integer label map; ``IGNORE_INDEX`` (any negative id) is not counted.

    Counted in blocks of `LABEL_BLOCK` values: no mask or copy of the whole map (4096², int64: 134 MB each), and no
    sort as ``np.unique`` would do (1 s at 4096²)."""
    flat = labels.reshape(-1)
    counts = np.zeros(minlength, dtype=np.int64)
    for i in range(0, flat.size, LABEL_BLOCK):
        block = flat[i : i + LABEL_BLOCK]
        part = np.bincount(block[block >= 0], minlength=len(counts))
        counts = np.pad(counts, (0, len(part) - len(counts))) + part
    return counts


def all_finite(t: Tensor) -> bool:
    """True when no value of ``t`` is NaN or inf: NaN and inf propagate into the sum, so a finite sum proves it
    (several times faster than ``isfinite(t).all()`` on a 2048-channel spectrum map); an infinite sum (NaN, inf,
    or an overflow of huge finite values) is checked value by value."""
    if t.numel() == 0 or not t.is_floating_point():  # integers are finite (torch would widen int16 to sum it)
        return True
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


@dataclass
class Sample:
    """A dense image plus sparse point measurements, validated at construction.

    image:          (C, H, W) float, e.g. C=1 normalised BSE.
    point_coords:   (N, 2) float pixel coordinates (row, col); sub-pixel allowed.
    point_features: (N, D) float, raw spectra (counts per channel) or encoded features; whole counts may be
                    int16 (`compact_counts`: exact, half of float32's memory). Float arithmetic converts first.
    target:         optional (H, W): int64 class ids (``IGNORE_INDEX`` = unlabelled), or float values
                    for regression (NaN = unlabelled; kept float), (K, H, W) for K regression channels.
    point_target:   optional (N,): int64 class ids of the measured points, or float values.
    meta:           `SampleMeta` (class names, pixel size, name, the domain's typed metadata).
    """

    image: Tensor
    point_coords: Tensor
    point_features: Tensor
    meta: SampleMeta = field(default_factory=SampleMeta)
    target: Tensor | None = None
    point_target: Tensor | None = None

    def __post_init__(self) -> None:
        self.image = _as_image(self.image)
        self.point_coords = _as_float(self.point_coords, "point_coords")
        self.point_features = _as_features(self.point_features)
        self.target = _as_target(self.target, "target", self.meta)
        self.point_target = _as_target(self.point_target, "point_target", self.meta)
        self.validate()
        note = one_pixel_note(self.point_coords)
        if note is not None:  # legal (a test spot, a mis-parsed position file), but the map cannot follow it
            warnings.warn(note, OddInputWarning, stacklevel=3)

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
        if img.shape[-1] in (3, 4) and img.shape[0] > 4 and img.shape[1] > 4:
            raise SampleError(
                f"image has shape {tuple(img.shape)}, which looks channels-last (H, W, C); pass it channels-first: "
                "image.permute(2, 0, 1) (torch) or np.moveaxis(image, -1, 0)."
            )
        if not all_finite(img):
            raise SampleError(
                f"image contains {int((~torch.isfinite(img)).sum())} NaN or inf values; fill or mask those pixels "
                "before building a Sample."
            )
        pts, feats = self.point_coords, self.point_features
        if pts.dim() != 2 or pts.shape[1] != 2:
            raise SampleError(f"point_coords must be (N, 2) (row, col) in pixels, got {tuple(pts.shape)}.")
        if feats.dim() != 2 or feats.shape[0] != pts.shape[0]:
            raise SampleError(
                f"point_features must be (N, D) with N = {pts.shape[0]} rows like point_coords, "
                f"got {tuple(feats.shape)}."
            )
        for name, t in (("point_coords", pts), ("point_features", feats)):
            if all_finite(t):
                continue
            bad = ~torch.isfinite(t).all(1)
            if bad.any():
                raise SampleError(
                    f"{name} of {int(bad.sum())} points contain NaN or inf (first: point {int(bad.nonzero()[0])}); "
                    "drop or re-measure those points."
                )
        h, w = self.height, self.width
        if len(pts) and ((pts < -0.5).any() or (pts[:, 0] > h - 0.5).any() or (pts[:, 1] > w - 0.5).any()):
            raise SampleError(
                f"point_coords fall outside the {h}x{w} image (valid rows -0.5..{h - 0.5}, cols -0.5..{w - 0.5}); "
                "coordinates are (row, col) in pixels, not (x, y) or micrometres."
            )
        if self.meta.domain is not None:
            self.meta.domain.validate(self)
        n_cls = self.num_classes
        for name, tgt, shape in (("target", self.target, (h, w)), ("point_target", self.point_target, (len(pts),))):
            if tgt is None:
                continue
            if name == "target" and tgt.is_floating_point() and tgt.dim() == 3 and tuple(tgt.shape[1:]) == shape:
                continue  # K regression channels (K, H, W)
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


def check_positive(obj: Any, fields: dict[str, str], prefix: str) -> None:
    """Each attribute in ``fields`` (name -> what to give) as a finite float > 0, else `SampleError` naming it."""
    for key, what in fields.items():
        value = real_number(getattr(obj, key))
        if value is None or not math.isfinite(value) or value <= 0:
            raise SampleError(
                f"{prefix}.{key} must be a finite number > 0, got {getattr(obj, key)!r}; give the {what}."
            )
        setattr(obj, key, value)


def real_number(value: Any) -> float | None:
    """``value`` as a float, None when it is not a real number (strings, complex, None, bool)."""
    if isinstance(value, bool | str | bytes) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _as_tensor(value: Any, name: str) -> Tensor:
    try:
        t = value if isinstance(value, Tensor) else torch.as_tensor(np.asarray(value))
    except Exception as err:
        raise SampleError(f"{name} cannot be turned into a tensor ({err}); pass a numeric array.") from err
    if t.is_complex():
        raise SampleError(f"{name} is complex ({t.dtype}); pass real values (e.g. the magnitude, x.abs()).")
    if not (t.is_floating_point() or t.dtype == torch.bool or not t.dtype.is_signed or t.dtype in _INTS):
        raise SampleError(f"{name} has dtype {t.dtype}; pass a numeric array.")
    return t


_INTS = (torch.int8, torch.int16, torch.int32, torch.int64)


def _as_float(value: Any, name: str) -> Tensor:
    t = _as_tensor(value, name)
    return t.float() if not t.is_floating_point() or t.dtype == torch.float64 else t


COUNT_DTYPE = torch.int16
"""Whole counts up to `MAX_COMPACT_COUNT` (e.g. X-rays per channel) may be held in ``point_features`` in this dtype."""
MAX_COMPACT_COUNT = int(torch.iinfo(COUNT_DTYPE).max)


def _as_features(value: Any) -> Tensor:
    """Point features as float32 (float16/bfloat16 kept), or int16 counts as given (`compact_counts`)."""
    t = _as_tensor(value, "point_features")
    return t if t.dtype == COUNT_DTYPE else _as_float(t, "point_features")


def compact_counts(values: np.ndarray) -> np.ndarray:
    """Non-negative counts (N, D) from a file as int16 when they are integers of at most `MAX_COMPACT_COUNT`, else
    float32. int16 is exact and half of float32's memory (an 8192² field at 1 % EDS: 2.6 GiB of spectra, not 5.1);
    a uint16 array that fits is viewed, not copied. Floats stay float32: proving them whole costs another pass."""
    if not np.issubdtype(values.dtype, np.integer) or values.itemsize > 2:
        return values.astype(np.float32, copy=False)
    if values.size and int(values.max()) > MAX_COMPACT_COUNT:
        return values.astype(np.float32)
    return values.view(np.int16) if values.dtype == np.uint16 else values.astype(np.int16, copy=False)


def _as_image(value: Any) -> Tensor:
    """Float image; integer images are scaled by their dtype's maximum (uint8 0-255 -> 0-1), as the readers do."""
    t = _as_tensor(value, "image")
    if t.dtype == torch.bool:
        return t.float()
    if not t.is_floating_point():
        return t.double().div(torch.iinfo(t.dtype).max).float()
    return t.float() if t.dtype == torch.float64 else t


def _as_target(value: Any, name: str, meta: SampleMeta) -> Tensor | None:
    """Class ids as int64; float targets are kept only without class names (regression/other tasks)."""
    if value is None:
        return None
    t = _as_tensor(value, name)
    if not t.is_floating_point():
        return t.long()
    integral = bool(torch.isfinite(t).all()) and bool((t == t.round()).all())
    if integral:
        return t.long()
    if meta.class_names:
        bad = t[~(torch.isfinite(t) & (t == t.round()))][0]
        raise SampleError(
            f"{name} holds non-integer class ids (e.g. {float(bad):g}) although meta.class_names is set; class ids "
            "are whole numbers (-1 = unlabelled). For continuous targets leave class_names empty (regression)."
        )
    return t.float()  # regression values, float32 (NaN = unlabelled)


def one_pixel_note(coords: Tensor) -> str | None:
    """The warning for two or more points (``coords`` (N, 2) row, col) that all round to one pixel; None if not."""
    if coords.dim() != 2 or len(coords) < 2:
        return None
    rounded = coords.round()
    if not bool((rounded == rounded[:1]).all()):
        return None
    r, c = rounded[0].tolist()
    return (f"all {len(coords)} measured points lie at one pixel (row {r:g}, col {c:g}): the spectra say nothing about "
            "the rest of the field; check the point positions (x = column, y = row in pixels)")  # fmt: skip


def odd_input_notes(sample: Sample) -> list[str]:
    """Warnings for legal but suspicious input: very few points, all points at one pixel, a flat image."""
    notes = []
    n = sample.num_points
    if 0 < n <= 2:
        notes.append(f"only {n} measured point(s): the map can only follow them coarsely; measure ~1 % of pixels")
    one_pixel = one_pixel_note(sample.point_coords)
    if one_pixel is not None:
        notes.append(one_pixel)
    if bool((sample.image == sample.image.flatten(1)[:, :1, None]).all()):
        notes.append("the image is constant (every pixel the same value): phase boundaries cannot follow it")
    return notes


def point_fraction(sample: Sample) -> float:
    """Measured points per pixel (0..1)."""
    return sample.num_points / max(1, sample.height * sample.width)


__all__ = [
    "IGNORE_INDEX",
    "DomainMeta",
    "OddInputWarning",
    "Sample",
    "SampleError",
    "SampleMeta",
    "odd_input_notes",
    "one_pixel_note",
    "point_fraction",
    "real_number",
]
