"""``fusionseg segment``: a user's SEM field (image + EDS) -> phase map, uncertainty, modal table, report.

    fusionseg segment INPUT [--image IMG] [--eds-fraction F | --eds-points N] [--sampler NAME]
                      [--checkpoint CKPT] --out DIR

Two ways to map a field:

* ``--checkpoint`` (default: the shipped weights): inductive prediction with a trained `FusionSegModule`
  (spectra rebinned onto the checkpoint's energy axis when the file's calibration differs). Points are
  labelled by the mineral library; when it names too few of them (or ``--mode clusters``), by clustering
  their spectra, the network's classes mixed into the clusters (`FusionSegModule.in_field_classes`).
* ``--per-field``: the measured points are labelled (mineral library, else k-means clusters) and a
  small graph model is trained on this field alone. Each step hides a random part of the points
  (queries) and learns to predict their labels from the image and the remaining points (context),
  on crops around points; held-out points drive early stopping. Large fields are predicted in
  overlapping tiles within a pixel budget.
"""

from __future__ import annotations

import argparse
import copy
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from fusionseg.argtypes import fraction, int_at_least, memory_size, positive_float
from fusionseg.baselines import CLASSIC_METHODS
from fusionseg.data.datamodule import collate_samples
from fusionseg.errors import FusionSegError, SegmentError
from fusionseg.inference import (
    OVERLAP_PX,
    FieldSize,
    available_memory,
    central_box,
    central_window,
    check_memory,
    crop_sample,
    field_size,
    min_tile_px,
    predict_field,
    tile_for_memory,
)
from fusionseg.sample import IGNORE_INDEX, Sample, odd_input_notes
from fusionseg.sem.classic_floor import ClassicFill, better_classic
from fusionseg.sem.data.acquisition import measured_points, sparse_acquisition
from fusionseg.sem.identify import UNKNOWN, PointLabels, best_library_labels, label_points
from fusionseg.sem.meta import EnergyAxis, context_meta, hide_target, model_meta, sem_meta
from fusionseg.sem.spectrum import rebin_spectra

log = logging.getLogger(__name__)
WEAK_SILHOUETTE = 0.25  # a best mean silhouette below this: no substantial cluster structure (Kaufman & Rousseeuw)


# ----------------------------------------------------------------------------- configuration
@dataclass
class SegmentConfig:
    """Per-field training and prediction settings (pixels, seconds)."""

    mode: str = "auto"  # point labelling: auto | library | clusters
    method: str = "model"  # "model" (fusionseg), or a classic method of fusionseg.baselines.CLASSIC_METHODS
    n_clusters: int | None = None
    min_confidence: float = 0.9
    hidden_channels: int = 32
    num_layers: int = 3
    cross_k: int = 4
    pca_components: int = 8
    crop_px: int = 128
    crops_per_batch: int = 4
    batches_per_epoch: int = 8
    max_epochs: int = 25
    patience: int = 6
    lr: float = 0.01
    query_fraction: float = 0.25
    val_fraction: float = 0.15
    min_val_points: int = 50  # fewer held-out points: no early stopping (their loss is too noisy)
    fusion: str = "late"
    num_threads: int | None = None  # torch CPU threads (1 is fastest on a busy machine)
    time_budget_s: float | None = None  # wall-clock cap on per-field training (None: epochs only, reproducible)
    tile_px: int = 512
    overlap_px: int = OVERLAP_PX
    seed: int = 0
    progress: bool = True
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    honour_points: bool = True  # confidently identified measured pixels keep their mineral in the map
    held_out_share: float = 0.1  # checkpoint path: share of identified points withheld and scored (QC)
    extrapolate: bool = False  # map pixels outside the EDS-acquired area too (else "not measured")
    fallback_per_field: bool = False  # shipped weights: train on the field when the library names < half the points
    adapt_refiner: bool = True  # fine-tune the checkpoint's refiner on the field's points first (models.adaptation)
    classic_floor: bool = True  # a classic fill replaces the model when the withheld points prove it better
    qc_window_px: int = 1024  # the held-out check maps (blind) a central window at most this large: ~1e3 withheld
    # points at 1 % EDS (standard error of the agreement ~1 %) for a bounded cost on large fields

    def __post_init__(self) -> None:
        """The API's counterpart of the command line's argument checks: impossible settings fail here."""
        checks = {
            "min_confidence": 0 <= self.min_confidence < 1,
            "time_budget_s": self.time_budget_s is None or self.time_budget_s > 0,
            "max_epochs": self.max_epochs >= 1,
            "crop_px": self.crop_px >= 8,
            "overlap_px": self.overlap_px >= 0,
            "tile_px": self.tile_px >= min_tile_px(self.overlap_px),
            "query_fraction": 0 < self.query_fraction < 1,
            "val_fraction": 0 <= self.val_fraction < 1,
            "n_clusters": self.n_clusters is None or self.n_clusters >= 2,
            "qc_window_px": self.qc_window_px >= 32,
        }
        bad = [k for k, ok in checks.items() if not ok]  # NaN fails every comparison, so it lands here too
        if bad:
            raise SegmentError(
                f"SegmentConfig.{bad[0]}={getattr(self, bad[0])!r} is impossible; see the field's range in "
                "`fusionseg segment --help` (e.g. min_confidence in [0, 1), time_budget_s > 0, tile_px >= "
                f"{min_tile_px(self.overlap_px)})."
            )


@dataclass
class SegmentResult:
    """labels (H, W) long class ids into ``class_names``; confidence (H, W) float max probability."""

    labels: Tensor
    confidence: Tensor
    class_names: tuple[str, ...]
    sample: Sample
    mode: str
    point_labels: PointLabels | None = None
    timings: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    model_labels: Tensor | None = None  # the model's map before honouring the points (QC)
    qc: dict[str, Any] = field(default_factory=dict)  # `fusionseg.sem.export.qc.quality_checks`
    acquisition_order: np.ndarray | None = None  # (N, 3) row, col, batch of each point (``--acquire``)


