"""`segment --per-field`: a small graph model trained on the field's own labelled points, then its map.

Each step hides a random part of the points (queries) and learns to predict their labels from the image and the
remaining points (context), on crops around points (`fusionseg.sem.segment.crops`); held-out points drive early
stopping. A field with one phase or too few points is mapped by its nearest labelled point instead.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from fusionseg.data.datamodule import collate_samples
from fusionseg.errors import SegmentError
from fusionseg.inference import predict_field
from fusionseg.logs import stdout_is_terminal
from fusionseg.sample import IGNORE_INDEX, Sample
from fusionseg.sem.identify import PointLabels
from fusionseg.sem.meta import sem_meta
from fusionseg.sem.segment.check import finish_result
from fusionseg.sem.segment.config import SegmentConfig, SegmentResult
from fusionseg.sem.segment.crops import EpochLines, KeepBestWeights, ListDataset, PointCropDataset, validation_crops
from fusionseg.sem.segment.identify import clustering_notes
from fusionseg.sem.segment.timing import record, timed

log = logging.getLogger(__name__)


def too_few_to_train(sample: Sample) -> bool:
    """One phase among the labelled points, or fewer of them than ``max(4, classes)``: no model is trained."""
    labelled = sample.point_target[sample.point_target != IGNORE_INDEX]
    return len(torch.unique(labelled)) < 2 or len(labelled) < max(4, sample.num_classes)


def map_nearest_point(
    sample: Sample, config: SegmentConfig, points: PointLabels | None, timings: dict[str, float], notes: list[str]
) -> SegmentResult:
    """The map of a field too poor to train on (`too_few_to_train`): each pixel the nearest labelled point's phase."""
    labelled = sample.point_target[sample.point_target != IGNORE_INDEX]
    labels, conf, note = _map_without_training(sample, labelled)
    log.warning(note)
    result = SegmentResult(labels, conf, sample.meta.class_names, sample, "nearest point (too few points to train)",
                           points, timings, {"notes": [*notes, note]})  # fmt: skip
    none = torch.zeros(sample.num_points, dtype=torch.bool)
    return finish_result(result, None, config, none, "too few points to withhold any")


def map_per_field(
    sample: Sample, config: SegmentConfig, points: PointLabels | None, timings: dict[str, float], notes: list[str]
) -> SegmentResult:
    """Train a model on the field's labelled points, map the field with it, then the held-out check on the
    validation points (never in the loss) and the classic floor (`finish_result`)."""
    model, info = train_on_points(sample, config)
    record(timings, "train_s", seconds=info["train_seconds"])
    with timed(timings, "predict_s"):
        labels, conf = predict_field(model, sample, config.tile_px, config.overlap_px)
    info["notes"] = notes + clustering_notes(points)
    result = SegmentResult(labels, conf, sample.meta.class_names, sample, "per-field training", points, timings, info)
    withheld = validation_points(sample, config)
    how = (f"the {int(withheld.sum())} validation points (never in the loss), map predicted without them"
           if withheld.any() else f"fewer than {config.min_val_points} validation points")  # fmt: skip
    return finish_result(result, model, config, withheld, how)


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
    bar = config.progress and stdout_is_terminal()  # a log file gets a line per epoch, not the bar's redraws
    callbacks: list[L.Callback] = [keep, *([EpochLines()] if config.progress and not bar else [])]
    if val_items:
        callbacks.append(L.pytorch.callbacks.EarlyStopping(monitor="val/loss", patience=config.patience))
    trainer = L.Trainer(
        max_epochs=config.max_epochs, accelerator="cpu", devices=1,
        max_time=None if config.time_budget_s is None else {"seconds": config.time_budget_s},
        logger=False, enable_checkpointing=False, enable_model_summary=False, callbacks=callbacks,
        enable_progress_bar=bar, num_sanity_val_steps=0, limit_val_batches=1.0 if val_items else 0,
    )  # fmt: skip
    start = time.perf_counter()  # the seconds of `fit` alone, in ``info`` (the pipeline's train_s)
    loader = DataLoader(train_set, batch_size=config.crops_per_batch, collate_fn=collate_samples)
    val_loader = DataLoader(ListDataset(val_items), batch_size=config.crops_per_batch, collate_fn=collate_samples)
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


__all__ = ["build_field_model", "class_weights", "map_nearest_point", "map_per_field", "split_validation",
           "too_few_to_train", "train_on_points", "validation_points"]  # fmt: skip
