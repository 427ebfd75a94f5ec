"""Configuration of `FusionSegModule`: hyper-parameters (migration, architecture checks), its parts' kwargs,
the fit's callbacks and optimiser, and checkpoint hooks (`ModuleSetup`, a mixin of the module)."""

from __future__ import annotations

import inspect
import io
import warnings
from dataclasses import asdict
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.nn.parameter import is_lazy  # lazily sized layers (shape known after loading) are not compared

from fusionseg.errors import FusionSegError
from fusionseg.models.prior import FEATURES
from fusionseg.registry import POINT_ENCODERS

# Metric each task's checkpoints are chosen by, and whether higher is better.
MONITOR = {"segmentation": ("val/miou", "max"), "regression": ("val/rmse", "min")}
DEFAULT_LOSS = {"segmentation": "ce", "regression": "l2"}

# Hyper-parameters that change tensor shapes or meaning; a checkpoint must agree on them.
ARCHITECTURE_KEYS = (
    "class_names", "num_outputs", "task", "point_context", "image_channels", "point_channels", "hidden_channels",
    "point_encoder", "point_encoder_kwargs", "graph_builder", "graph_builder_kwargs",
    "fusion", "fusion_kwargs", "backbone", "backbone_kwargs", "head", "head_kwargs", "prior_refiner",
)  # fmt: skip


class CheckpointMismatchError(FusionSegError):
    """A checkpoint was trained with a different architecture than the one configured."""


LEGACY_CONTEXT_KEYS = ("energy_axis", "beam_energy_kev")
"""Hyper-parameters of checkpoints written before ``point_context`` existed (the SEM encoder context), moved into it."""


def migrate_hparams(hparams: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's hyper-parameters in today's terms (a copy; unchanged when already current)."""
    if not any(key in hparams for key in LEGACY_CONTEXT_KEYS):
        return hparams
    new = {k: v for k, v in hparams.items() if k not in LEGACY_CONTEXT_KEYS}
    legacy = {k: hparams[k] for k in LEGACY_CONTEXT_KEYS if hparams.get(k) is not None}
    new["point_context"] = {**legacy, **(hparams.get("point_context") or {})}
    return new


def encoder_kwargs(
    name: str, kwargs: dict[str, Any] | None, point_channels: int | None, context: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``kwargs`` plus, for an encoder whose constructor names them, ``in_dim=point_channels`` (feature width
    from the data) and the keys of the domain's ``context``; the config's own kwargs win over the context."""
    params = inspect.signature(POINT_ENCODERS.resolve(name)).parameters
    kwargs = {k: v for k, v in (context or {}).items() if k in params} | dict(kwargs or {})
    if point_channels is not None and "in_dim" in params:
        if kwargs.setdefault("in_dim", int(point_channels)) != point_channels:
            warnings.warn(
                f"point_encoder_kwargs.in_dim={kwargs['in_dim']} differs from the data's {point_channels} point "
                "channels; the configured value is used.",
                stacklevel=3,
            )
    return kwargs


def _normalise(value: Any) -> Any:
    """Compare configs structurally (tuples vs lists, dataclasses vs dicts)."""
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if hasattr(value, "__dataclass_fields__"):
        return _normalise(asdict(value))
    return value


class ModuleSetup:
    """The fit's configuration and checkpoint hooks of `FusionSegModule` (a LightningModule mixin)."""

    # ----------------------------------------------------------------------------- fitting
    @property
    def monitor(self) -> tuple[str, str]:
        """(metric, mode) checkpoints of this task are chosen by: ``val/miou`` max or ``val/rmse`` min."""
        return MONITOR[self.hparams.task]

    def configure_callbacks(self) -> list[Any]:
        """Checkpoints by the task's metric when none is configured; refuse a monitor this task never logs."""
        checkpoints = [cb for cb in self.trainer.callbacks if isinstance(cb, ModelCheckpoint)]
        metric, mode = self.monitor
        other = {m for task, (m, _) in MONITOR.items() if task != self.hparams.task}
        for cb in checkpoints:
            if cb.monitor in other:
                raise ValueError(
                    f"ModelCheckpoint monitors {cb.monitor!r}, which task={self.hparams.task!r} never logs; set "
                    f"its init_args to {{monitor: {metric}, mode: {mode}}} in the config's trainer.callbacks."
                )
        if checkpoints and all(cb.monitor is None for cb in checkpoints) and self.trainer.limit_val_batches != 0:
            dirpath = checkpoints[0].dirpath
            return [ModelCheckpoint(dirpath=dirpath, monitor=metric, mode=mode, save_last=True)]
        return []

    def on_fit_start(self) -> None:
        """Fit data-dependent encoders (e.g. PCA) on training spectra once."""
        if self._encoder_fitted or self.trainer.datamodule is None:
            return
        spectra = self.trainer.datamodule.training_spectra()
        self.point_encoder.fit(spectra.to(self.device))
        self._encoder_fitted = True

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"}}

    # ----------------------------------------------------------------------------- checkpoints
    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """Lightning's loader, with an older checkpoint's hyper-parameters migrated first (`migrate_hparams`)."""
        ckpt = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        hparams = ckpt.get("hyper_parameters", {})
        if migrate_hparams(hparams) != hparams:
            buffer = io.BytesIO()
            torch.save({**ckpt, "hyper_parameters": migrate_hparams(hparams)}, buffer)
            buffer.seek(0)
            checkpoint_path = buffer
        return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["fusionseg_encoder_fitted"] = self._encoder_fitted

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint of another architecture with a list of what differs (not a bare shape error)."""
        saved = checkpoint.get("hyper_parameters", {})
        diffs = [
            f"  {key}: checkpoint {saved.get(key)!r} vs configured {self.hparams.get(key)!r}"
            for key in ARCHITECTURE_KEYS
            if key in saved and _normalise(saved.get(key)) != _normalise(self.hparams.get(key))
        ]
        own, stored = self.state_dict(), checkpoint.get("state_dict", {})
        diffs += [
            f"  {name}: checkpoint {tuple(value.shape)} vs configured {tuple(own[name].shape)}"
            for name, value in stored.items()
            if name in own and not is_lazy(own[name]) and tuple(value.shape) != tuple(own[name].shape)
        ][:10]
        diffs += [f"  {name}: only in the checkpoint" for name in sorted(set(stored) - set(own))][:5]
        diffs += [f"  {name}: missing from the checkpoint" for name in sorted(set(own) - set(stored))][:5]
        if any("refiner." in line for line in diffs):  # the feature set changed, not the config
            diffs.append(f"  the refiner now reads {len(FEATURES)} features per (region, class) and a per-pixel "
                         "term: a checkpoint of an older fusionseg must be retrained (`fusionseg fit`, or `make "
                         "pretrain`)")  # fmt: skip
        if diffs:
            raise CheckpointMismatchError(
                "The checkpoint was trained with a different model configuration:\n" + "\n".join(diffs)
                + "\nUse the config saved with the checkpoint (config.yaml in its run folder, written by "
                "`fusionseg fit`) or FusionSegModule.load_from_checkpoint(path) without overrides."
            )  # fmt: skip
        self._encoder_fitted = checkpoint.get("fusionseg_encoder_fitted", True)