# ----------------------------------------------------------------------------- training data
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


class _ListDataset(Dataset):
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


# ----------------------------------------------------------------------------- per-field training
def class_weights(labels: Tensor, k: int) -> list[float]:
    """Inverse square-root frequency weights (mean 1) so rare phases are not ignored."""
    counts = torch.bincount(labels[labels != IGNORE_INDEX], minlength=k).double().clamp(min=1)
    w = counts.rsqrt()
    return (w / w.mean()).tolist()


def build_field_model(sample: Sample, config: SegmentConfig) -> Any:
    """A small fast `FusionSegModule`: grid graph, late (gated) fusion, SAGE backbone, PCA point encoder."""
    from fusionseg.models.module import FusionSegModule

    kwargs: dict[str, Any] = dict(
        class_names=sample.meta.class_names,
        point_context=sem_meta(sample.meta).encoder_context(),
        image_channels=sample.image.shape[0],
        point_encoder="pca",
        point_encoder_kwargs={"n_components": min(config.pca_components, max(1, sample.num_points - 1))},
        graph_builder="grid",
        graph_builder_kwargs={"connectivity": 8, "cross_k": config.cross_k},
        fusion=config.fusion,
        fusion_kwargs={"num_layers": config.num_layers},
        backbone="sage",
        hidden_channels=config.hidden_channels,
        class_weights=class_weights(sample.point_target, sample.num_classes),
        log_phase_maps=False,
        mask_unseen_classes=False,  # every class is this field's; a crop may lack some of them
        optimizer=lambda params: torch.optim.AdamW(params, lr=config.lr, weight_decay=1e-4),
    )
    kwargs.update(config.model_kwargs)
    model = FusionSegModule(**kwargs)
    model.point_encoder.fit(sample.point_features)
    model._encoder_fitted = True
    return model


def split_validation(sample: Sample, fraction: float, seed: int) -> Tensor:
    """(N,) bool held-out points: ``fraction`` of each class, at least one, never a class's only point."""
    g = torch.Generator().manual_seed(seed + 7)
    y = sample.point_target
    val = torch.zeros(len(y), dtype=torch.bool)
    for k in torch.unique(y[y != IGNORE_INDEX]).tolist():  # loop over classes (a handful), not points
        idx = torch.nonzero(y == k).squeeze(1)
        n = int(round(fraction * len(idx))) if len(idx) > 2 else 0
        val[idx[torch.randperm(len(idx), generator=g)[:n]]] = True
    return val


def validation_points(sample: Sample, config: SegmentConfig) -> Tensor:
    """(N,) bool points held out of per-field training (none when fewer than ``min_val_points``)."""
    val = split_validation(sample, config.val_fraction, config.seed)
    if int(val.sum()) < config.min_val_points:
        val[:] = False
    return val


def train_on_points(sample: Sample, config: SegmentConfig) -> tuple[Any, dict[str, Any]]:
    """Train a graph model on one field from its labelled points (``sample.point_target``); returns model, info."""
    labelled = sample.point_target != IGNORE_INDEX
    if int(labelled.sum()) < max(4, sample.num_classes):
        raise SegmentError(
            f"only {int(labelled.sum())} labelled points for {sample.num_classes} classes; measure more points "
            "(--eds-fraction/--eds-points) or use a trained model with --checkpoint."
        )
    L.seed_everything(config.seed, workers=False, verbose=False)
    model = build_field_model(sample, config)
    val = validation_points(sample, config)
    train_set = PointCropDataset(sample, ~val, config.crop_px, config.batches_per_epoch * config.crops_per_batch,
                                 config.query_fraction, config.seed)  # fmt: skip
    val_items = validation_crops(sample, val, config.crop_px) if val.any() else []
    keep = KeepBestWeights()
    callbacks: list[L.Callback] = [keep]
    if val_items:
        callbacks.append(L.pytorch.callbacks.EarlyStopping(monitor="val/loss", patience=config.patience))
    trainer = L.Trainer(
        max_epochs=config.max_epochs, accelerator="cpu", devices=1,
        max_time=None if config.time_budget_s is None else {"seconds": config.time_budget_s},
        logger=False, enable_checkpointing=False, enable_model_summary=False, callbacks=callbacks,
        enable_progress_bar=config.progress, num_sanity_val_steps=0, limit_val_batches=1.0 if val_items else 0,
    )  # fmt: skip
    start = time.perf_counter()
    loader = DataLoader(train_set, batch_size=config.crops_per_batch, collate_fn=collate_samples)
    val_loader = DataLoader(_ListDataset(val_items), batch_size=config.crops_per_batch, collate_fn=collate_samples)
    trainer.fit(model, loader, val_loader if val_items else None)
    info = {
        "train_seconds": round(time.perf_counter() - start, 2),
        "epochs": trainer.current_epoch,
        "best_epoch": keep.epoch,
        "best_val_loss": None if keep.state is None else round(keep.best, 4),
        "train_points": int((~val & labelled).sum()),
        "val_points": int(val.sum()),
    }
    return model, info


def load_checkpoint_model(path: Path) -> Any:
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
        notes.append(f"spectra rebinned from the file's energy axis {sem.energy_axis} to the checkpoint's {axis}")
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


# ----------------------------------------------------------------------------- whole field
def prepare_points(
    sample: Sample, eds_fraction: float | None, eds_points: int | None, sampler: str, seed: int
) -> Sample:
    """The field with measured points: simulated sparse acquisition from a dense map, or the file's points."""
    dense = sem_meta(sample.meta).dense_spectra is not None
    if eds_fraction is not None or eds_points is not None:
        return sparse_acquisition(sample, eds_fraction, eds_points, sampler, seed)
    if dense:
        return measured_points(sample)
    if sample.num_points == 0:
        raise SegmentError("the input holds no EDS spectra; give an EDS file, or a folder with eds.npz or points.csv.")
    return sample


