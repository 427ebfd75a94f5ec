"""Classic-propagation features and the refiner that reads them (the default model's last stage)."""

from __future__ import annotations

import numpy as np
import torch

from fusionseg.models.prior import FEATURES, PriorRefiner, classic_features
from fusionseg.sample import IGNORE_INDEX, Sample


def two_regions() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(1, 32, 32) image with an edge at col 16; points of class 2 at col 2 and class 7 at col 20."""
    rng = np.random.default_rng(0)
    image = np.where(np.arange(32)[None, :] >= 16, 0.7, 0.3) + 0.02 * rng.standard_normal((32, 32))
    coords = np.array([[16.0, 2.0], [16.0, 20.0], [5.0, 5.0]])
    return image[None].astype(np.float32), coords, np.array([2, 7, IGNORE_INDEX])


def test_features_see_the_edge_and_the_points() -> None:
    image, coords, labels = two_regions()
    found, feats = classic_features(image, coords, labels)
    assert found.tolist() == [2, 7] and feats.shape == (2, 32 * 32, len(FEATURES))
    f = {name: feats[..., i].reshape(2, 32, 32) for i, name in enumerate(FEATURES)}
    # col 13 is 11 px from class 2's point and 7 px from class 7's, but on class 2's side of the edge:
    assert f["euclid"][0, 16, 13] > f["euclid"][1, 16, 13]
    assert f["geodesic1"][0, 16, 13] < f["geodesic1"][1, 16, 13]
    assert f["zscore"][0, 16, 13] < f["zscore"][1, 16, 13]  # its value matches class 2's points
    at = f["at_point"]
    assert at[0, 16, 2] == 1 and at[1, 16, 20] == 1 and at.sum() == 2  # the unlabelled point is no class's


def test_refiner_scores_only_found_classes_and_trains_on_a_pixel_share() -> None:
    image, coords, labels = two_regions()
    sample = Sample(image=torch.from_numpy(image), point_coords=torch.from_numpy(coords).float(),
                    point_features=torch.ones(3, 4), point_target=torch.from_numpy(labels))  # fmt: skip
    refiner = PriorRefiner(hidden_channels=8, num_layers=2)
    logits = torch.zeros(32 * 32, 9, requires_grad=True)
    out = refiner(logits, [sample])
    assert out.shape == (32 * 32, 9)
    assert (out[:, [2, 7]].min(1).values > out[:, [0, 1, 3, 4, 5, 6, 8]].max(1).values).all()
    keep = torch.zeros(32 * 32, dtype=torch.bool)
    keep[::4] = True
    part = refiner(logits, [sample], keep)
    assert part.shape == (256, 9) and torch.allclose(part, out[keep], atol=1e-5)  # float sums over other batch sizes
    part[:, 2].sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0  # the network's scores are an input
    target = torch.full((32 * 32,), 4)
    target[:512] = 7
    assert (refiner.found_only(target, [sample])[512:] == IGNORE_INDEX).all()  # class 4: no point found it


def test_feature_cache_is_keyed_by_content_not_object() -> None:
    image, coords, labels = two_regions()
    make = lambda: Sample(image=torch.from_numpy(image), point_coords=torch.from_numpy(coords).float(),  # noqa: E731
                          point_features=torch.ones(3, 4), point_target=torch.from_numpy(labels))  # fmt: skip
    refiner = PriorRefiner()
    first = refiner.features(make())
    assert refiner.features(make()) is first  # a copy of the field (e.g. moved to a device) reuses the features
    moved = make()
    moved.point_target = torch.tensor([7, 2, IGNORE_INDEX])
    assert refiner.features(moved) is not first


def test_shipped_model_names_each_confidently_identified_point_its_mineral() -> None:
    """At a measured pixel whose spectrum the library names with confidence, the model (not a post-fix) agrees."""
    from fusionseg.pretrain import load_weights
    from fusionseg.registry import DATA_SOURCES
    from fusionseg.sem.identify import identify_spectra, library_references, with_identified_point_labels

    model = load_weights()
    source = DATA_SOURCES.create("sem-synthetic", num_fields=3, size=64, rocks=["granite", "sulfide-ore", "basalt"],
                                 eds_fraction=0.02, seed=4242)  # fmt: skip
    for i in range(len(source)):
        s = with_identified_point_labels(source[i])
        refs, usable = library_references(s.meta.class_names, s.meta.domain.energy_axis, s.meta.domain.beam_energy_kev)
        confident = identify_spectra(s.point_features, refs, allowed=usable).confidence >= 0.9
        confident &= s.point_target != IGNORE_INDEX
        labels = model.predict_samples([s])[0]["labels"]
        rc = s.point_coords.round().long()
        at_points = labels[rc[:, 0], rc[:, 1]]
        assert confident.sum() >= 60
        assert torch.equal(at_points[confident], s.point_target[confident])
