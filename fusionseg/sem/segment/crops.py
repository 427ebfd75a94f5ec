"""Per-field training data: random crops around labelled points (some hidden as queries), fixed validation crops,
and the callbacks that keep the weights of the best validation loss and print one line per epoch."""

from __future__ import annotations

import copy
import sys

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import Dataset

from fusionseg.inference import crop_sample
from fusionseg.sample import IGNORE_INDEX, Sample


class PointCropDataset(Dataset):
    """Random crops around labelled points; each hides a random ``query_fraction`` of its points.

    ``usable`` (N,) bool marks the points training may see (held-out validation points excluded).
    """

    def __init__(self, sample: Sample, usable: Tensor, crop_px: int, length: int, query_fraction: float, seed: int):
        self.sample, self.usable, self.length, self.qf = sample, usable, length, query_fraction
        self.ch, self.cw = min(crop_px, sample.height), min(crop_px, sample.width)
        self.candidates = torch.nonzero(usable & (sample.point_target != IGNORE_INDEX)).squeeze(1)
        self.gen = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Sample:
        s, g = self.sample, self.gen
        centre = s.point_coords[self.candidates[torch.randint(len(self.candidates), (1,), generator=g)]][0]
        r0 = int((centre[0] - self.ch // 2 + torch.randint(-self.ch // 4, self.ch // 4 + 1, (1,), generator=g)).clamp(
            0, s.height - self.ch))  # fmt: skip
        c0 = int((centre[1] - self.cw // 2 + torch.randint(-self.cw // 4, self.cw // 4 + 1, (1,), generator=g)).clamp(
            0, s.width - self.cw))  # fmt: skip
        hide = torch.rand(s.num_points, generator=g) < self.qf
        labelled = s.point_target != IGNORE_INDEX
        return crop_sample(s, r0, c0, self.ch, self.cw, self.usable & ~hide, self.usable & hide & labelled)


def validation_crops(sample: Sample, val: Tensor, crop_px: int, max_crops: int = 8) -> list[Sample]:
    """Fixed crops whose targets are the held-out points and whose inputs are all training points."""
    ch, cw = min(crop_px, sample.height), min(crop_px, sample.width)
    rows = sorted({min(r, sample.height - ch) for r in range(0, sample.height, ch)})
    cols = sorted({min(c, sample.width - cw) for c in range(0, sample.width, cw)})
    crops = [crop_sample(sample, r, c, ch, cw, ~val, val) for r in rows for c in cols]
    crops = [c for c in crops if (c.target != IGNORE_INDEX).any()]
    return crops[:max_crops]


class ListDataset(Dataset):
    """A list of samples as a `Dataset` (the fixed validation crops)."""

    def __init__(self, items: list[Sample]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Sample:
        return self.items[index]


class KeepBestWeights(L.Callback):
    """Remember the weights of the best ``val/loss`` and restore them when fitting ends."""

    def __init__(self) -> None:
        self.best, self.state, self.epoch = float("inf"), None, -1

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        loss = trainer.callback_metrics.get("val/loss")
        if loss is not None and float(loss) < self.best:
            self.best, self.epoch = float(loss), trainer.current_epoch
            self.state = copy.deepcopy(module.state_dict())

    def on_fit_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.state is not None:
            module.load_state_dict(self.state)


class EpochLines(L.Callback):
    """One line per epoch on stderr (where a progress bar would write hundreds into a log file): epoch, losses."""

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        losses = ", ".join(f"{key.replace('/', ' ')} {float(metrics[key]):.3f}" for key in ("train/loss", "val/loss")
                           if key in metrics)  # fmt: skip
        print(f"per-field training, epoch {trainer.current_epoch + 1}/{trainer.max_epochs}: {losses}", file=sys.stderr,
              flush=True)  # fmt: skip


__all__ = ["EpochLines", "KeepBestWeights", "ListDataset", "PointCropDataset", "validation_crops"]