def segment_field(sample: Sample, checkpoint: Path | None = None, config: SegmentConfig | None = None) -> SegmentResult:
    """Segment a field whose measured points are in ``sample`` (``point_target`` set = labels given).

    Odd but legal input (1-2 points, all points at one pixel, a single phase) is mapped with a
    warning that is logged and kept in ``result.info["notes"]`` (and so in ``summary.json``).
    """
    config = config or SegmentConfig()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    timings: dict[str, float] = {}
    if sample.num_points < 1:
        raise SegmentError("the field has no measured spectra; measure at least one point (ideally ~1 % of pixels).")
    if config.method != "model" and config.method not in CLASSIC_METHODS:
        raise SegmentError(f"unknown --method {config.method!r}; choose model or one of {', '.join(CLASSIC_METHODS)}.")
    if checkpoint is not None and config.method != "model":
        raise SegmentError(f"--method {config.method} is a classic fill, not a model; drop --checkpoint or --method.")
    notes = odd_input_notes(sample)
    for note in notes:
        log.warning(note)
    if checkpoint is not None:
        return _segment_with_weights(sample, checkpoint, config, notes)
    start = time.perf_counter()
    points = None
    if sample.point_target is None:
        points = identify_points(sample, config)
        sample = with_point_labels(sample, points)
    timings["identify_s"] = round(time.perf_counter() - start, 2)
    if config.method != "model":
        return classic_segment(sample, config, points, timings)
    labelled = sample.point_target[sample.point_target != IGNORE_INDEX]
    if len(torch.unique(labelled)) < 2 or len(labelled) < max(4, sample.num_classes):
        labels, conf, note = _map_without_training(sample, labelled)
        log.warning(note)
        result = SegmentResult(labels, conf, sample.meta.class_names, sample, "nearest point (too few points to train)",
                               points, timings, {"notes": [*notes, note]})  # fmt: skip
        none = torch.zeros(sample.num_points, dtype=torch.bool)
        return finish_result(result, None, config, none, "too few points to withhold any")
    model, info = train_on_points(sample, config)
    timings["train_s"] = info["train_seconds"]
    start = time.perf_counter()
    labels, conf = predict_field(model, sample, config.tile_px, config.overlap_px)
    timings["predict_s"] = round(time.perf_counter() - start, 2)
    info["notes"] = notes + clustering_notes(points)
    result = SegmentResult(labels, conf, sample.meta.class_names, sample, "per-field training", points, timings, info)
    withheld = validation_points(sample, config)
    how = (f"the {int(withheld.sum())} validation points (never in the loss), map predicted without them"
           if withheld.any() else f"fewer than {config.min_val_points} validation points")  # fmt: skip
    return finish_result(result, model, config, withheld, how)


def _segment_with_weights(sample: Sample, checkpoint: Path, config: SegmentConfig, notes: list[str]) -> SegmentResult:
    """Inductive prediction with a trained model: points labelled in its classes by the mineral library, or, for
    the shipped weights on a field the library cannot name, by clustering (`_weights_on_clusters`)."""
    start = time.perf_counter()
    model = load_checkpoint_model(checkpoint)
    if not config.adapt_refiner:
        model.field_adaptation = None
    adapted, ckpt_notes = adapt_to_checkpoint(sample, model)
    pt = adapted.point_target
    identified = 0.0 if pt is None else float((pt != IGNORE_INDEX).float().mean())
    for note in ckpt_notes:
        log.warning(note)
    info = {"notes": notes + ckpt_notes, "checkpoint": str(checkpoint)}
    timings = {"identify_s": round(time.perf_counter() - start, 2)}
    if config.mode == "clusters":
        return _weights_on_clusters(sample, adapted, model, config, "--mode clusters", info, timings)
    if config.fallback_per_field and identified < 0.5:
        why = f"the library identifies {100 * identified:.0f} % of the spectra, too few to name the phases"
        if config.mode == "library":  # minerals asked for: train on the named points instead
            return _per_field_instead(sample, config, why)
        return _weights_on_clusters(sample, adapted, model, config, why, info, timings)
    mode = "shipped weights" if config.fallback_per_field else "checkpoint"
    return _predict_with_weights(model, adapted, sample, config, mode, None, info, timings)


def _weights_on_clusters(
    sample: Sample, adapted: Sample, model: Any, config: SegmentConfig, why: str, info: dict, timings: dict
) -> SegmentResult:
    """The shipped weights on the field's spectrum clusters (`in_field_classes`): the network's classes are
    mixed into the clusters through the points' best library matches, and the refiner (fine-tuned on the
    field's points) propagates the cluster labels. Per-field training when there is no refiner or too few
    points to cluster."""
    start = time.perf_counter()
    if model.refiner is None or adapted.num_points < 4:
        return _per_field_instead(sample, config, why)
    points = identify_points(sample, replace(config, mode="clusters"))
    if len(points.names) < 2:  # one phase: nothing to propagate (the per-field path maps it and says so)
        return segment_field(sample, None, replace(config, fallback_per_field=False, mode="clusters"))
    field = with_point_labels(adapted, points)
    library = best_library_labels(adapted.point_features, model.class_names, model_meta(model).energy_axis,
                                  model_meta(model).beam_energy_kev)  # fmt: skip
    class_map = cluster_class_map(library, field.point_target, model.num_outputs, len(field.meta.class_names))
    timings["identify_s"] = round(timings["identify_s"] + time.perf_counter() - start, 2)
    new_notes = [f"{why}: the points are labelled by clustering their spectra ({len(points.names)} clusters)",
                 *clustering_notes(points)]  # fmt: skip
    for text in new_notes:
        log.warning(text)
    info["notes"][:0] = new_notes
    mode = f"{'shipped weights' if config.fallback_per_field else 'checkpoint'} on spectrum clusters"
    with model.in_field_classes(class_map):
        return _predict_with_weights(model, field, sample, config, mode, points, info, timings)


