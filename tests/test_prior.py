"""Classic-propagation features and the refiner that reads them (the default model's last stage)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from fusionseg.models.prior import FEATURES, PIXEL_FEATURES, PriorRefiner, classic_features
from fusionseg.sample import IGNORE_INDEX, Sample


def two_regions() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(1, 32, 32) image with an edge at col 16; points of class 2 at col 2 and class 7 at col 20."""
    rng = np.random.default_rng(0)
    image = np.where(np.arange(32)[None, :] >= 16, 0.7, 0.3) + 0.02 * rng.standard_normal((32, 32))
    coords = np.array([[16.0, 2.0], [16.0, 20.0], [5.0, 5.0]])
    return image[None].astype(np.float32), coords, np.array([2, 7, IGNORE_INDEX])


def pixel_graph(n: int) -> SimpleNamespace:
    """A stand-in batched graph whose image nodes are the n pixels of one field."""
    return SimpleNamespace(pixel_to_node=torch.arange(n))


def test_features_see_the_edge_and_the_points() -> None:
    image, coords, labels = two_regions()
    feats = classic_features(image, coords, labels)  # every pixel its own region: the exact reference
    assert feats.found.tolist() == [2, 7] and feats.region.shape == (2, 32 * 32, len(FEATURES))
    f = {name: feats.region[..., i].reshape(2, 32, 32) for i, name in enumerate(FEATURES)}
    # col 13 is 11 px from class 2's point and 7 px from class 7's, but on class 2's side of the edge:
    assert f["euclid"][0, 16, 13] > f["euclid"][1, 16, 13]
    assert f["geodesic1"][0, 16, 13] < f["geodesic1"][1, 16, 13]
    assert f["walker"][0, 16, 13] > f["walker"][1, 16, 13]
    assert f["smoother"][0, 16, 13] > f["smoother"][1, 16, 13]
    assert f["zscore"][0, 16, 13] < f["zscore"][1, 16, 13]  # its value matches class 2's points
    at = feats.pixel_features(np.arange(32 * 32))[..., PIXEL_FEATURES.index("at_point")].reshape(2, 32, 32)
    assert at[0, 16, 2] == 1 and at[1, 16, 20] == 1 and at.sum() == 2  # the unlabelled point is no class's
    assert (feats.classic_labels("geodesic").reshape(32, 32)[:, :16] == 2).all()
    assert (feats.classic_labels("random-walker").reshape(32, 32)[:, 17:] == 7).all()


def test_region_features_follow_the_pixel_features_on_a_real_partition() -> None:
    """On SLIC regions (the default builder's nodes) the fills agree with the per-pixel reference on most
    pixels; by how much they differ is printed and bounded here."""
    from fusionseg.graphs.superpixel import SuperpixelGraphBuilder
    from fusionseg.registry import DATA_SOURCES
    from fusionseg.sem.identify import with_identified_point_labels

    s = with_identified_point_labels(DATA_SOURCES.create("sem-synthetic", num_fields=1, size=96, rocks=["granite"],
                                                         eds_fraction=0.03, seed=5)[0])  # fmt: skip
    args = (s.image.numpy(), s.point_coords.numpy(), s.point_target.numpy())
    exact = classic_features(*args)
    regions = SuperpixelGraphBuilder(method="slic", region_size=6, compactness=0.3, sigma=1.0).segment(s.image)
    fast = classic_features(*args, regions)
    assert fast.region.shape[1] < exact.region.shape[1] / 20  # ~36 px per region
    for method in ("geodesic", "random-walker"):
        agree = (fast.classic_labels(method) == exact.classic_labels(method)).mean()
        print(f"{method}: region fill agrees with the pixel fill on {agree:.3f} of the pixels")
        assert agree > 0.85, (method, agree)


def test_refiner_scores_only_found_classes_and_trains_on_a_pixel_share() -> None:
    image, coords, labels = two_regions()
    sample = Sample(image=torch.from_numpy(image), point_coords=torch.from_numpy(coords).float(),
                    point_features=torch.ones(3, 4), point_target=torch.from_numpy(labels))  # fmt: skip
    refiner = PriorRefiner(hidden_channels=8, num_layers=2)
    with torch.no_grad():
        refiner.pixel.weight.fill_(0.5)  # the pixel term takes part
    logits = torch.zeros(32 * 32, 9, requires_grad=True)
    graph = pixel_graph(32 * 32)
    out = refiner(logits, graph, [sample])
    assert out.shape == (32 * 32, 9)
    assert (out[:, [2, 7]].min(1).values > out[:, [0, 1, 3, 4, 5, 6, 8]].max(1).values).all()
    keep = torch.zeros(32 * 32, dtype=torch.bool)
    keep[::4] = True
    part = refiner(logits, graph, [sample], keep)
    assert part.shape == (256, 9) and torch.allclose(part, out[keep], atol=1e-5)  # float sums over other batch sizes
    part[:, 2].sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0  # the network's scores are an input
    assert refiner.pixel.weight.grad is not None  # the pixel term is trained with the MLP
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
    halves = np.repeat(np.arange(2), 32 * 16)
    assert refiner.features(make(), halves) is not first  # other regions: other features
    once = refiner.features(make(), halves[::-1].copy(), keep=False)  # a field predicted once: not stored
    assert refiner.features(make(), halves[::-1].copy(), keep=False) is not once
    assert refiner.features(make(), halves, keep=False) is refiner.features(make(), halves)  # stored ones are read


