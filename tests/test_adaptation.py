"""Per-field adaptation of the refiner: cross-fitted (no point sees itself), gated, and undone after the field."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch

from fusionseg.models.adaptation import FieldAdaptation, adapted_mlp, held_out_examples, held_out_loss
from fusionseg.models.prior import FEATURES, PIXEL_FEATURES
from fusionseg.sample import IGNORE_INDEX


@pytest.fixture(scope="module")
def shipped():
    from fusionseg.pretrain import load_weights

    return load_weights().eval()


def field(fraction: float, seed: int = 7):
    from fusionseg.registry import DATA_SOURCES
    from fusionseg.sem.identify import with_identified_point_labels

    source = DATA_SOURCES.create("sem-synthetic", num_fields=1, size=64, rocks=["granite"], eds_fraction=fraction,
                                 seed=seed)  # fmt: skip
    return with_identified_point_labels(source[0])


def test_held_out_points_are_scored_without_themselves(shipped) -> None:
    sample = field(0.05)
    labelled = int((sample.point_target != IGNORE_INDEX).sum())
    model = copy.deepcopy(shipped)
    with torch.no_grad():  # the pixel term reads at_point alone: 1 where a point of the class was measured
        model.refiner.pixel.weight.copy_(torch.eye(len(PIXEL_FEATURES))[PIXEL_FEATURES.index("at_point")])
    examples = held_out_examples(model, sample, folds=4, seed=0)
    assert len(examples) == 4
    assert labelled - 10 <= sum(len(y) for *_, y in examples) <= labelled  # a phase only one fold saw is dropped
    for x, pixel_term, y in examples:
        assert x.shape[1:] == (len(y), len(FEATURES) + 1) and pixel_term.shape == x.shape[:2]
        assert (pixel_term == 0).all()  # the held-out point is not among the points its features came from


def test_adaptation_repairs_a_refiner_that_is_wrong_for_the_field(shipped) -> None:
    sample = field(0.05)
    model = copy.deepcopy(shipped)
    with torch.no_grad():  # a refiner whose scores are upside down for this field: adaptation must turn them over
        model.refiner.mlp[-1].weight.neg_()
    before = copy.deepcopy(model.refiner.mlp.state_dict())
    truth = sample.target.numpy()
    model.field_adaptation = None
    untuned = (model.predict_samples([sample])[0]["labels"].numpy() == truth).mean()
    model.field_adaptation = FieldAdaptation(l2=0.0)
    with model.adapted_to(sample) as how:
        assert model.refiner.field_mlp is not model.refiner.mlp and "fine-tuned" in how
        tuned = (model.predict_samples([sample])[0]["labels"].numpy() == truth).mean()
    assert model.refiner.field_mlp is None  # the next field starts from the trained weights again
    assert all(torch.equal(v, model.refiner.mlp.state_dict()[k]) for k, v in before.items())
    assert untuned < 0.2 and tuned > 0.8, (untuned, tuned)  # measured: 0.000 -> 0.916


def test_fine_tuning_lowers_the_held_out_loss_of_the_shipped_refiner(shipped) -> None:
    sample = field(0.05, seed=11)
    mlp, how = adapted_mlp(shipped, sample, FieldAdaptation())
    examples = held_out_examples(shipped, sample, folds=4, seed=0)
    if mlp is None:  # the gate kept the shipped weights: its cross-fitted estimate said fine-tuning would not help
        assert "did not lower" in how
    else:
        assert float(held_out_loss(mlp, examples)) < float(held_out_loss(shipped.refiner.mlp, examples))


def test_few_points_keep_the_shipped_refiner(shipped) -> None:
    sample = field(0.004)
    labelled = int((sample.point_target != IGNORE_INDEX).sum())
    assert labelled < FieldAdaptation().min_points
    mlp, how = adapted_mlp(shipped, sample, FieldAdaptation())
    assert mlp is None and f"{labelled} labelled points" in how
    with shipped.adapted_to(sample):
        assert shipped.refiner.field_mlp is shipped.refiner.mlp


def test_large_fields_adapt_on_a_central_window(shipped) -> None:
    sample = field(0.05)
    settings = FieldAdaptation(max_px=40, min_points=1)
    from fusionseg.models.adaptation import central_window

    window = central_window(sample, settings.max_px)
    assert (window.height, window.width) == (40, 40)
    rc = window.point_coords.round()
    assert ((rc >= 0) & (rc < 40)).all() and 0 < window.num_points < sample.num_points
    assert np.isfinite(held_out_examples(shipped, window, 4, 0)[0][0].numpy()).all()


def test_segment_adapts_once_per_field_within_the_tile(monkeypatch) -> None:
    """Tiled `segment` fine-tunes once, never per tile, on a window that fits the memory budget's tile and on the
    points its held-out check keeps (the map and the blind check share that adaptation)."""
    import fusionseg.models.module_predict as module_mod
    from fusionseg.pretrain import DEFAULT_WEIGHTS
    from fusionseg.registry import DATA_SOURCES
    from fusionseg.sem.segment import SegmentConfig, segment_field

    windows = []

    def counting(module, sample, settings, points=None):
        windows.append((sample.height, sample.width, settings.max_px, None if points is None else int(points.sum())))
        return adapted_mlp(module, sample, settings, points)

    monkeypatch.setattr(module_mod, "adapted_mlp", counting)
    sample = DATA_SOURCES.create("sem-synthetic", num_fields=1, size=160, rocks=["granite"], eds_fraction=0.03,
                                 seed=3)[0]  # fmt: skip
    result = segment_field(sample, checkpoint=DEFAULT_WEIGHTS, config=SegmentConfig(tile_px=96, num_threads=1))
    assert result.labels.shape == (160, 160)
    assert [w[2] for w in windows] == [96]  # the map and the held-out check: not one per tile (4 tiles)
    withheld = result.qc["held_out"]["how"].split(" labelled points")[0]
    assert windows[0][3] == sample.num_points - int(withheld)  # the withheld points are not learned from
    assert "refiner" in result.info["refiner"]
    windows.clear()
    plain = segment_field(sample, checkpoint=DEFAULT_WEIGHTS, config=SegmentConfig(tile_px=96, adapt_refiner=False))
    assert windows == [] and plain.info["refiner"] == "refiner not adapted"  # `segment --no-adapt`


def test_points_encoded_once_give_the_map_of_raw_spectra(shipped) -> None:
    """`points_encoded` (what `segment` maps with: tiles and the held-out check copy encoded features, not spectra)
    gives the tiled map and confidence of the raw spectra, and puts the encoder back afterwards."""
    from fusionseg.inference import predict_field

    sample = field(0.05)
    model = copy.deepcopy(shipped)
    with model.adapted_to(sample):
        raw = predict_field(model, sample, tile_px=48, overlap_px=8)
    encoder = model.point_encoder
    with model.points_encoded(sample) as encoded, model.adapted_to(encoded):
        assert encoded.point_features.shape == (sample.num_points, encoder.out_dim) and encoded.meta.domain is None
        fast = predict_field(model, encoded, tile_px=48, overlap_px=8)
    assert model.point_encoder is encoder
    assert torch.equal(raw[0], fast[0])
    assert torch.allclose(raw[1], fast[1], atol=1e-5)


def test_in_field_classes_mixes_the_network_into_the_field_classes(shipped) -> None:
    """A field labelled in its own classes (clusters): the network's class probabilities mixed by the class map,
    the refiner adapted and predicting in the field's classes, and the model as it was afterwards."""
    sample = field(0.05)
    model = copy.deepcopy(shipped)
    graph = model.build_graphs([sample])
    k = model.num_outputs
    q = torch.zeros(k, 2)
    q[:, 0] = 1.0
    q[int(sample.point_target[0])] = torch.tensor([0.0, 1.0])  # the first point's mineral is field class 1
    with torch.no_grad():
        plain = model(graph.clone())
        with model.in_field_classes(q):
            mixed = model(graph.clone())
            two = replace(sample, point_target=(sample.point_target == sample.point_target[0]).long(), target=None,
                          meta=replace(sample.meta, class_names=("rest", "first")))  # fmt: skip
            with model.adapted_to(two) as how:
                labels = model.predict_samples([two])[0]["labels"]
    assert model.class_map is None and mixed.shape == (len(plain), 2)
    torch.testing.assert_close(mixed.exp(), (plain.softmax(-1) @ q).clamp_min(1e-6))
    assert set(labels.unique().tolist()) == {0, 1} and ("fine-tuned" in how or "kept" in how)
    first = (sample.target == sample.point_target[0]).numpy()
    assert (labels.numpy() == first).mean() > 0.8
    with pytest.raises(ValueError, match=rf"\({k}, K\) class map"):
        with model.in_field_classes(torch.ones(2, 2)):
            pass