def cluster_class_map(model_labels: Tensor, field_labels: Tensor, n_model: int, n_field: int) -> Tensor:
    """(n_model, n_field) P(field class | model class) counted over points labelled in both (IGNORE_INDEX: not),
    plus one point spread evenly over the field classes: a model class no point resembles maps uniformly."""
    both = (model_labels != IGNORE_INDEX) & (field_labels != IGNORE_INDEX)
    counts = torch.zeros(n_model, n_field, dtype=torch.float64)
    counts.index_put_((model_labels[both], field_labels[both]), torch.ones(int(both.sum()), dtype=torch.float64),
                      accumulate=True)  # fmt: skip
    return (counts + 1.0 / n_field) / (counts.sum(1, keepdim=True) + 1.0)


def _predict_with_weights(
    model: Any, field: Sample, original: Sample, config: SegmentConfig, mode: str, points: PointLabels | None,
    info: dict, timings: dict,
) -> SegmentResult:  # fmt: skip
    """Map ``field`` (points labelled in the classes the model predicts) with the refiner adapted to it, then the
    held-out check and classic floor; per-field training on ``original`` (the field as read) instead when the
    shipped weights disagree with the withheld points."""
    start = time.perf_counter()
    withheld = withheld_points(field, config.held_out_share, config.seed)
    # Adapted once per field (not per tile, within a tile) on the points the held-out check keeps: the map and its
    # blind check share one adaptation that never saw the withheld points (the check used to adapt again: 2.4 s).
    with model.points_encoded(field) as encoded, model.adapted_to(encoded, config.tile_px, ~withheld) as refiner:
        timings["adapt_s"] = round(time.perf_counter() - start, 2)
        labels, conf = predict_field(model, encoded, config.tile_px, config.overlap_px)
        timings["predict_s"] = round(time.perf_counter() - start, 2)  # encoding and adaptation included
        result = SegmentResult(labels, conf, tuple(field.meta.class_names), field, mode, points, timings,
                               {**info, "refiner": refiner})  # fmt: skip
        how = f"{int(withheld.sum())} labelled points ({100 * config.held_out_share:.0f} %) withheld, map predicted "
        result = finish_result(result, model, config, withheld, how + "without them", encoded)
    if model.refiner is not None:
        timings["classic_features_s"] = round(model.refiner.features.seconds, 2)  # every pass together
    agree = result.qc["agreement_model"]["share"]
    if config.fallback_per_field and agree is not None and agree < 0.5:
        return _per_field_instead(original, config,
                                  f"the shipped weights' map agrees with {100 * agree:.0f} % of the withheld "
                                  "points (this field is unlike their training data)")  # fmt: skip
    return result


def _per_field_instead(sample: Sample, config: SegmentConfig, why: str) -> SegmentResult:
    """Fall back from the shipped weights to per-field training, saying why (a note in the result and the log)."""
    note = f"{why}: trained a model on this field instead (as --per-field does)"
    log.warning(note)
    result = segment_field(sample, None, replace(config, fallback_per_field=False))
    result.info.setdefault("notes", []).insert(0, note)
    return result


def withheld_points(sample: Sample, share: float, seed: int) -> Tensor:
    """(N,) bool: ``share`` of the labelled points drawn at random (seeded) for the held-out check; none under 10."""
    labelled = torch.nonzero(sample.point_target != IGNORE_INDEX).squeeze(1) if sample.point_target is not None else []
    out = torch.zeros(sample.num_points, dtype=torch.bool)
    n = int(round(share * len(labelled)))
    if len(labelled) >= 10 and n >= 1:
        g = torch.Generator().manual_seed(seed + 11)
        out[labelled[torch.randperm(len(labelled), generator=g)[:n]]] = True
    return out


def finish_result(
    result: SegmentResult, model: Any, config: SegmentConfig, withheld: Tensor, how: str,
    predicted: Sample | None = None,
) -> SegmentResult:  # fmt: skip
    """Coverage, the held-out check, honouring the measured points and the QC figures (`fusionseg.sem.export.qc`).

    ``model``: a `FusionSegModule`, or a callable ``Sample -> (H, W) labels`` (a classic method). ``predicted``:
    the field as the model reads it (`FusionSegModule.points_encoded`), when not ``result.sample`` itself.
    """
    from fusionseg.sem.export.qc import held_out_agreement, honour_points, point_calls, quality_checks
    from fusionseg.sem.identify import void_points

    s, names = result.sample, tuple(result.class_names)
    labels, conf = result.labels.numpy(), result.confidence.numpy()  # edited in place: `result` gets new maps below
    calls = point_calls(s.point_coords.numpy(), None if s.point_target is None else s.point_target.numpy(), names,
                        labels.shape, void_points(s.point_features).numpy())  # fmt: skip
    held = {"how": how, "share": None}
    if withheld.any():
        keep, read = ~withheld, s if predicted is None else predicted
        rest = replace(read, point_coords=read.point_coords[keep], point_features=read.point_features[keep],
                       point_target=None if read.point_target is None else read.point_target[keep])  # fmt: skip
        blind_fills: dict[str, Tensor] = {}
        start = time.perf_counter()
        if isinstance(model, L.LightningModule):
            blind, withheld, how = _blind_window_map(model, rest, s.point_coords, withheld, config, how, blind_fills)
        else:
            blind = model(rest)
        held = held_out_agreement(blind.numpy(), names, calls.subset(withheld.numpy()), how)
        result.timings["qc_predict_s"] = round(time.perf_counter() - start, 2)
        start = time.perf_counter()
        if config.classic_floor and isinstance(model, L.LightningModule):
            floor = better_classic(blind.numpy(), rest, names, calls.subset(withheld.numpy()), config.tile_px,
                                   config.overlap_px, blind_fills)  # fmt: skip
            if floor is not None:
                labels, conf = _use_classic_floor(result, floor, held, config)
                held = held_out_agreement(floor[1], names, calls.subset(withheld.numpy()), how)
            result.timings["classic_floor_s"] = round(time.perf_counter() - start, 2)
    measured = sem_meta(s.meta).measured_mask
    outside = None if measured is None or config.extrapolate else ~np.asarray(measured, dtype=bool)
    if outside is not None and outside.any():
        labels[outside], conf[outside] = IGNORE_INDEX, np.nan
        result.info.setdefault("notes", []).append(
            f"{int(outside.sum())} pixels ({100 * outside.mean():.1f} %) lie outside the EDS-acquired area: "
            "'not measured' (--extrapolate maps them)"
        )
    final = honour_points(labels, names, calls) if config.honour_points else labels
    result.qc = quality_checks(final, names, calls, model_labels=labels, held_out=held)
    result.model_labels = torch.from_numpy(labels)
    result.labels, result.confidence = torch.from_numpy(final), torch.from_numpy(conf)
    for warning in result.qc["warnings"]:
        log.warning(warning)
    return result


