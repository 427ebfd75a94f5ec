"""The classic features in torch (`fusionseg.propagation_torch`, the refiner's path on a GPU) against the NumPy/SciPy
reference: equal to float rounding, except the two linear solves (conjugate gradients against LDL^T), whose
difference each test prints and bounds."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy import ndimage

from fusionseg import propagation_torch
from fusionseg.baselines import unit_scaled
from fusionseg.models.prior import FEATURES, ClassicFeatures, classic_features, feature_device
from fusionseg.sample import IGNORE_INDEX, Sample

SOLVED = {"walker", "walker_rel", "smoother", "smoother_rel"}  # the features of a linear solve
SOLVE_TOL = 1e-5  # log-vote units (the floor: log 1e-4 = -9.2); measured ~1e-6
EXACT_TOL = 1e-5  # float32 features of the same arithmetic (measured: 0 to 3e-7)


def granite_field(size: int = 96, seed: int = 5) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """A simulated granite field's (image, coords, labels) at 3 % points, and SLIC regions of ~36 px (the default
    graph builder's image nodes)."""
    from fusionseg.graphs.superpixel import SuperpixelGraphBuilder
    from fusionseg.registry import DATA_SOURCES
    from fusionseg.sem.identify import with_identified_point_labels

    s = with_identified_point_labels(DATA_SOURCES.create("sem-synthetic", num_fields=1, size=size, rocks=["granite"],
                                                         eds_fraction=0.03, seed=seed)[0])  # fmt: skip
    regions = SuperpixelGraphBuilder(method="slic", region_size=6, compactness=0.3, sigma=1.0).segment(s.image)
    return (s.image.numpy(), s.point_coords.numpy(), s.point_target.numpy()), regions


def differences(reference: ClassicFeatures, other: ClassicFeatures) -> dict[str, float]:
    """Largest absolute difference of each region feature, and of the pixel features, between two results."""
    out = {
        name: float(np.abs(reference.region[..., i] - other.region[..., i]).max()) for i, name in enumerate(FEATURES)
    }
    everywhere = slice(None)
    out["pixel"] = float((reference.pixel_features(everywhere) - other.pixel_features(everywhere)).abs().max())
    return out


def assert_agree(reference: ClassicFeatures, other: ClassicFeatures) -> None:
    assert np.array_equal(reference.found, other.found) and reference.region.shape == other.region.shape
    diff = differences(reference, other)
    print("largest differences, torch path against the reference:", {k: f"{v:.1e}" for k, v in diff.items()})
    for name, value in diff.items():
        assert value <= (SOLVE_TOL if name in SOLVED else EXACT_TOL), (name, value)
    for method in reference.best:
        assert np.array_equal(reference.best[method], other.best[method]), method
    for a, b in zip(reference.images, other.images, strict=True):
        assert np.abs(a - b).max() <= 1e-6


@pytest.mark.parametrize("case", ["slic regions", "every pixel a region"])
def test_torch_features_equal_the_reference_on_a_simulated_field(case: str) -> None:
    args, regions = granite_field(96 if case == "slic regions" else 40)
    if case == "every pixel a region":
        regions = None
    assert_agree(classic_features(*args, regions), classic_features(*args, regions, device="cpu"))


