"""`FusionSegModule`: point encoder x graph builder x fusion(backbone) x head, as a LightningModule.

Every part is picked by registry name plus a kwargs dict, so a YAML config (LightningCLI) or a
Python call can swap any of them. A batch is a list of `Sample`s; graphs are built inside the
module so that prediction works on a raw `Sample` (a user's file) exactly as in training.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor
from torch_geometric.data import Batch
from torchmetrics import MeanMetric

from fusionseg.graphs.schema import POINT, decode_to_pixels, pixel_batch
from fusionseg.models.losses import create_loss, labelled
from fusionseg.models.metrics import regression_metrics, segmentation_metrics, summarise
from fusionseg.models.module_predict import ENCODE_CHUNK_BYTES, FieldPrediction
from fusionseg.models.module_setup import (
    ARCHITECTURE_KEYS,
    DEFAULT_LOSS,
    LEGACY_CONTEXT_KEYS,
    MONITOR,
    CheckpointMismatchError,
    ModuleSetup,
    encoder_kwargs,
    migrate_hparams,
)
from fusionseg.models.prior import PriorRefiner
from fusionseg.registry import FUSIONS, GRAPH_BUILDERS, HEADS, POINT_ENCODERS
from fusionseg.sample import IGNORE_INDEX, Sample

CLASS_MAP_FLOOR = 1e-6  # least probability of a field class under `in_field_classes` (its log stays finite)


class FusionSegModule(ModuleSetup, FieldPrediction, L.LightningModule):
    """Segment (or regress) a dense map from an image plus sparse point measurements.

    Args:
        class_names: output classes (segmentation); linked from the DataModule by the CLI.
        task: ``"segmentation"`` (per-pixel classes) or ``"regression"`` (per-pixel values,
            ``num_outputs`` channels; target: the float ``Sample.target``, (H, W) for one channel or
            (K, H, W), NaN = unlabelled). Regression logs
            ``rmse``, ``mae`` and ``bad{t}`` per ``error_thresholds`` and keeps checkpoints by
            ``val/rmse`` (`MONITOR`); segmentation by ``val/miou``.
        point_context: what the data's domain tells point encoders (`fusionseg.contracts.DomainMeta.encoder_context`,
            e.g. SEM's ``energy_axis`` and ``beam_energy_kev``); linked from the DataModule by the CLI. An
            encoder receives the keys its constructor names.
        point_encoder / graph_builder / fusion / backbone / head: registry names; the matching
            ``*_kwargs`` dicts are passed to their constructors.
        image_channels / point_channels: widths of ``Sample.image`` and ``Sample.point_features``
            (linked from the data by the CLI); ``point_channels`` sizes encoders taking ``in_dim``.
        hidden_channels: width of the fused node embeddings.
        loss: a `fusionseg.models.losses.LOSSES` name (``ce``, ``focal``, ``dice``, ``ce+dice``;
            ``l2``, ``l1``, ``smooth-l1``; plugins add more); default ``ce`` / ``l2`` by task.
            ``class_weights`` optional per class (segmentation).
        error_thresholds: regression only: log the % of pixels with |error| above each (target units).
        mask_unseen_classes: at evaluation, only classes found among a field's measured points
            may be predicted (the spectra say which phases exist in the field).
        prior_refiner: kwargs of a `PriorRefiner` (segmentation only; ``{}`` for its defaults, None = off):
            each pixel's class scores are re-made from edge-aware classic propagation of the labelled
            points (geodesic and straight distances, image match) plus the network's log-probabilities.
        optimizer / scheduler: callables from the config (LightningCLI dependency injection).
    """

    def __init__(
        self,
        class_names: list[str] | tuple[str, ...] = (),
        task: str = "segmentation",
        num_outputs: int | None = None,
        point_context: dict[str, Any] | None = None,
        image_channels: int = 1,
        point_channels: int | None = None,
        point_encoder: str = "identity",
        point_encoder_kwargs: dict[str, Any] | None = None,
        graph_builder: str = "grid",
        graph_builder_kwargs: dict[str, Any] | None = None,
        fusion: str = "cross-attention",
        fusion_kwargs: dict[str, Any] | None = None,
        backbone: str = "sage",
        backbone_kwargs: dict[str, Any] | None = None,
        head: str = "classifier",
        head_kwargs: dict[str, Any] | None = None,
        hidden_channels: int = 64,
        loss: str | None = None,
        loss_kwargs: dict[str, Any] | None = None,
        class_weights: list[float] | None = None,
        mask_unseen_classes: bool = True,
        prior_refiner: dict[str, Any] | None = None,
        error_thresholds: list[float] | tuple[float, ...] = (),
        log_phase_maps: bool = True,
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        if task not in ("segmentation", "regression"):
            raise ValueError(f"task must be 'segmentation' or 'regression', got {task!r}.")
        class_names = tuple(class_names)
        if task == "segmentation" and not class_names:
            raise ValueError("class_names is empty: give the class names (the CLI links them from the data).")
        if task == "regression" and not num_outputs:
            raise ValueError("task='regression' needs num_outputs (channels of the dense target).")
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.class_names = class_names
        self.num_outputs = len(class_names) if task == "segmentation" else int(num_outputs)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler

        self.point_encoder = POINT_ENCODERS.create(
            point_encoder, **encoder_kwargs(point_encoder, point_encoder_kwargs, point_channels, point_context)
        )
        self.graph_builder = GRAPH_BUILDERS.create(graph_builder, **(graph_builder_kwargs or {}))
        self.fusion = FUSIONS.create(
            fusion,
            image_dim=self.graph_builder.image_feature_dim(image_channels),
            point_dim=self.point_encoder.out_dim,
            hidden_channels=hidden_channels,
            image_node_type=self.graph_builder.image_node_type,
            backbone=backbone,
            backbone_kwargs=backbone_kwargs or {},
            **(fusion_kwargs or {}),
        )
        self.head = HEADS.create(head, in_dim=self.fusion.out_dim, num_outputs=self.num_outputs, **(head_kwargs or {}))
        if prior_refiner is not None and task != "segmentation":
            raise ValueError("prior_refiner refines class scores: it needs task='segmentation' (set it to null).")
        self.refiner = PriorRefiner(**prior_refiner) if prior_refiner is not None else None
        self.loss_fn = create_loss(loss or DEFAULT_LOSS[task], class_weights=class_weights, **(loss_kwargs or {}))
        if task == "segmentation":
            metrics = segmentation_metrics(self.num_outputs)
        else:
            metrics = regression_metrics(tuple(float(t) for t in error_thresholds))
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        # Field-weighted mean losses whose sums are synchronised across DDP processes (exact for any split).
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self._encoder_fitted = False

    # ----------------------------------------------------------------------------- forward
    def build_graphs(self, samples: list[Sample]) -> Batch:
        """Graphs of a list of samples, batched (pixel_to_node offsets handled by SegGraph)."""
        return Batch.from_data_list([self.graph_builder(s) for s in samples])

    def forward(self, graph: Batch) -> Tensor:
        """Per-image-node outputs (M, num_outputs) of a batched graph with raw point spectra; inside
        `in_field_classes`, log-probabilities (M, K) of the field's own classes instead."""
        graph[POINT].x = self.point_encoder(graph[POINT].x)
        out = self.head(self.fusion(graph), graph)
        if self.class_map is not None:
            out = (out.softmax(-1) @ self.class_map.to(out)).clamp_min(CLASS_MAP_FLOOR).log()
        return out

    @contextmanager
    def in_field_classes(self, class_map: Tensor) -> Iterator[None]:
        """Predict a field labelled in its own classes (e.g. spectrum clusters) for the duration.

        ``class_map`` (num_outputs, K): P(field class k | model class m), rows summing to 1. The network's
        class probabilities are mixed into the field's K classes; the refiner, blind to class identity,
        then reads them with its classic features of the field's labelled points as it reads its own classes.
        """
        if self.refiner is None or class_map.dim() != 2 or class_map.shape[0] != self.num_outputs:
            raise ValueError(
                f"in_field_classes needs a segmentation model with a refiner and a ({self.num_outputs}, K) class "
                f"map; got {tuple(class_map.shape)}{'' if self.refiner is not None else ' and no refiner'}."
            )
        self.class_map = class_map.float()
        try:
            yield
        finally:
            self.class_map = None

    def pixel_outputs(self, samples: list[Sample], mask: bool = True) -> tuple[Tensor, Batch]:
        """Per-pixel outputs (sum H*W, K) for a list of samples, and the batched graph.

        ``mask``: outside training, apply ``mask_unseen_classes`` (predictions; not for losses).
        """
        graph = self.build_graphs(samples)
        node_out = self(graph)
        if self.refiner is not None:
            out = self.refiner(node_out, graph, samples)
            if mask and self.hparams.mask_unseen_classes and not self.training:
                out = self._mask_unseen(out, graph, pixel_batch(graph))
            return out, graph
        if mask and self.hparams.task == "segmentation" and self.hparams.mask_unseen_classes and not self.training:
            node_out = self._mask_unseen(node_out, graph, graph[self.graph_builder.image_node_type].batch)
        return decode_to_pixels(node_out, graph), graph

    def _mask_unseen(self, logits: Tensor, graph: Batch, owner: Tensor) -> Tensor:
        """Forbid classes not found among each graph's measured points (needs point labels).

        ``owner``: graph id of each row of ``logits`` (image nodes or pixels).
        """
        y = getattr(graph[POINT], "y", None)
        if y is None or y.numel() == 0:
            return logits
        seen = torch.zeros(graph.num_graphs, self.num_outputs, dtype=torch.bool, device=logits.device)
        ok = y != IGNORE_INDEX
        seen[graph[POINT].batch[ok], y[ok]] = True
        seen[~seen.any(1)] = True  # a field without labelled points keeps every class
        return logits.masked_fill(~seen[owner], torch.finfo(logits.dtype).min / 2)

    # ----------------------------------------------------------------------------- steps
    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        if isinstance(batch, list) and batch and isinstance(batch[0], Sample):
            return [s.to(device) for s in batch]
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def _loss(self, samples: list[Sample]) -> tuple[Tensor, Tensor, Batch]:
        """Loss on the unmasked outputs, and the (masked, in evaluation) outputs for metrics."""
        if self.refiner is not None and self.training:
            return self._refined_training_loss(samples)
        out, graph = self.pixel_outputs(samples, mask=False)
        target = graph.pixel_y if self.hparams.task == "segmentation" else self.regression_target(samples, graph)
        if self.refiner is not None:  # a phase no point found cannot be named: not a refiner error
            target = self.refiner.found_only(target, samples)
        loss = self.loss_fn(out, target)
        if self.hparams.task == "segmentation" and self.hparams.mask_unseen_classes and not self.training:
            out = self._mask_unseen(out, graph, pixel_batch(graph))
        return loss, out, graph

    def _refined_training_loss(self, samples: list[Sample]) -> tuple[Tensor, Tensor, Batch]:
        """Loss of the refined scores on a random share of the pixels (the refiner scores every class per pixel)."""
        graph = self.build_graphs(samples)
        node_out = self(graph)
        base = decode_to_pixels(node_out, graph)
        keep = torch.rand(len(base), device=base.device) < self.refiner.train_pixel_fraction
        out = self.refiner(node_out, graph, samples, keep)
        target = self.refiner.found_only(graph.pixel_y, samples)[keep]
        loss = self.loss_fn(out, target)
        if self.refiner.network_loss_weight > 0:  # the network's own scores stay a classifier (deep supervision)
            loss = loss + self.refiner.network_loss_weight * self.loss_fn(base, graph.pixel_y)
        return loss, out, graph

    def regression_target(self, samples: list[Sample], graph: Batch) -> Tensor:
        """Float per-pixel targets (sum H*W, K) of a batch; NaN = unlabelled."""
        parts = []
        for s in samples:
            values = s.target
            if values is None or not values.is_floating_point():
                raise ValueError(
                    f"task='regression' needs a float target for sample {s.meta.name!r}: Sample.target (H, W) or "
                    "(K, H, W) float (NaN = unlabelled)."
                )
            values = torch.as_tensor(values, dtype=torch.float32, device=self.device)
            parts.append(values.reshape(-1, s.height * s.width).T)  # (K, H, W) or (H, W) -> (H*W, K)
        target = torch.cat(parts)
        if target.shape[1] != self.num_outputs:
            raise ValueError(f"regression targets have {target.shape[1]} channels, num_outputs is {self.num_outputs}.")
        return target

    def training_step(self, batch: list[Sample], batch_idx: int) -> Tensor:
        loss, _, _ = self._loss(batch)
        self.log("train/loss", loss, batch_size=len(batch), prog_bar=True, sync_dist=True)  # DDP: all processes' mean
        return loss

    def _eval_step(self, batch: list[Sample], batch_idx: int, stage: str) -> None:
        loss, out, graph = self._loss(batch)
        mean_loss = self.val_loss if stage == "val" else self.test_loss
        mean_loss.update(loss.detach(), weight=len(batch))
        self.log(f"{stage}/loss", mean_loss, on_step=False, on_epoch=True, prog_bar=stage == "val")
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        if self.hparams.task != "segmentation":
            metrics.update(*labelled(out, self.regression_target(batch, graph)))
            return
        metrics.update(out.argmax(-1), graph.pixel_y)
        if stage == "val" and batch_idx == 0 and self.hparams.log_phase_maps:
            self._log_phase_map(out, graph)

    def validation_step(self, batch: list[Sample], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch: list[Sample], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "test")

    def _log_metrics(self, metrics: Any, stage: str) -> None:
        """Log the epoch's metrics; ``compute`` has summed their states over DDP processes, so every process
        logs the same values (``sync_dist`` averages equal numbers: it only tells Lightning they are global)."""
        values = metrics.compute()
        if self.hparams.task != "segmentation":
            self.log_dict({k: float(v) for k, v in values.items()}, prog_bar=stage == "val", sync_dist=True)
            metrics.reset()
            return
        summary = summarise(values, self.class_names)
        scalars = {k: v for k, v in summary.items() if k != "per_class_iou"}
        self.log_dict(scalars, prog_bar=stage == "val", sync_dist=True)
        per_class = {f"{stage}/iou/{name}": v for name, v in summary.get("per_class_iou", {}).items()}
        self.log_dict(per_class, sync_dist=True)
        metrics.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_metrics(self.val_metrics, "val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics(self.test_metrics, "test")

    class_map: Tensor | None = None
    """(num_outputs, K) set by `in_field_classes` while predicting a field in its own classes; None: the model's."""

    def _log_phase_map(self, out: Tensor, graph: Batch) -> None:
        from fusionseg.export.render import log_phase_map

        h, w = (int(v) for v in graph.image_size[0])
        pred = out[: h * w].argmax(-1).view(h, w).cpu().numpy()
        target = graph.pixel_y[: h * w].view(h, w).cpu().numpy()
        log_phase_map(self.logger, pred, target, self.class_names, step=self.current_epoch)


__all__ = [
    "ARCHITECTURE_KEYS",
    "CLASS_MAP_FLOOR",
    "DEFAULT_LOSS",
    "ENCODE_CHUNK_BYTES",
    "LEGACY_CONTEXT_KEYS",
    "MONITOR",
    "CheckpointMismatchError",
    "FusionSegModule",
    "encoder_kwargs",
    "migrate_hparams",
]
