"""`FusionSegDataModule`: train/val/test/predict splits of `Sample`s from a registered source."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from fusionseg.errors import FusionSegError
from fusionseg.registry import DATA_SOURCES, POINT_LABELLERS, RegistryArgumentError
from fusionseg.sample import Sample
from fusionseg.training import epoch_seed

SPLITS = ("train", "val", "test", "predict")


class SplitCountWarning(UserWarning):
    """The data source serves fewer fields for a split than the config's ``data.*_fields`` ask."""


def create_source(name: str, kwargs: dict[str, Any]) -> Any:
    """The source ``name`` (registry name or class_path) built with ``kwargs``, checked against the contract."""
    try:
        source = DATA_SOURCES.create(name, **kwargs)
    except RegistryArgumentError as err:  # typically a config written for another source, e.g. the simulator's
        raise RegistryArgumentError(
            f"{err} These keyword arguments were written for another source (a config's data.source_kwargs and "
            "data.train_source_kwargs name the source they were written for): give this source's, e.g. "
            "--data.source=sample-folder --data.source_kwargs='{root: DIR}' --data.train_source_kwargs=null."
        ) from err
    if not callable(getattr(source, "__len__", None)) or not callable(getattr(source, "__getitem__", None)):
        raise FusionSegError(
            f"data source {name!r} built a {type(source).__name__}, which is not a sequence of Samples; a source "
            "defines __len__ and __getitem__ (fusionseg.contracts.DataSource)."
        )
    return source


def collate_samples(samples: list[Sample]) -> list[Sample]:
    """Batches stay lists of `Sample`; the model builds and batches the graphs."""
    return list(samples)


class CachedDataset(Dataset):
    """Keeps each `Sample` after its first generation (synthetic fields are deterministic).

    ``transform``: applied to each sample once, as it is generated (e.g. point relabelling).
    """

    def __init__(self, source: Any, cache: bool = True, transform: Callable[[Sample], Sample] | None = None) -> None:
        self.source, self.cache, self.transform = source, cache, transform
        self._store: dict[int, Sample] = {}

    def __len__(self) -> int:
        return len(self.source)

    def __iter__(self) -> Iterator[Sample]:
        """``len(self)`` samples (not "until IndexError": a generating source may answer any index)."""
        return (self[i] for i in range(len(self)))

    def _make(self, index: int) -> Sample:
        sample = self.source[index]
        return sample if self.transform is None else self.transform(sample)

    def __getitem__(self, index: int) -> Sample:
        if not self.cache:
            return self._make(index)
        if index not in self._store:
            self._store[index] = self._make(index)
        return self._store[index]


