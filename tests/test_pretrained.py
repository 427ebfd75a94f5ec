"""The shipped default weights: small, loadable, and as good on the held-out split as their record says."""

from __future__ import annotations

import json

import pytest
import torch

from fusionseg.pretrain import DEFAULT_CONFIG, DEFAULT_WEIGHTS, held_out_figures, load_weights, weights_record


def test_shipped_weights_are_small_and_recorded():
    assert DEFAULT_WEIGHTS.is_file(), "run `make pretrain` to create the shipped weights"
    assert DEFAULT_WEIGHTS.stat().st_size < 1_000_000  # package data: well under 5 MB
    record = json.loads(weights_record(DEFAULT_WEIGHTS).read_text())
    assert record["held_out"]["test/miou"] > 0.3  # a trained model, not a random one (~0.03)
    assert record["epochs_trained"] >= 1 and record["seed_everything"] == 0


def test_demo_with_shipped_weights_reaches_the_recorded_held_out_figures(tmp_path):
    """``fusionseg demo`` (no training): the reloaded weights re-tested on the held-out split give the record."""
    from fusionseg.cli import main

    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    record = json.loads(weights_record(DEFAULT_WEIGHTS).read_text())["held_out"]
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert metrics["train_seconds"] == 0.0 and metrics["model"] == "shipped weights default.ckpt"
    assert metrics["test_split"]["test/miou"] == pytest.approx(record["test/miou"], abs=2e-3)
    assert metrics["test_split"]["test/pixel_acc"] == pytest.approx(record["test/pixel_acc"], abs=2e-3)
    assert metrics["test_split_recorded_with_weights"] == record


def test_missing_weights_name_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="make pretrain"):
        load_weights(tmp_path / "none.ckpt")


def test_pretrain_writes_loadable_weights_and_record(tmp_path):
    """The command itself, on a one-epoch budget with a tiny split: file, record and reload agree."""
    from fusionseg.pretrain import main

    out = tmp_path / "w.ckpt"
    tiny = ["--trainer.max_epochs=1", "--data.train_fields=2", "--data.val_fields=1", "--data.test_fields=2",
            "--data.source_kwargs.size=48"]  # fmt: skip
    assert main(["--out", str(out), *tiny]) == 0
    record = json.loads(weights_record(out).read_text())
    assert record["epochs_trained"] == 1 and record["overrides"] == tiny
    again = held_out_figures(load_weights(out), DEFAULT_CONFIG, tiny)
    assert again["test/miou"] == pytest.approx(record["held_out"]["test/miou"], abs=1e-6)


def test_a_checkpoint_with_an_older_refiner_feature_set_names_the_fix(tmp_path):
    from fusionseg.models.module import CheckpointMismatchError, FusionSegModule

    ckpt = torch.load(DEFAULT_WEIGHTS, map_location="cpu", weights_only=False)
    weight = ckpt["state_dict"]["refiner.mlp.0.weight"]
    ckpt["state_dict"]["refiner.mlp.0.weight"] = weight[:, :-2]  # written by a version that read two fewer features
    torch.save(ckpt, tmp_path / "old.ckpt")
    with pytest.raises(CheckpointMismatchError, match="older fusionseg must be retrained"):
        FusionSegModule.load_from_checkpoint(tmp_path / "old.ckpt")
