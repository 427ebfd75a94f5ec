"""`segment`'s classic floor: a classic fill replaces the model only when the withheld points prove it better."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fusionseg.sem.classic_floor import mcnemar_z


def test_mcnemar_counts_only_the_points_where_the_two_maps_disagree() -> None:
    right, wrong = np.ones(9, dtype=bool), np.zeros(9, dtype=bool)
    assert mcnemar_z(right, wrong) == pytest.approx(3.0)  # 9 discordant points, all for the candidate
    assert mcnemar_z(wrong, right) == pytest.approx(-3.0)
    assert mcnemar_z(right, right) == 0.0  # agreeing maps: no evidence either way
    mixed = np.array([True] * 5 + [False] * 4)
    assert mcnemar_z(mixed, ~mixed) == pytest.approx(1 / 3)


@pytest.fixture(scope="module")
def field():
    from fusionseg.registry import DATA_SOURCES

    return DATA_SOURCES.create("sem-synthetic", num_fields=1, size=96, rocks=["basalt"], eds_fraction=0.05,
                               seed=21)[0]  # fmt: skip


def test_a_model_wrong_for_the_field_gives_way_to_a_classic_fill(field, tmp_path) -> None:
    from fusionseg.pretrain import DEFAULT_WEIGHTS
    from fusionseg.sem.segment import SegmentConfig, segment_field

    ckpt = torch.load(DEFAULT_WEIGHTS, map_location="cpu", weights_only=False)
    ckpt["state_dict"]["refiner.mlp.4.weight"] = -ckpt["state_dict"]["refiner.mlp.4.weight"]  # scores upside down
    torch.save(ckpt, tmp_path / "broken.ckpt")
    config = SegmentConfig(adapt_refiner=False, honour_points=False, num_threads=1)
    truth = field.target.numpy()
    without = segment_field(field, tmp_path / "broken.ckpt", SegmentConfig(adapt_refiner=False, honour_points=False,
                                                                           classic_floor=False))  # fmt: skip
    result = segment_field(field, tmp_path / "broken.ckpt", config)
    assert "classic floor" in result.mode and any("McNemar" in n for n in result.info["notes"])
    accuracy = lambda r: float((r.labels.numpy() == truth).mean())  # noqa: E731
    assert accuracy(without) < 0.2 and accuracy(result) > 0.8, (accuracy(without), accuracy(result))  # 0.000, 0.865
    assert result.qc["held_out"]["share"] > 0.6  # the returned map's agreement (0.733), not the broken model's (0.0)


def test_the_shipped_model_keeps_its_map_where_it_is_good(field) -> None:
    from fusionseg.pretrain import DEFAULT_WEIGHTS
    from fusionseg.sem.segment import SegmentConfig, segment_field

    result = segment_field(field, DEFAULT_WEIGHTS, SegmentConfig(num_threads=1))
    assert result.mode == "checkpoint" and not any("classic floor" in n for n in result.info["notes"])


def test_the_held_out_check_of_a_large_field_maps_a_central_window_only(field, tmp_path) -> None:
    """Above ``qc_window_px`` the check scores the withheld points inside the central window (its cost stays
    bounded), and the floor still returns the classic fill of the whole field."""
    from fusionseg.pretrain import DEFAULT_WEIGHTS
    from fusionseg.sem.segment import SegmentConfig, segment_field

    ckpt = torch.load(DEFAULT_WEIGHTS, map_location="cpu", weights_only=False)
    ckpt["state_dict"]["refiner.mlp.4.weight"] = -ckpt["state_dict"]["refiner.mlp.4.weight"]
    torch.save(ckpt, tmp_path / "broken.ckpt")
    config = SegmentConfig(adapt_refiner=False, honour_points=False, num_threads=1, qc_window_px=64)
    whole = segment_field(field, tmp_path / "broken.ckpt", SegmentConfig(adapt_refiner=False, honour_points=False))
    result = segment_field(field, tmp_path / "broken.ckpt", config)
    held, whole_held = result.qc["held_out"], whole.qc["held_out"]
    assert "central 64x64 px window" in held["how"] and 0 < held["points"] < whole_held["points"]
    assert "classic floor" in result.mode
    assert float((result.labels.numpy() == field.target.numpy()).mean()) > 0.8  # the whole field is filled