class EpochShuffleSampler(DistributedSampler):
    """A permutation of ``range(n)`` drawn from (seed, epoch) alone; Lightning calls ``set_epoch``.

    Unlike ``shuffle=True`` (a draw from the global RNG), the order of epoch k does not depend on what
    ran before it, so a run resumed at epoch k sees the batches an uninterrupted run saw. Under DDP
    (``num_replicas`` processes) process r takes every ``num_replicas``-th item of that one permutation from
    r, padded by repeats to equal shares: batch b of the processes together holds the fields one process
    with ``num_replicas`` times the batch size sees in its batch b. A `DistributedSampler`, so Lightning
    uses it as it is.
    """

    def __init__(self, n: int, seed: int = 0, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(range(int(n)), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)

    def __iter__(self):  # noqa: ANN204 (Iterator[int])
        g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        order = torch.randperm(len(self.dataset), generator=g).tolist()
        order = (order * -(-self.total_size // len(order)))[: self.total_size]  # equal shares: same step counts
        return iter(order[self.rank : self.total_size : self.num_replicas])


class FusionSegDataModule(L.LightningDataModule):
    """Samples for each split from one data source (contract: `fusionseg.contracts.DataSource`).

    Each split is a separate source built with ``split`` (``train``, ``val``, ``test``, ``predict``),
    ``num_fields`` (the split's count) and ``seed`` (per split), plus ``source_kwargs``: a generating
    source makes different fields per split, a file source serves disjoint files. ``eds_fraction`` and
    ``sampler`` reach only sources whose constructor names them (``eds_fraction`` or ``point_fraction``).

    Args:
        source: registry name of the data source (``fusionseg.registry.DATA_SOURCES``) or its ``class_path``.
        source_kwargs: passed to every split's source (e.g. ``size``, ``rocks``).
        train_source_kwargs: merged over ``source_kwargs`` for the training split only (augmentation, e.g.
            the simulator's ``bse_noise_scale: [0.2, 1.0]``); the evaluation splits stay as the source makes them.
        fields: number of fields per split.
        eds_fraction: fraction of pixels with a measured spectrum (0, 1].
        train_eds_fraction: the training split's fraction, or a pair (lo, hi) drawn log-uniformly per
            field so one model serves any EDS budget; None = ``eds_fraction``.
        sampler: point sampler name (``random``, ``grid``, ``stratified``, ``superpixel``: image-guided).
        point_labels: where the val/test/predict splits' point labels come from: ``given`` (the source's own
            labels; default) or a registered point labeller (``fusionseg.registry.POINT_LABELLERS``), e.g. the
            SEM domain's ``identified`` (best library match of each spectrum, what an instrument knows). Models
            use them to restrict predictions to the classes found among a field's points. Training keeps the
            source's.
        batch_size: fields per batch.
        seed: base seed; split k uses ``seed + 1000 * k``.
    """

    def __init__(
        self,
        source: str = "sem-synthetic",
        source_kwargs: dict[str, Any] | None = None,
        train_source_kwargs: dict[str, Any] | None = None,
        train_fields: int = 48,
        val_fields: int = 6,
        test_fields: int = 6,
        predict_fields: int = 2,
        eds_fraction: float = 0.01,
        train_eds_fraction: float | list[float] | None = None,
        sampler: str = "random",
        point_labels: str = "given",
        batch_size: int = 8,
        num_workers: int = 0,
        seed: int = 0,
        cache: bool = True,
    ) -> None:
        super().__init__()
        if not 0 < eds_fraction <= 1:
            raise FusionSegError(f"eds_fraction must be in (0, 1], got {eds_fraction}; 0.01 means 1 % of pixels.")
        if train_eds_fraction is not None:
            pair = [train_eds_fraction] * 2 if isinstance(train_eds_fraction, int | float) else list(train_eds_fraction)
            if len(pair) != 2 or not 0 < pair[0] <= pair[1] <= 1:
                raise FusionSegError(
                    f"train_eds_fraction must be a fraction in (0, 1] or a pair [lo, hi] with 0 < lo <= hi <= 1, "
                    f"got {train_eds_fraction!r}; e.g. [0.001, 0.05] trains on 0.1-5 % of pixels."
                )
        for key, value, low in (("batch_size", batch_size, 1), ("num_workers", num_workers, 0),
                                ("train_fields", train_fields, 1), ("val_fields", val_fields, 0),
                                ("test_fields", test_fields, 0), ("predict_fields", predict_fields, 0)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise FusionSegError(f"data.{key} must be an integer >= {low}, got {value!r}.")
        if point_labels != "given" and point_labels not in POINT_LABELLERS:
            raise FusionSegError(
                f"point_labels must be 'given' or a registered point labeller {POINT_LABELLERS.names()}, "
                f"got {point_labels!r}."
            )
        self.save_hyperparameters()
        self.counts = dict(zip(SPLITS, (train_fields, val_fields, test_fields, predict_fields), strict=True))
        self._datasets: dict[str, CachedDataset] = {}

    def dataset(self, split: str) -> CachedDataset:
        """The (lazily created) dataset of one split."""
        if split not in self._datasets:
            hp = self.hparams
            kwargs = dict(hp.source_kwargs or {})
            if split == "train":
                kwargs |= hp.train_source_kwargs or {}
            kwargs.setdefault("split", split)
            kwargs.setdefault("num_fields", self.counts[split])
            kwargs.setdefault("seed", hp.seed + 1000 * SPLITS.index(split))
            named = inspect.signature(DATA_SOURCES.resolve(hp.source)).parameters
            train_fraction = hp.train_eds_fraction if hp.train_eds_fraction is not None else hp.eds_fraction
            for key in ("eds_fraction", "point_fraction"):
                if key in named:
                    kwargs.setdefault(key, train_fraction if split == "train" else hp.eds_fraction)
            if "sampler" in named:
                kwargs.setdefault("sampler", hp.sampler)
            relabel = split != "train" and hp.point_labels != "given"
            self._datasets[split] = CachedDataset(
                create_source(hp.source, kwargs),
                cache=hp.cache,
                transform=POINT_LABELLERS.get(hp.point_labels) if relabel else None,
            )
            served = len(self._datasets[split])
            if "num_fields" not in (hp.source_kwargs or {}) and served < self.counts[split]:
                warnings.warn(
                    f"data: the {hp.source} source serves {served} {split} fields where data.{split}_fields asks "
                    f"{self.counts[split]}; it has no more, so these are used (give it more fields, or set the "
                    "count to match).",
                    SplitCountWarning,
                    stacklevel=2,
                )
        return self._datasets[split]

    def _first(self) -> Sample:
        return self.dataset("train")[0]

    # Properties the CLI links into the model (apply_on="instantiate").
    @property
    def class_names(self) -> list[str]:
        return list(self._first().meta.class_names)

    @property
    def point_context(self) -> dict[str, Any]:
        """What the data's domain tells point encoders (`DomainMeta.encoder_context`); {} without a domain."""
        domain = self._first().meta.domain
        return domain.encoder_context() if domain is not None else {}

    @property
    def image_channels(self) -> int:
        return int(self._first().image.shape[0])

    @property
    def point_channels(self) -> int:
        """Width D of the sources' point features (sizes identity-like point encoders)."""
        return int(self._first().point_features.shape[1])

    def training_spectra(self, max_spectra: int = 20000) -> Tensor:
        """Raw point features of the training fields (for fitting encoders such as PCA), (N, D)."""
        feats, total = [], 0
        for sample in self.dataset("train"):
            feats.append(sample.point_features)
            total += len(sample.point_features)
            if total >= max_spectra:
                break
        return torch.cat(feats)[:max_spectra]

    def _process_share(self) -> tuple[int, int]:
        """(number of processes, this one's global rank) of the attached trainer; (1, 0) without one."""
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def _evaluation_sampler(self, split: str, data: CachedDataset) -> Sampler[int] | None:
        """Under DDP each process evaluates its own fields, none twice (Lightning's default sampler would repeat
        fields to even the shares, counting them twice in the synchronised metrics); None for one process."""
        world_size, rank = self._process_share()
        if world_size == 1:
            return None
        if len(data) < world_size:
            raise FusionSegError(
                f"data.{split}_fields is {len(data)} but {world_size} processes run: each needs at least one "
                f"field; set data.{split}_fields to {world_size} or more."
            )
        from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

        return UnrepeatedDistributedSampler(data, num_replicas=world_size, rank=rank, shuffle=False)

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        data = self.dataset(split)
        if shuffle:
            sampler = EpochShuffleSampler(len(data), self.hparams.seed, *self._process_share())
        else:
            sampler = self._evaluation_sampler(split, data)
        return DataLoader(
            data,
            batch_size=self.hparams.batch_size,
            sampler=sampler,
            num_workers=self.hparams.num_workers,
            collate_fn=collate_samples,
            persistent_workers=self.hparams.num_workers > 0,
            # Its own generator: creating an iterator draws the worker base seed, which from the global RNG
            # would shift every later draw (e.g. the refiner's pixel subset) by whether Lightning created the
            # iterator before or after `EpochSeed` reseeded, which differs between a fresh and a resumed run.
            generator=torch.Generator().manual_seed(self.hparams.seed),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict")