def _blind_window_map(
    model: Any, rest: Sample, coords: Tensor, withheld: Tensor, config: SegmentConfig, how: str,
    fills: dict[str, Tensor],
) -> tuple[Tensor, Tensor, str]:  # fmt: skip
    """The map of ``rest`` (the field without the withheld points) over its central ``config.qc_window_px``
    window, IGNORE_INDEX outside it (the whole field when it fits); the withheld points inside the window
    (``coords``: every point of the field) and ``how`` saying so. ``fills``: the refiner's classic fills there."""
    h, w = rest.height, rest.width
    r0, c0, ch, cw = central_box(h, w, config.qc_window_px)
    window = central_window(rest, config.qc_window_px)
    with model.adapted_to(window, config.tile_px):  # kept points only (a no-op inside the map's: see its call)
        part, _ = predict_field(model, window, config.tile_px, config.overlap_px, fills)
    if (ch, cw) == (h, w):
        return part, withheld, how

    small = torch.int16 if rest.num_classes < 2**15 else torch.long  # read at points only: 4096², 34 MB, not 134

    def pasted(window_map: Tensor) -> Tensor:  # the window's map in a field of IGNORE_INDEX
        full = torch.full((h, w), IGNORE_INDEX, dtype=small)
        full[r0 : r0 + ch, c0 : c0 + cw] = window_map
        return full

    fills.update({method: pasted(fill) for method, fill in fills.items()})
    blind = pasted(part)
    rc = coords.round()
    inside = (rc[:, 0] >= r0) & (rc[:, 0] < r0 + ch) & (rc[:, 1] >= c0) & (rc[:, 1] < c0 + cw)
    withheld = withheld & inside
    return blind, withheld, f"{how}; scored on the {int(withheld.sum())} in the central {ch}x{cw} px window"


def _use_classic_floor(
    result: SegmentResult, floor: tuple[str, np.ndarray, float], model_held: dict, config: SegmentConfig
) -> tuple[np.ndarray, np.ndarray]:
    """The classic method's map of all the points (labels, confidence 1), noted in ``result`` (`classic_floor`)."""
    method, _, z = floor
    # the per-pixel fill (the region fill decided, cheaply; this one is what the user gets: 0.865 vs 0.791 pixel
    # accuracy on tests/test_classic_floor.py's field) costs seconds only on the rare field that gives way
    fill = ClassicFill(method, len(result.class_names))
    labels = predict_field(fill, result.sample, config.tile_px, config.overlap_px)[0].numpy().copy()
    note = (
        f"classic floor: {method} beat the model on the withheld points (McNemar z = {z:.1f}; the model's "
        f"held-out agreement {model_held['share']}), so the map is {method}'s (confidence not calibrated)"
    )
    log.warning(note)
    result.info.setdefault("notes", []).append(note)
    result.mode = f"{result.mode}, classic floor: {method}"
    return labels, (labels != IGNORE_INDEX).astype(np.float32)


def classic_segment(
    sample: Sample, config: SegmentConfig, points: PointLabels | None, timings: dict[str, float]
) -> SegmentResult:
    """A classic propagation of the labelled points (`fusionseg.baselines`); confidence 1 where it names a class."""

    def fill(field: Sample) -> Tensor:
        return ClassicFill(config.method, len(field.meta.class_names)).predict_samples([field])[0]["labels"]

    start = time.perf_counter()
    labels = fill(sample)
    timings["predict_s"] = round(time.perf_counter() - start, 2)
    confidence = (labels != IGNORE_INDEX).float()  # a classic fill has no calibrated probability
    notes = [f"{config.method}: settings chosen on the benchmark's validation split (fusionseg.baselines); "
             "confidence is not calibrated"]  # fmt: skip
    result = SegmentResult(labels, confidence, sample.meta.class_names, sample, f"classic: {config.method}", points,
                           timings, info={"notes": notes})  # fmt: skip
    withheld = withheld_points(sample, config.held_out_share, config.seed)
    how = f"{int(withheld.sum())} identified points ({100 * config.held_out_share:.0f} %) withheld, filled without them"
    return finish_result(result, fill, config, withheld, how)