def test_side_by_side_fine_tuning_equals_training_each_copy_alone(shipped, monkeypatch) -> None:
    """`fine_tuned` trains the cross-fit copies and the kept copy in one vmapped loop; each ends where training it
    alone would (the reference: one Adam per copy over its folds), up to float rounding that Adam's normalised steps
    carry on near-zero gradients. Measured: held-out losses equal to ~1e-6, largest weight difference 1.5e-4."""
    from fusionseg.models import adaptation
    from fusionseg.models.adaptation import fine_tuned

    sample = field(0.05, seed=11)
    examples = held_out_examples(shipped, sample, folds=4, seed=0)
    settings = FieldAdaptation(steps=30)
    trains = ~np.eye(5, 4, dtype=bool)

    def alone(folds: list) -> torch.nn.Module:
        with torch.inference_mode(False), torch.enable_grad():
            tuned = copy.deepcopy(shipped.refiner.mlp)
            start = [p.detach().clone() for p in tuned.parameters()]
            folds = [(x.clone(), p.clone(), y.clone()) for x, p, y in folds]
            optimiser = torch.optim.Adam(tuned.parameters(), lr=settings.lr)
            for _ in range(settings.steps):
                optimiser.zero_grad()
                pull = sum(((p - p0) ** 2).sum() for p, p0 in zip(tuned.parameters(), start, strict=True))
                (held_out_loss(tuned, folds) + settings.l2 * pull).backward()
                optimiser.step()
        return tuned

    together = fine_tuned(shipped.refiner.mlp, examples, settings, trains)
    for row, tuned in zip(trains, together, strict=True):
        reference = alone([e for e, keep in zip(examples, row, strict=True) if keep])
        with torch.no_grad():
            gap = max(
                float((a - b).abs().max()) for a, b in zip(tuned.parameters(), reference.parameters(), strict=True)
            )
            losses = [float(held_out_loss(m, examples)) for m in (tuned, reference)]
        assert gap < 1e-3 and abs(losses[0] - losses[1]) < 1e-5, (gap, losses)
    monkeypatch.setattr(adaptation, "ADAPT_BATCH_BYTES", 1.0)  # a tight memory budget: the copies train in turns
    in_turns = fine_tuned(shipped.refiner.mlp, examples, settings, trains)
    with torch.no_grad():
        for a, b in zip(in_turns, together, strict=True):
            assert abs(float(held_out_loss(a, examples)) - float(held_out_loss(b, examples))) < 1e-5
    with torch.no_grad():  # and the copies really moved: the test would not pass on untrained copies
        moved = max(
            float((a - b).abs().max())
            for a, b in zip(together[-1].parameters(), shipped.refiner.mlp.parameters(), strict=True)
        )
    assert moved > 1e-3
