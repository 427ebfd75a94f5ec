"""`segment` with a checkpoint: loading it, its energy axis, the memory its rebinned spectra take, and the field
rebinned onto its calibration and labelled in its classes (`adapt_to_checkpoint`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from fusionseg.errors import FusionSegError, SegmentError
from fusionseg.inference import FieldSize, field_size
from fusionseg.sample import IGNORE_INDEX, Sample
from fusionseg.sem.identify import UNKNOWN, label_points
from fusionseg.sem.meta import EnergyAxis, context_meta, model_meta, sem_meta
from fusionseg.sem.spectrum import rebin_spectra


def load_checkpoint_model(path: Path) -> Any:
    """The `FusionSegModule` of a ``.ckpt`` on the CPU; a missing or unloadable file is a `SegmentError`."""
    from fusionseg.models.module import FusionSegModule

    if not Path(path).is_file():
        raise SegmentError(f"checkpoint {path} does not exist; give a .ckpt written by `fusionseg fit`.")
    try:
        return FusionSegModule.load_from_checkpoint(str(path), map_location="cpu")
    except FusionSegError:  # e.g. a checkpoint of another architecture: its own clear message
        raise
    except Exception as err:
        raise SegmentError(f"cannot load checkpoint {path} ({err}); give a .ckpt written by `fusionseg fit`.") from err


def checkpoint_axis(path: Path | None) -> EnergyAxis | None:
    """The energy axis a checkpoint's point encoder was built for, from its hyper-parameters (no model is built);
    None without a checkpoint or when the file does not load (loading the model then names the problem)."""
    if path is None or not Path(path).is_file():
        return None
    try:
        hparams = torch.load(path, map_location="cpu", weights_only=True).get("hyper_parameters") or {}
    except Exception:
        return None
    return context_meta(hparams.get("point_context")).energy_axis


def mapped_size(sample: Sample, checkpoint: Path | None) -> FieldSize:
    """The field's `FieldSize` while it is mapped: with ``checkpoint`` on another calibration, the spectra rebinned
    onto it (float32, `adapt_to_checkpoint`) are held beside the file's."""
    size, axis, target = field_size(sample), sem_meta(sample.meta).energy_axis, checkpoint_axis(checkpoint)
    if target is None or axis is None or axis == target:
        return size
    return replace(size, copy_bytes=sample.num_points * target.size * 4)


def adapt_to_checkpoint(sample: Sample, model: Any) -> tuple[Sample, list[str]]:
    """Rebin spectra onto the checkpoint's energy axis and label points in its classes; returns notes."""
    notes, sem = [], sem_meta(sample.meta)
    axis: EnergyAxis = model_meta(model).energy_axis
    feats = sample.point_features
    if sem.energy_axis is not None and sem.energy_axis != axis:
        feats = rebin_spectra(feats, sem.energy_axis, axis)
        notes.append(
            f"spectra rebinned from the file's calibration ({sem.energy_axis.describe()}) to the "
            f"checkpoint's ({axis.describe()})"
        )
    if abs(sem.beam_energy_kev - model_meta(model).beam_energy_kev) > 0.5:
        notes.append(
            f"beam energy {sem.beam_energy_kev} keV differs from the checkpoint's "
            f"{model_meta(model).beam_energy_kev} keV: line intensities differ, expect lower accuracy"
        )
    meta = replace(sample.meta, domain=replace(sem, energy_axis=axis),
                   class_names=tuple(model.class_names))  # fmt: skip
    point_target = None
    try:
        pl = label_points(sample.point_features, sem.energy_axis, sem.beam_energy_kev, mode="library",
                          class_names=model.class_names)  # fmt: skip
        index = {n: i for i, n in enumerate(model.class_names)}
        point_target = torch.tensor([index[pl.names[k]] if k != UNKNOWN else IGNORE_INDEX for k in pl.labels.tolist()])
    except (KeyError, ValueError) as err:  # classes outside the mineral library: no class masking
        notes.append(f"points not identified against the checkpoint's classes ({err}); all classes allowed")
    adapted = replace(sample, point_features=feats, meta=meta, target=None, point_target=point_target)
    return adapted, notes


__all__ = ["adapt_to_checkpoint", "checkpoint_axis", "load_checkpoint_model", "mapped_size"]