def test_shipped_model_names_each_confidently_identified_point_its_mineral() -> None:
    """At a measured pixel whose spectrum the library names with confidence, the model (not a post-fix) agrees:
    with the region-graph refiner at 98 % of such pixels or more (measured 82/82, 81/82, 82/82; the per-pixel
    refiner agreed at all; `segment` honours the points in the final map either way)."""
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
        assert (at_points[confident] == s.point_target[confident]).float().mean() >= 0.98


def test_chunked_prediction_equals_the_argmax_and_softmax_of_the_full_scores(monkeypatch) -> None:
    """`PriorRefiner.predict` (labels and confidence, pixels and the region MLP chunk by chunk) against `forward`'s
    (H*W, K) scores computed whole (with gradients: no chunks)."""
    import fusionseg.models.prior as prior
    from fusionseg.pretrain import load_weights
    from fusionseg.registry import DATA_SOURCES
    from fusionseg.sem.identify import with_identified_point_labels

    model = load_weights().eval()
    model.field_adaptation = None
    s = with_identified_point_labels(DATA_SOURCES.create("sem-synthetic", num_fields=1, size=80, rocks=["basalt"],
                                                         eds_fraction=0.02, seed=9)[0])  # fmt: skip
    for only_found in (True, False):
        model.hparams.mask_unseen_classes = only_found
        scores = model.pixel_outputs([s])[0].detach()
        monkeypatch.setattr(prior, "INFERENCE_CHUNK_PX", 700)  # 80² px: 10 pixel chunks; regions in several too
        with torch.no_grad():
            graph = model.build_graphs([s])
            labels, conf = model.refiner.predict(model(graph), graph, [s], only_found)[0]
        monkeypatch.undo()
        prob = scores.softmax(-1)
        assert torch.equal(labels.flatten(), prob.argmax(-1))
        assert torch.allclose(conf.flatten(), prob.max(-1).values, atol=1e-5)


def test_features_are_the_same_in_turns_and_side_by_side() -> None:
    """The fills run in threads (`side_by_side`); one thread runs them in turns: the features are identical."""
    image, coords, labels = two_regions()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone = classic_features(image, coords, labels)
        torch.set_num_threads(2)
        together = classic_features(image, coords, labels)
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(alone.region, together.region)
    assert all(np.array_equal(a, b) for a, b in zip(alone.images, together.images, strict=True))


def test_a_class_found_once_is_levelled_on_its_region_not_on_its_noisy_pixel() -> None:
    """Three bands 0.50 / 0.56 / 0.62; class 1 found once, at a pixel that noise lifted to 0.63 (its neighbour
    class's level). Its band's regions must still match class 1 best by ``zscore_level``, as the pixel feature
    cannot."""
    rng = np.random.default_rng(1)
    image = np.repeat([0.50, 0.56, 0.62], 12)[None, :].repeat(36, 0) + 0.01 * rng.standard_normal((36, 36))
    image[18, 18] = 0.63
    coords = np.array([[18.0, 18.0], *[[r, 30.0] for r in range(2, 36, 4)], *[[r, 4.0] for r in range(2, 36, 4)]])
    labels = np.array([1] + [2] * 9 + [0] * 9)
    regions = (np.arange(36)[:, None] // 4) * 9 + np.arange(36)[None, :] // 4  # 4 x 4 px blocks
    feats = classic_features(image[None].astype(np.float32), coords, labels, regions)
    level = feats.region[..., FEATURES.index("zscore_level")]  # (3 classes, 81 regions)
    band = [r for r in range(81) if 3 <= r % 9 <= 5]  # blocks of cols 12..23
    assert (level[1, band] < level[2, band]).all() and (level[1, band] < level[0, band]).all()
    raw = feats.region[..., FEATURES.index("zscore_raw")]
    assert (raw[2, band] < raw[1, band]).mean() > 0.5  # the single pixel's level: its neighbour class wins