@pytest.mark.parametrize(
    "case", ["one class", "constant image", "a seedless island", "border points", "no labelled point"]
)
def test_torch_features_equal_the_reference_on_odd_fields(case: str) -> None:
    rng = np.random.default_rng(1)
    image = np.where(np.arange(24)[None, :] >= 12, 0.8, 0.2) + 0.02 * rng.standard_normal((24, 24))
    blocks = (np.arange(24)[:, None] // 4) * 6 + np.arange(24)[None, :] // 4
    coords, labels = np.array([[3.0, 3.0], [20.0, 20.0], [5.0, 18.0]]), np.array([2, 5, 5])
    if case == "one class":
        labels = np.array([4, 4, 4])
    elif case == "constant image":
        image = np.full_like(image, 0.5)
    elif case == "a seedless island":  # two regions on the right touch only each other: no walker reaches them
        blocks = np.where(np.arange(24)[None, :] >= 12, 36 + (np.arange(24)[:, None] >= 12), blocks)
        coords, labels = np.array([[3.0, 3.0], [20.0, 3.0]]), np.array([2, 5])  # both on the left
    elif case == "border points":  # corner regions: the Gaussian filter's and the graph's borders
        coords = np.array([[0.0, 0.0], [23.0, 23.0], [0.0, 23.0]])
    elif case == "no labelled point":  # returned before any propagation: the device argument is accepted
        labels = np.full(3, IGNORE_INDEX)
    args = (image[None].astype(np.float32), coords, labels, blocks)
    reference, torch_path = classic_features(*args), classic_features(*args, device="cpu")
    if len(reference.found):
        assert_agree(reference, torch_path)
    else:
        assert torch_path.region.shape == reference.region.shape == (0, 36, len(FEATURES))


@pytest.mark.parametrize("sigma", [0.0, 0.7, 1.0, 3.0, 10.0])
def test_gaussian_filter_and_unit_scaling_equal_scipy_for_any_radius(sigma: float) -> None:
    """Radius 4 sigma against a 5 x 7 image: at sigma 3 and 10 the kernel reaches past the far border (reflected
    again, as SciPy's "reflect" mode does)."""
    image = np.random.default_rng(2).random((2, 5, 7))
    ours = propagation_torch.gaussian_filter(torch.from_numpy(image), sigma).numpy()
    scipy = np.stack([ndimage.gaussian_filter(ch, sigma) for ch in image])
    assert np.abs(ours - scipy).max() < 1e-12
    assert np.abs(propagation_torch.unit_scaled(torch.from_numpy(image)).numpy() - unit_scaled(image)).max() < 1e-12


def test_conjugate_gradient_solves_a_walker_like_system_over_ten_decades() -> None:
    """Weights from 1e-10 to 1 (a walker's edges across and along phase boundaries): residual below `CG_RTOL`."""
    rng = np.random.default_rng(3)
    n = 400
    a = rng.integers(0, n, 3000)
    b = (a + rng.integers(1, 20, 3000)) % n
    weight = torch.from_numpy(10.0 ** rng.uniform(-10, 0, 3000))
    edges = torch.from_numpy(np.stack([a, b]))
    diagonal = torch.bincount(edges[0], weight, n) + torch.bincount(edges[1], weight, n) + 1e-3
    matrix = propagation_torch.GraphOperator(edges, weight, diagonal)
    rhs = torch.from_numpy(rng.random((n, 3)))
    x = propagation_torch.conjugate_gradient(matrix, rhs)
    assert ((matrix @ x - rhs).norm(dim=0) <= 1.01 * propagation_torch.CG_RTOL * rhs.norm(dim=0)).all()


def test_the_refiner_computes_features_where_the_network_runs(monkeypatch) -> None:
    """A CPU network: the reference path (device None); an accelerator: that device."""
    import fusionseg.models.prior as prior

    assert feature_device(torch.device("cpu")) is None
    assert feature_device(torch.device("cuda", 1)) == torch.device("cuda", 1)
    seen = []
    real = prior.classic_features
    monkeypatch.setattr(prior, "classic_features", lambda *a, **k: seen.append(a[-1]) or real(*a, **k))  # a[-1]: device
    (image, coords, labels), _ = granite_field(32)
    sample = Sample(image=torch.from_numpy(image), point_coords=torch.from_numpy(coords),
                    point_features=torch.zeros(len(coords), 1), point_target=torch.from_numpy(labels))  # fmt: skip
    refiner = prior.PriorRefiner(split_noise=None).eval()
    graph = SimpleNamespace(pixel_to_node=torch.arange(32 * 32))
    refiner.predict(torch.zeros(32 * 32, int(labels.max()) + 1), graph, [sample], only_found=True)
    assert seen == [None]


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda
def test_features_on_a_gpu_equal_the_reference() -> None:
    args, regions = granite_field(128)
    assert_agree(classic_features(*args, regions), classic_features(*args, regions, device="cuda"))


@cuda
def test_the_shipped_model_maps_a_field_on_a_gpu_as_on_the_cpu() -> None:
    """The refiner's features on the GPU (the network's device): the same map to the solves' rounding."""
    from fusionseg.pretrain import load_weights
    from fusionseg.registry import DATA_SOURCES
    from fusionseg.sem.identify import with_identified_point_labels

    model = load_weights().eval()
    model.field_adaptation = None
    s = with_identified_point_labels(DATA_SOURCES.create("sem-synthetic", num_fields=1, size=128, rocks=["basalt"],
                                                         eds_fraction=0.02, seed=9)[0])  # fmt: skip
    maps = []
    for device in ("cpu", "cuda"):
        model.to(device)
        with torch.no_grad():
            graph = model.build_graphs([s]).to(device)
            maps.append(model.refiner.predict(model(graph), graph, [s], True)[0])
    (labels_cpu, conf_cpu), (labels_gpu, conf_gpu) = maps
    agree = (labels_cpu == labels_gpu).float().mean().item()
    print(f"GPU map agrees with the CPU map on {agree:.5f} of the pixels")
    assert agree >= 0.999 and (conf_cpu - conf_gpu).abs().max() < 1e-3
