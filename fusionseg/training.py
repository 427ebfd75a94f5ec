"""Fault tolerance of `fusionseg fit`: atomic checkpoints, a true ``last.ckpt``, per-epoch seeding.

The CLI adds all three to every run (`fusionseg.cli.make_cli`):

* `AtomicCheckpointIO`: a checkpoint file appears complete or not at all (a kill while saving
  leaves the previous one).
* `LastCheckpoint`: ``last.ckpt`` after every epoch. Lightning's own ``save_last`` follows the
  monitored top-k: with ``monitor: val/miou`` it rewrites ``last.ckpt`` only when the metric
  improves, so after a run whose best epoch was 0 ``last.ckpt`` held epoch 0 and a resume redid
  every later epoch.
* `EpochSeed`: reseeds torch, NumPy and ``random`` from (seed, epoch) when each training epoch
  starts, so a run resumed from epoch k's checkpoint draws exactly what an uninterrupted run
  drew (the train sampler is seeded the same way: `fusionseg.data.datamodule.EpochShuffleSampler`).
"""

from __future__ import annotations

import os
import random
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

from fusionseg.export.safe_io import atomic_write


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed derived from (seed, epoch) (NumPy's SeedSequence mixing)."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch)]).generate_state(2, np.uint64)[0] >> 1)


def global_seed() -> int:
    """The run's seed: ``seed_everything`` sets ``PL_GLOBAL_SEED``; 0 when it was not set."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


class AtomicCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` that writes to a temporary file and renames it over the target."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"AtomicCheckpointIO takes no storage_options, got {storage_options!r}.")
        with atomic_write(path, "wb") as fh:
            torch.save(checkpoint, fh)


class LastCheckpoint(ModelCheckpoint):
    """Writes ``last.ckpt`` at the end of every epoch, whatever any monitored metric did.

    On an interrupt (Ctrl-C, SIGTERM) or a crash it also writes ``interrupted.ckpt`` with the
    mid-epoch state; ``last.ckpt`` keeps the last completed epoch, the one an exact resume starts from.
    """

    INTERRUPTED = "interrupted.ckpt"

    def __init__(self, filename: str = "last", **kwargs: Any) -> None:
        kwargs.setdefault("enable_version_counter", False)
        super().__init__(filename=filename, monitor=None, save_top_k=1, save_last=False, **kwargs)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self.dirpath is None or trainer.sanity_checking or trainer.global_step == self._last_global_step_saved:
            return
        trainer.save_checkpoint(os.path.join(self.dirpath, self.INTERRUPTED))


class EpochSeed(L.Callback):
    """Reseed every RNG from (run seed, epoch) at the start of each training epoch."""

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        s = epoch_seed(global_seed() if self.seed is None else self.seed, trainer.current_epoch)
        torch.manual_seed(s)
        np.random.seed(s % 2**32)  # noqa: NPY002 (libraries may still draw from the legacy global RNG)
        random.seed(s)


__all__ = ["AtomicCheckpointIO", "EpochSeed", "LastCheckpoint", "epoch_seed", "global_seed"]