def identify_points(sample: Sample, config: SegmentConfig) -> PointLabels:
    """Library/cluster labels of the measured spectra (a single spectrum is identified against the library);
    clusters are named by composition ("cluster-0 (Si-Al-K)")."""
    spectra, sem = sample.point_features, sem_meta(sample.meta)
    single = len(spectra) == 1
    points = label_points(spectra.repeat(2, 1) if single else spectra, sem.energy_axis, sem.beam_energy_kev,
                          mode="library" if single else config.mode, min_confidence=config.min_confidence,
                          n_clusters=config.n_clusters, seed=config.seed)  # fmt: skip
    if single:
        return replace(points, labels=points.labels[:1])
    if points.mode == "clusters":
        from fusionseg.sem.export.spectra import cluster_names

        named = cluster_names(spectra.numpy(), points.labels.numpy(), points.names, sem.energy_axis,
                              sem.beam_energy_kev)  # fmt: skip
        points = replace(points, names=named)
    return points


def clustering_notes(points: PointLabels | None) -> list[str]:
    """A warning when the chosen clusters show no substantial structure (best mean silhouette under
    `WEAK_SILHOUETTE`, Kaufman & Rousseeuw 1990): the phases are then tentative."""
    scores = (points.clustering or {}).get("silhouette_by_k") if points is not None else None
    if not scores or max(scores.values()) >= WEAK_SILHOUETTE:
        return []
    return [f"the spectra show no substantial cluster structure (best mean silhouette {max(scores.values()):.2f} < "
            f"{WEAK_SILHOUETTE}): the {points.clustering['clusters']} clusters may split one noisy phase; measure "
            "longer per point (more counts) before trusting them"]  # fmt: skip


def _map_without_training(sample: Sample, labelled: Tensor) -> tuple[Tensor, Tensor, str]:
    """Nearest labelled point per pixel when there is one phase or too few points to train; (labels, conf, note)."""
    from fusionseg.baselines import nearest_point_map

    y = sample.point_target
    labels = torch.from_numpy(nearest_point_map(sample.point_coords.numpy(), y.numpy(), (sample.height, sample.width)))
    k = len(torch.unique(labelled))
    if k == 1:
        name = sample.meta.class_names[int(labelled[0])]
        note = f"every labelled point is {name!r}: the map is that single phase (no model trained)"
    elif k == 0:
        note = "no measured point could be labelled: the map is empty (all pixels unlabelled)"
    else:
        note = (f"only {len(labelled)} labelled points for {sample.num_classes} phases: too few to train a model, the "
                "map is the nearest measured point's phase")  # fmt: skip
    conf = torch.full((sample.height, sample.width), 1.0 / max(1, sample.num_classes))  # no model: uninformative
    return labels, conf, note


def with_point_labels(sample: Sample, points: PointLabels) -> Sample:
    """The sample with identified point labels; unknown points become class ``unknown`` when present."""
    names, labels = points.names, points.labels.clone()
    if (labels == UNKNOWN).any():
        names = (*names, "unknown")
        labels[labels == UNKNOWN] = len(names) - 1
    return replace(sample, point_target=labels, meta=replace(sample.meta, class_names=names), target=None)


# ----------------------------------------------------------------------------- command line
def confidence(text: str) -> float:
    """argparse type: a posterior threshold in [0, 1); 1 or more would call every spectrum unknown."""
    import argparse

    value = float(text) if text.strip().lower() not in ("nan", "inf", "-inf", "+inf") else float("nan")
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be in [0, 1): at 1 or above every spectrum would be unknown")
    return value


