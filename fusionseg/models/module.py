"""`FusionSegModule`: point encoder x graph builder x fusion(backbone) x head, as a LightningModule.

Every part is picked by registry name plus a kwargs dict, so a YAML config (LightningCLI) or a
Python call can swap any of them. A batch is a list of `Sample`s; graphs are built inside the
module so that prediction works on a raw `Sample` (a user's file) exactly as in training.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor
from torch.nn.parameter import is_lazy  # lazily sized layers (shape known after loading) are not compared
from torch_geometric.data import Batch
from torchmetrics import MeanMetric

from fusionseg.errors import FusionSegError
from fusionseg.graphs.schema import POINT, decode_to_pixels, pixel_batch
from fusionseg.inference import check_memory, predict_field, tile_for_memory
from fusionseg.models.adaptation import FieldAdaptation, adapted_mlp
from fusionseg.models.losses import create_loss, labelled
from fusionseg.models.metrics import regression_metrics, segmentation_metrics, summarise
from fusionseg.models.prior import FEATURES, PriorRefiner
from fusionseg.registry import FUSIONS, GRAPH_BUILDERS, HEADS, POINT_ENCODERS
from fusionseg.sample import IGNORE_INDEX, Sample

# Hyper-parameters that change tensor shapes or meaning; a checkpoint must agree on them.
# Metric each task's checkpoints are chosen by, and whether higher is better.
MONITOR = {"segmentation": ("val/miou", "max"), "regression": ("val/rmse", "min")}
DEFAULT_LOSS = {"segmentation": "ce", "regression": "l2"}
ENCODE_CHUNK_BYTES = 8e6  # point features encoded at once by `points_encoded`: small temporaries, reused
CLASS_MAP_FLOOR = 1e-6  # least probability of a field class under `in_field_classes` (its log stays finite)

ARCHITECTURE_KEYS = (
    "class_names", "num_outputs", "task", "point_context", "image_channels", "point_channels", "hidden_channels",
    "point_encoder", "point_encoder_kwargs", "graph_builder", "graph_builder_kwargs",
    "fusion", "fusion_kwargs", "backbone", "backbone_kwargs", "head", "head_kwargs", "prior_refiner",
)  # fmt: skip


class CheckpointMismatchError(FusionSegError):
    """A checkpoint was trained with a different architecture than the one configured."""


class FusionSegModule(L.LightningModule):
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

    predict_max_memory: float | None = None
    """Bytes a predicted field may use (``fusionseg predict --max_memory``): larger segmentation fields are
    predicted in overlapping tiles of the size that fits (`fusionseg.inference`); None: whole fields."""

    class_map: Tensor | None = None
    """(num_outputs, K) set by `in_field_classes` while predicting a field in its own classes; None: the model's."""

    field_adaptation: FieldAdaptation | None = FieldAdaptation()
    """How each predicted field's own labelled points fine-tune the refiner first (`fusionseg.models.adaptation`);
    None: every field gets the trained refiner as it is."""

    def predict_step(self, batch: list[Sample], batch_idx: int) -> list[dict[str, Any]]:
        """Per sample: ``labels`` (H, W) long and ``confidence`` (H, W) max probability (segmentation), or
        ``values`` (K, H, W) (regression); in tiles when ``predict_max_memory`` asks for them. With a refiner,
        each field is predicted by the refiner adapted to it (`adapted_to`)."""
        if self.refiner is None:
            return self._predict_batch(batch)
        results = []
        for sample in batch:
            budget = self.predict_max_memory  # the adaptation window must fit the budget's tile, as the tiles do
            with self.adapted_to(sample, None if budget is None else tile_for_memory(budget, sample)):
                results += self._predict_batch([sample])
        return results

    def _predict_batch(self, batch: list[Sample]) -> list[dict[str, Any]]:
        if self.predict_max_memory is None or self.hparams.task != "segmentation":
            return self._predict_whole(batch)
        return [self._predict_in_tiles(s, self.predict_max_memory) for s in batch]

    @contextmanager
    def points_encoded(self, sample: Sample) -> Iterator[Sample]:
        """``sample`` with its point features encoded once, (N, out_dim), and the point encoder bypassed for the
        duration. Each point is encoded on its own, so the network sees what it would per tile; tiles, held-out
        subsets and adaptation folds then copy encoded features, not raw ones (a 4096² field at 1 % EDS holds
        1.4 GB of spectra). The encoded sample has no domain metadata: its features are no domain's raw format."""
        encoder = self.point_encoder
        feats = sample.point_features
        rows = max(1, int(ENCODE_CHUNK_BYTES // (4 * max(feats.shape[1], 1))))
        was_training = encoder.training
        with torch.no_grad():
            encoder.eval()  # as predicting does (`predict_samples`)
            encoded = torch.cat([encoder(feats[i : i + rows].to(self.device)).cpu()
                                 for i in range(0, max(len(feats), 1), rows)])  # fmt: skip
            encoder.train(was_training)
        self.point_encoder = torch.nn.Identity()
        try:
            yield replace(sample, point_features=encoded, meta=replace(sample.meta, domain=None))
        finally:
            self.point_encoder = encoder

    @contextmanager
    def adapted_to(self, sample: Sample, max_px: int | None = None, points: Tensor | None = None) -> Iterator[str]:
        """Predict with the refiner fine-tuned to ``sample``'s points for the duration (a no-op inside another
        `adapted_to`, without a refiner or with ``field_adaptation`` None). ``max_px``: a smaller adaptation
        window (px) than the settings'; ``points``: (N,) bool, the points it learns from (default: all).
        Yields what was done, in words."""
        if self.refiner is None or self.field_adaptation is None or self.refiner.field_mlp is not None:
            yield "refiner not adapted"
            return
        settings = self.field_adaptation
        if max_px is not None and max_px < settings.max_px:
            settings = replace(settings, max_px=max_px)
        mlp, how = adapted_mlp(self, sample, settings, points)
        self.refiner.field_mlp = mlp if mlp is not None else self.refiner.mlp  # set either way: no nested retry
        try:
            yield how
        finally:
            self.refiner.field_mlp = None

    def _predict_whole(self, batch: list[Sample]) -> list[dict[str, Any]]:
        if self.refiner is not None:  # labels and confidence chunk by chunk, never the (H*W, K) scores
            graph = self.build_graphs(batch)
            fields = self.refiner.predict(self(graph), graph, batch, bool(self.hparams.mask_unseen_classes))
            fills = self.refiner.classic_maps  # free with the features (segment's classic floor reads them)
            return [{"name": s.meta.name, "labels": labels, "confidence": conf, "classic": classic}
                    for s, (labels, conf), classic in zip(batch, fields, fills, strict=True)]  # fmt: skip
        out, graph = self.pixel_outputs(batch)
        owner = pixel_batch(graph)
        results = []
        for i, s in enumerate(batch):
            o = out[owner == i]
            if self.hparams.task == "segmentation":
                prob = o.softmax(-1)
                conf, labels = prob.max(-1)
                results.append({"name": s.meta.name, "labels": labels.view(s.height, s.width).cpu(),
                                "confidence": conf.view(s.height, s.width).cpu()})  # fmt: skip
            else:
                results.append({"name": s.meta.name, "values": o.T.reshape(-1, s.height, s.width).cpu()})
        return results

    def _predict_in_tiles(self, sample: Sample, budget: float) -> dict[str, Any]:
        tile = tile_for_memory(budget, sample)
        check_memory(budget, sample, tile, flag="--max_memory")
        if tile >= max(sample.height, sample.width):
            return self._predict_whole([sample])[0]
        labels, conf = predict_field(_WholeFields(self), sample, tile)
        return {"name": sample.meta.name, "labels": labels, "confidence": conf}

    @torch.no_grad()
    def predict_samples(self, samples: list[Sample], batch_size: int = 4) -> list[dict[str, Any]]:
        """Predict outside a Trainer (eval mode, no grad)."""
        was_training = self.training
        self.eval()
        try:
            return [
                r for i in range(0, len(samples), batch_size) for r in self.predict_step(samples[i : i + batch_size], i)
            ]
        finally:
            self.train(was_training)

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
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, **kwargs: Any) -> FusionSegModule:  # type: ignore[override]
        """Lightning's loader, with an older checkpoint's hyper-parameters migrated first (`migrate_hparams`)."""
        import io

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

    def _log_phase_map(self, out: Tensor, graph: Batch) -> None:
        from fusionseg.export.render import log_phase_map

        h, w = (int(v) for v in graph.image_size[0])
        pred = out[: h * w].argmax(-1).view(h, w).cpu().numpy()
        target = graph.pixel_y[: h * w].view(h, w).cpu().numpy()
        log_phase_map(self.logger, pred, target, self.class_names, step=self.current_epoch)


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


class _WholeFields:
    """A module's predictions of tiles as whole fields (a tile that grew to reach a point is not re-tiled)."""

    def __init__(self, module: FusionSegModule) -> None:
        self.module = module

    def predict_samples(self, samples: list[Sample]) -> list[dict[str, Any]]:
        return self.module._predict_whole(samples)
