"""Prediction of whole fields by `FusionSegModule` (`FieldPrediction`, a mixin): tiles under a memory budget,
points encoded once, and the refiner adapted to each field's own points."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from fusionseg.graphs.schema import pixel_batch
from fusionseg.inference import check_memory, predict_field, tile_for_memory
from fusionseg.models.adaptation import FieldAdaptation, adapted_mlp
from fusionseg.sample import Sample

ENCODE_CHUNK_BYTES = 8e6  # point features encoded at once by `points_encoded`: small temporaries, reused


class FieldPrediction:
    """``predict_step`` and its helpers of `FusionSegModule` (a LightningModule mixin)."""

    predict_max_memory: float | None = None
    """Bytes a predicted field may use (``fusionseg predict --max_memory``): larger segmentation fields are
    predicted in overlapping tiles of the size that fits (`fusionseg.inference`); None: whole fields."""

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


class _WholeFields:
    """A module's predictions of tiles as whole fields (a tile that grew to reach a point is not re-tiled)."""

    def __init__(self, module: FieldPrediction) -> None:  # the FusionSegModule (this mixin's host class)
        self.module = module

    def predict_samples(self, samples: list[Sample]) -> list[dict[str, Any]]:
        return self.module._predict_whole(samples)