def acquisition_amount(text: str) -> float:
    """A share of the pixels in (0, 1) or a whole number of points >= 1 (``--eds-budget``, ``--batch``)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (0 < value < 1 or (np.isfinite(value) and value >= 1 and value == int(value))):
        raise argparse.ArgumentTypeError(f"{text} must be a share of the pixels in (0, 1) (0.003 = 0.3 %) or a "
                                         "whole number of points >= 1")  # fmt: skip
    return value if value < 1 else int(value)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="fusionseg segment", description="Segment a real SEM field (image + EDS).")
    p.add_argument("input", type=Path, help="EDS file (.bcf, .spd, .hspy, ...) or folder (image + eds.npz/points.csv)")
    p.add_argument("--image", type=Path, help="separate BSE image (TIFF/PNG) on the EDS map's pixel grid")
    p.add_argument("--bse-title", help="pick the file's image whose title contains this text")
    amount = p.add_mutually_exclusive_group()
    amount.add_argument("--eds-fraction", type=fraction, help="keep this fraction of a dense map's spectra (0..1]")
    amount.add_argument("--eds-points", type=int_at_least(1), help="keep this many spectra of a dense map")
    amount.add_argument("--acquire", metavar="STRATEGY",
                        help="simulate adaptive acquisition on a dense map: measure batch by batch where the "
                        "planner asks (adaptive = uncertainty; also random, grid, stratified, superpixel, "
                        "unmeasured-regions, hybrid); writes acquisition.csv/.png")  # fmt: skip
    p.add_argument(
        "--eds-budget",
        type=acquisition_amount,
        help="--acquire: spectra to measure, a share of the pixels (default 0.003 = 0.3 %%) or a count",
    )
    p.add_argument("--batch", type=acquisition_amount,
                   help="--acquire: spectra per batch, share or count (default: the budget in 12 batches); the "
                   "map is updated after each")  # fmt: skip
    p.add_argument(
        "--sampler", default="random", help="where kept spectra lie: random, grid, stratified, superpixel (by image)"
    )
    p.add_argument("--checkpoint", type=Path, help="trained model (.ckpt); default: the shipped weights")
    p.add_argument("--per-field", action="store_true", help="train a small model on this field instead of weights")
    p.add_argument("--no-honour-points", action="store_true", help="keep the model's label at measured pixels")
    p.add_argument("--no-adapt", action="store_true",
                   help="map with the weights as they are (default: their refiner is first fine-tuned on this "
                   "field's points when that lowers the held-out loss)")  # fmt: skip
    p.add_argument("--extrapolate", action="store_true", help="map pixels outside the EDS-acquired area too")
    p.add_argument("--no-classic-floor", action="store_true",
                   help="keep the model's map even when a classic fill beats it on the withheld points")  # fmt: skip
    p.add_argument("--method", default="model", choices=("model", *CLASSIC_METHODS),
                   help="model: fusionseg's learned fusion (default); or a classic propagation of the identified "
                   "points (no model, for comparison)")  # fmt: skip
    p.add_argument("--mode", default="auto", choices=("auto", "library", "clusters"), help="point labelling")
    p.add_argument("--n-clusters", type=int_at_least(2), help="phases for clustering (default: by silhouette)")
    p.add_argument("--min-confidence", type=confidence, default=0.9,
                   help="library posterior below which a point is unknown, in [0, 1)")  # fmt: skip
    p.add_argument(
        "--time-budget",
        type=positive_float,
        default=None,
        help="per-field training: a wall-clock cap in seconds (> 0); default none: at most 25 "
        "epochs with early stopping, so a file and seed give the same map however busy the machine",
    )
    p.add_argument("--tile", type=int_at_least(min_tile_px(SegmentConfig.overlap_px)),
                   help="prediction tile size in pixels (default: the largest that fits --max-memory)")  # fmt: skip
    p.add_argument("--max-memory", type=memory_size, default=None,
                   help="memory budget, e.g. 4GB (default: the memory available now); sets the tile size")  # fmt: skip
    p.add_argument("--threads", type=int_at_least(1), help="torch CPU threads (default: torch's choice)")
    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument(
        "--overwrite", action="store_true", help="replace the files fusionseg wrote in --out before (nothing else)"
    )
    p.add_argument(
        "--resume", action="store_true", help="several fields: keep those already written in --out, map the rest"
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    return p.parse_args(argv)


VENDOR_SUFFIXES = (".bcf", ".spd", ".h5oina", ".hspy", ".emd", ".pts", ".msa", ".npz")


def input_paths(spec: Path) -> list[Path]:
    """The fields an input names: a glob pattern, a dataset folder written by ``fusionseg simulate``
    (``index.json`` + one ``.npz`` per field), a folder of vendor files, or one file or field folder."""
    import glob
    import json

    text = str(spec)
    if any(ch in text for ch in "*?["):
        paths = sorted(Path(p) for p in glob.glob(text))
        if not paths:
            raise SegmentError(f"no file matches {text!r}; check the pattern (quote it so the shell passes it on).")
        return paths
    if spec.is_dir() and (spec / "index.json").is_file():
        files = json.loads((spec / "index.json").read_text()).get("files", [])
        return [spec / f for f in files] or sorted(spec.glob("*.npz"))
    if spec.is_dir() and not (spec / "points.csv").is_file() and not (spec / "eds.npz").is_file():
        vendor = sorted(p for p in spec.iterdir() if p.suffix.lower() in VENDOR_SUFFIXES)
        if vendor:
            return vendor
    return [spec]


def read_field(path: Path, a: argparse.Namespace) -> Sample:
    """A field from a vendor file/folder (`read_input`) or a ``.npz`` sample (``fusionseg simulate``): its phase
    map is kept only to score the result (ARI in the report), its point labels are identified again."""
    from fusionseg.sem.data.readers import read_input

    if path.suffix.lower() == ".npz" and path.name != "eds.npz":
        from fusionseg.data.io import load_sample

        s = load_sample(path)
        return replace(hide_target(s, s.meta.name or path.stem), point_target=None)
    return read_input(path, image=a.image, bse_title=a.bse_title)


def budget_tile(budget: float, field: Sample | FieldSize, tile: int | None) -> int:
    """The prediction tile (px) for ``field`` under ``budget`` bytes (``tile``: the user's ``--tile``), refused with a
    `SegmentError` when the field does not fit; the budget holds a per-field training run (the shipped weights may
    fall back to one)."""
    tile = tile or tile_for_memory(budget, field, training=True)
    check_memory(budget, field, tile, training=True)
    return tile


def segment_one(path: Path, a: argparse.Namespace, out: Path) -> SegmentResult:
    """Read, sample, segment one field and write its outputs into a staging folder renamed to ``out``."""
    from fusionseg.export.safe_io import output_folder
    from fusionseg.sem.data.readers import peek_folder_size
    from fusionseg.sem.export.qc import qc_lines
    from fusionseg.sem.export.report import write_segment_outputs

    start = time.perf_counter()
    budget = a.max_memory or available_memory()
    size = peek_folder_size(path, a.image) if path.is_dir() else None  # from the files' headers
    if size is not None:  # a budget too small is refused before the read, which alone may exceed it
        budget_tile(budget, size, a.tile)
    sample = read_field(path, a)
    read_s = time.perf_counter() - start
    tile = budget_tile(budget, sample, a.tile)
    checkpoint, shipped = shipped_or_given_checkpoint(a) if a.method == "model" else (a.checkpoint, False)
    acquisition = None
    if a.acquire:
        sample, acquisition = acquire_field(sample, a, tile)
    else:
        sample = prepare_points(sample, a.eds_fraction, a.eds_points, a.sampler, a.seed)
    tile = budget_tile(budget, mapped_size(sample, checkpoint), a.tile)  # the points known, and any rebinned copy
    mode = "clusters" if a.n_clusters is not None and a.mode == "auto" else a.mode  # a number of clusters: clusters
    config = SegmentConfig(mode=mode, method=a.method, n_clusters=a.n_clusters, min_confidence=a.min_confidence,
                           time_budget_s=a.time_budget, tile_px=tile, seed=a.seed, num_threads=a.threads,
                           honour_points=not a.no_honour_points, extrapolate=a.extrapolate,
                           fallback_per_field=shipped, adapt_refiner=not a.no_adapt,
                           classic_floor=not a.no_classic_floor)  # fmt: skip
    log.info("memory budget %.2f GB: prediction tiles of %d px", budget / 1e9, tile)
    result = segment_field(sample, checkpoint, config)
    result.timings["read_s"] = round(read_s, 2)
    result.info.update(memory_budget_gb=round(budget / 1e9, 2), tile_px=tile)
    if acquisition is not None:
        result.info["acquisition"], result.acquisition_order = acquisition
    written = time.perf_counter()
    with output_folder(out, (path, a.image, a.checkpoint), a.overwrite or a.resume) as staging:
        result.timings["total_s"] = round(time.perf_counter() - start, 2)  # before writing: summary.json holds it
        write_segment_outputs(staging, result, input_path=path)
    result.timings["write_s"] = round(time.perf_counter() - written, 2)
    print(f"{path.name}:")
    print("\n".join(f"  {line}" for line in qc_lines(result.qc)))
    return result


ACQUIRE_BUDGET = 0.003  # --acquire default: 0.3 % of the pixels (in `fusionseg.acquisition.DEFAULT_BATCHES` batches)


def check_acquisition_args(a: argparse.Namespace) -> None:
    """Before any work: a known strategy, and --eds-budget/--batch only with --acquire."""
    from fusionseg.registry import ACQUISITION_STRATEGIES

    if a.acquire is None:
        if a.eds_budget is not None or a.batch is not None:
            raise SegmentError("--eds-budget and --batch set an adaptive acquisition; add --acquire adaptive "
                               "(or another strategy), or keep a fixed share with --eds-fraction.")  # fmt: skip
        return
    ACQUISITION_STRATEGIES.get(a.acquire)  # an unknown name lists the known ones


def acquire_field(sample: Sample, a: argparse.Namespace, tile_px: int) -> tuple[Sample, tuple[dict, np.ndarray]]:
    """``--acquire``: the points an acquisition planner measures on the dense map, batch by batch, with the
    maps of ``--checkpoint`` (else the shipped weights) in the loop; (field, (summary, acquisition order))."""
    from fusionseg.paths import DEFAULT_WEIGHTS
    from fusionseg.sem.acquire import acquire_points, acquisition_summary

    start = time.perf_counter()
    model = load_checkpoint_model(a.checkpoint or DEFAULT_WEIGHTS)
    budget = a.eds_budget or ACQUIRE_BUDGET
    acquired, planner, states = acquire_points(sample, model, budget, a.batch, a.acquire, a.seed, tile_px)
    for s in states:
        log.info("acquisition batch %d: %d points, mean confidence %.3f", s.step, s.measured, s.mean_confidence)
    summary = acquisition_summary(planner, states, a.acquire)
    summary["seconds"] = round(time.perf_counter() - start, 2)
    return acquired, (summary, planner.order())


def run_segment(a: argparse.Namespace) -> Path:
    """Segment every field ``a.input`` names: one field into ``--out``, several into ``--out/<field>/``.

    Several fields: with ``--resume`` fields already written completely are kept; under torchrun or SLURM
    each process maps its own share of the fields (`fusionseg.distributed`).
    """
    from fusionseg.distributed import process_rank, share_of
    from fusionseg.export.safe_io import check_output_folder, is_complete, remove_stale_staging

    rank, world_size = process_rank()
    # Under torchrun/SLURM the other processes may be publishing their fields already (a check that read them raced
    # them): each process checks --out without the others' fields. A plain run checks --out before the input.
    listed = input_paths(a.input) if world_size > 1 else None
    theirs = [] if listed is None else [p.stem for p in listed if p not in share_of(listed, rank, world_size)]
    if listed is not None and len(listed) == 1 and theirs:  # the one field is --out itself, mapped elsewhere
        return Path(a.out).expanduser().resolve()
    out = check_output_folder(a.out, (a.input, a.image, a.checkpoint), a.overwrite or a.resume, others=theirs)
    for what, path in (("input", a.input), ("--image", a.image), ("--checkpoint", a.checkpoint)):
        if path is not None and "*" not in str(path) and not Path(path).exists():
            raise SegmentError(f"{what} {path} does not exist; check the path.")
    if a.checkpoint is not None and not Path(a.checkpoint).is_file():
        raise SegmentError(f"--checkpoint {a.checkpoint} is not a file; give a .ckpt written by `fusionseg fit`.")
    check_acquisition_args(a)
    paths = listed or input_paths(a.input)
    mine = share_of(paths, rank, world_size)
    kept = 0
    for path in mine:
        field_out = out if len(paths) == 1 else out / path.stem
        remove_stale_staging(field_out)  # a killed run's; no other process maps this field
        if a.resume and is_complete(field_out):
            kept += 1
            continue
        segment_one(path, a, field_out)
    if kept:
        print(f"kept {kept} field(s) already written in {out} (--resume)")
    return out


def shipped_or_given_checkpoint(a: argparse.Namespace) -> tuple[Path | None, bool]:
    """``--checkpoint``, else the shipped weights unless ``--per-field`` asks for per-field training (with
    ``--mode clusters`` or ``--n-clusters`` the shipped weights map the spectrum clusters); (path, shipped?)."""
    from fusionseg.paths import DEFAULT_WEIGHTS

    if a.checkpoint is not None:
        return a.checkpoint, False
    if a.per_field:
        return None, False
    return DEFAULT_WEIGHTS, True


def segment_main(argv: list[str]) -> int:
    """``fusionseg segment ...``; a user error prints one paragraph and returns 2 (traceback with ``--debug``)."""
    from fusionseg.errors import run_command

    def run(args: list[str]) -> int:
        out = run_segment(parse_args(args))
        print(f"Outputs written to {out}")
        return 0

    return run_command("segment", run, list(argv))


__all__ = [
    "SegmentConfig",
    "SegmentError",
    "SegmentResult",
    "rebin_spectra",
    "segment_field",
    "segment_main",
    "sparse_acquisition",
    "train_on_points",
]
