"""Regression as a first-class task: float targets, masked losses, metrics, checkpoint monitor, batches > 1."""

import math

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from fusionseg.data.datamodule import FusionSegDataModule, collate_samples
from fusionseg.graphs.base import majority_label
from fusionseg.models.losses import create_loss
from fusionseg.models.metrics import ErrorRate, regression_metrics
from fusionseg.models.module import FusionSegModule
from fusionseg.registry import DATA_SOURCES, LOSSES
from fusionseg.sample import Sample, SampleError, SampleMeta


def regression_sample(seed: int, size: int = 12, n_points: int = 10, features: int = 3) -> Sample:
    """A field whose target is a smooth float map, labelled at every other pixel (NaN elsewhere)."""
    g = torch.Generator().manual_seed(seed)
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    target = (rows + 2 * cols).float() / size
    target[::2, ::2] = float("nan")
    flat = torch.randperm(size * size, generator=g)[:n_points]
    coords = torch.stack([flat // size, flat % size], 1).float()
    return Sample(
        image=torch.rand(2, size, size, generator=g),
        point_coords=coords,
        point_features=torch.rand(n_points, features, generator=g),
        target=target.double(),
        meta=SampleMeta(name=f"r{seed}"),  # no domain metadata: features are not checked as counts
    )


def regression_model(**kwargs) -> FusionSegModule:
    base = dict(
        task="regression", num_outputs=1, image_channels=2, point_channels=3, point_encoder="identity",
        graph_builder="grid", graph_builder_kwargs={"cross_k": 2}, fusion="late", backbone="sage",
        hidden_channels=8, head="regression", log_phase_maps=False,
    )  # fmt: skip
    return FusionSegModule(**(base | kwargs))


def test_sample_keeps_float_targets_and_checks_class_ids():
    s = regression_sample(0)
    assert s.target.dtype == torch.float32 and torch.isnan(s.target).sum() == 36
    s2 = Sample(torch.zeros(1, 4, 4), torch.zeros(1, 2), torch.zeros(1, 1), point_target=np.array([2.5]))
    assert s2.point_target.dtype == torch.float32 and float(s2.point_target[0]) == 2.5
    labels = np.zeros((4, 4), dtype=np.int32)
    labels[0, 0] = 7
    with pytest.raises(SampleError, match="class ids outside"):
        Sample(torch.zeros(1, 4, 4), torch.zeros(1, 2), torch.zeros(1, 1), SampleMeta(class_names=("a", "b")), labels)


def test_float_node_target_is_the_mean_of_labelled_pixels():
    target = torch.tensor([1.0, 3.0, float("nan"), float("nan"), 5.0])
    y = majority_label(torch.tensor([0, 0, 1, 1, 2]), target, 3)
    assert y[0] == 2.0 and torch.isnan(y[1]) and y[2] == 5.0


def test_regression_losses_skip_nan_and_match_torch():
    pred = torch.tensor([[1.0], [2.0], [5.0], [0.0]])
    target = torch.tensor([1.5, float("nan"), 2.0, 0.25])
    keep = ~torch.isnan(target)
    p, t = pred[keep, 0], target[keep]
    assert math.isclose(create_loss("l2")(pred, target).item(), torch.mean((p - t) ** 2).item(), rel_tol=1e-6)
    assert math.isclose(create_loss("mae")(pred, target).item(), torch.mean((p - t).abs()).item(), rel_tol=1e-6)
    sl1 = torch.nn.functional.smooth_l1_loss(p, t, beta=0.5)
    assert math.isclose(create_loss("smooth-l1", beta=0.5)(pred, target).item(), sl1.item(), rel_tol=1e-6)
    empty = create_loss("l1")(pred, torch.full((4,), float("nan")))
    assert empty.item() == 0.0 and empty.requires_grad is False
    with pytest.raises(ValueError, match="class_weights apply to segmentation"):
        create_loss("l2", class_weights=[1.0, 2.0])
    assert {"ce", "l1", "l2", "smooth-l1"} <= set(LOSSES.names())


def test_regression_metrics_in_target_units_and_percent():
    pred, truth = torch.tensor([0.0, 1.5, 5.0, 10.0]), torch.tensor([0.0, 0.0, 0.0, 0.0])
    m = regression_metrics((1.0, 3.0))
    m.update(pred, truth)
    out = {k: float(v) for k, v in m.compute().items()}
    assert math.isclose(out["rmse"], math.sqrt((1.5**2 + 25 + 100) / 4), rel_tol=1e-6)
    assert math.isclose(out["mae"], 16.5 / 4, rel_tol=1e-6)
    assert out["bad1"] == 75.0 and out["bad3"] == 50.0
    with pytest.raises(ValueError, match="threshold must be >= 0"):
        ErrorRate(-1.0)


def test_point_encoder_width_comes_from_the_data():
    """identity used to assume 2048 spectrum channels; point_channels (linked from the data) sizes it."""
    model = regression_model()
    assert model.point_encoder.out_dim == 3
    with pytest.warns(UserWarning, match="differs from the data"):
        regression_model(point_encoder_kwargs={"in_dim": 5})


def test_regression_trains_with_batches_logs_metrics_and_keeps_checkpoints_by_rmse(tmp_path):
    """batch_size > 1 used to fail reshaping the batch's targets; now rmse/mae/bad-t are logged and
    checkpoints are kept by val/rmse without configuring a monitor."""
    samples = [regression_sample(i) for i in range(4)]
    model = regression_model(error_thresholds=[0.5], loss="smooth-l1")
    loss, out, graph = model._loss(samples[:3])
    target = model.regression_target(samples[:3], graph)
    assert out.shape == target.shape == (3 * 144, 1) and torch.isnan(target).sum() == 3 * 36
    loader = DataLoader(samples, batch_size=2, collate_fn=collate_samples)
    trainer = L.Trainer(
        max_epochs=2, logger=False, default_root_dir=tmp_path, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(model, loader, loader)
    metrics = trainer.callback_metrics
    assert {"val/rmse", "val/mae", "val/bad0_5", "val/loss"} <= set(metrics)
    assert 0 <= float(metrics["val/bad0_5"]) <= 100 and float(metrics["val/rmse"]) >= float(metrics["val/mae"])
    assert trainer.checkpoint_callback.monitor == "val/rmse" and trainer.checkpoint_callback.mode == "min"
    assert trainer.checkpoint_callback.best_model_path.endswith(".ckpt")
    result = model.predict_samples(samples[:2], batch_size=2)
    assert result[0]["values"].shape == (1, 12, 12)


def test_a_segmentation_monitor_on_a_regression_task_names_the_fix(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    loader = DataLoader([regression_sample(0)], batch_size=1, collate_fn=collate_samples)
    trainer = L.Trainer(
        max_epochs=1, logger=False, default_root_dir=tmp_path, enable_progress_bar=False,
        callbacks=[ModelCheckpoint(monitor="val/miou", mode="max")],
    )  # fmt: skip
    with pytest.raises(ValueError, match="monitor: val/rmse, mode: min"):
        trainer.fit(regression_model(), loader, loader)


def test_a_regression_target_that_is_not_float_names_the_fix():
    s = Sample(torch.zeros(2, 4, 4), torch.zeros(1, 2), torch.zeros(1, 3), target=torch.zeros(4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="needs a float target"):
        regression_model()._loss([s])


@DATA_SOURCES.register("test-split-aware")
class SplitAwareSource:
    """A source that serves each split differently (the datamodule passes ``split``)."""

    def __init__(self, split: str, num_fields: int, seed: int, eds_fraction: float, sampler: str) -> None:
        self.split, self.n = split, num_fields

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Sample:
        s = regression_sample(i, features=4)
        s.meta.name = self.split
        return s


def test_datamodule_tells_sources_their_split_and_the_point_width():
    dm = FusionSegDataModule(source="test-split-aware", train_fields=2, val_fields=1, point_labels="given")
    assert dm.dataset("train")[0].meta.name == "train" and dm.dataset("val")[0].meta.name == "val"
    assert dm.point_channels == 4 and dm.image_channels == 2
