"""Property-based tests: random shapes, dtypes and values give a valid result or fusionseg's own
error (`FusionSegError`), never an exception from inside a library."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fusionseg.errors import FusionSegError
from fusionseg.registry import GRAPH_BUILDERS, SAMPLERS, load_plugins
from fusionseg.sample import Sample, SampleMeta
from fusionseg.sem.meta import EnergyAxis, SemMeta

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
load_plugins()

DTYPES = st.sampled_from([np.float32, np.float64, np.int16, np.uint8, np.bool_, np.complex64, np.int64])
FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=32)


def arrays(max_dims: int = 4, max_side: int = 6):
    return DTYPES.flatmap(
        lambda dt: hnp.arrays(
            dt,
            hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=max_side),
            elements=FLOATS if np.issubdtype(dt, np.floating) else None,
        )
    )


def _ok_or_ours(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except FusionSegError:
        return None


@FAST
@given(image=arrays(), coords=arrays(3), feats=arrays(3), target=st.none() | arrays(3), names=st.integers(0, 3))
def test_sample_from_anything(image, coords, feats, target, names):
    meta = SampleMeta(class_names=tuple(f"c{i}" for i in range(names)))
    s = _ok_or_ours(Sample, image, coords, feats, meta=meta, target=target)
    if s is not None:
        assert s.image.dim() == 3 and torch.isfinite(s.image).all()
        assert s.point_coords.shape == (s.num_points, 2)


@st.composite
def valid_samples(draw, min_side: int = 1):
    h, w = draw(st.integers(min_side, 14)), draw(st.integers(min_side, 14))
    n = draw(st.integers(0, 9))
    c = draw(st.integers(1, 3))
    on_grid = draw(st.booleans())
    rows = draw(hnp.arrays(np.float64, n, elements=st.floats(-0.5, h - 0.5)))
    cols = draw(hnp.arrays(np.float64, n, elements=st.floats(-0.5, w - 0.5)))
    coords = np.stack([rows, cols], 1) if n else np.zeros((0, 2))
    coords = np.clip(np.round(coords), 0, [h - 1, w - 1]) if on_grid and n else coords
    if n and draw(st.booleans()):
        coords[:] = coords[0]  # every point at one place
    image = draw(hnp.arrays(np.float32, (c, h, w), elements=st.floats(0, 1, width=32)))
    feats = draw(hnp.arrays(np.float32, (n, 4), elements=st.floats(0, 50, width=32)))
    return Sample(
        image, coords, feats, meta=SampleMeta(class_names=("a", "b"), domain=SemMeta(energy_axis=EnergyAxis(size=4)))
    )


@pytest.mark.parametrize("name", ["grid", "knn", "superpixel"])
@FAST
@given(sample=valid_samples(), k=st.integers(1, 4))
def test_graph_builders_on_random_samples(name, sample, k):
    builder = GRAPH_BUILDERS.create(name, cross_k=k)
    graph = _ok_or_ours(builder, sample)
    if graph is not None:
        graph.validate(raise_on_error=True)


@pytest.mark.parametrize("name", sorted(set(SAMPLERS.names())))
@FAST
@given(h=st.integers(-1, 16), w=st.integers(-1, 16), n=st.integers(-2, 300), seed=st.integers(0, 3))
def test_samplers_on_random_requests(name, h, w, n, seed):
    image = np.random.default_rng(seed).random((max(h, 1), max(w, 1)))
    sampler = SAMPLERS.create(name)
    kwargs = {"image": image} if getattr(sampler, "uses_image", False) else {}
    pts = _ok_or_ours(sampler, h, w, n, np.random.default_rng(seed), **kwargs)
    if pts is not None:
        assert pts.shape == (n, 2)
        assert len({tuple(p) for p in pts.tolist()}) == n  # distinct pixels
        assert (pts >= 0).all() and (pts[:, 0] < h).all() and (pts[:, 1] < w).all()


CELLS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-5, 70000).map(str),
    st.text(alphabet="abc ,.-e\"'", max_size=4),
)


@FAST
@given(
    header=st.lists(st.sampled_from(["x", "y", "c0", "c1", "c2", "spectrum", "z", ""]), max_size=6),
    rows=st.lists(st.lists(CELLS, max_size=7), max_size=4),
)
def test_points_csv_layouts(tmp_path_factory, header, rows):
    from fusionseg.sem.data.readers import read_input

    folder = tmp_path_factory.mktemp("csv")
    np.save(folder / "unused.npy", np.zeros(1))
    import tifffile

    tifffile.imwrite(folder / "bse.tif", np.arange(64, dtype=np.uint16).reshape(8, 8))
    (folder / "points.csv").write_text("\n".join([",".join(header), *(",".join(r) for r in rows)]) + "\n")
    (folder / "meta.json").write_text('{"offset_ev": -470, "scale_ev": 10}')
    s = _ok_or_ours(read_input, folder)
    if s is not None:
        assert s.num_points >= 1 and torch.isfinite(s.point_features).all()


@FAST
@given(
    coords=st.none() | arrays(3, 5),
    spectra=st.none() | arrays(4, 5),
    scale=st.none() | st.floats(allow_nan=True, allow_infinity=True),
    beam=st.none() | st.floats(allow_nan=True, allow_infinity=True),
)
def test_eds_npz_layouts(tmp_path_factory, coords, spectra, scale, beam):
    import tifffile

    from fusionseg.sem.data.readers import read_input

    folder = tmp_path_factory.mktemp("npz")
    tifffile.imwrite(folder / "bse.tif", np.arange(25, dtype=np.uint16).reshape(5, 5))
    arrays_ = {"coords": coords, "spectra": spectra, "scale_ev": scale, "offset_ev": 0.0, "beam_energy_kev": beam}
    np.savez(folder / "eds.npz", **{k: v for k, v in arrays_.items() if v is not None})
    s = _ok_or_ours(read_input, folder)
    if s is not None:
        assert s.image.shape[1:] == (5, 5)


@st.composite
def labelled_fields(draw):
    """A valid field for the refiner's classic features: (1, H, W) image in [0, 1] (constant, saturated or noisy),
    1-12 points anywhere (borders, one pixel, one line), 1-4 classes, an unlabelled point now and then."""
    h, w = draw(st.integers(2, 20)), draw(st.integers(2, 20))
    kind = draw(st.sampled_from(["noise", "constant", "saturated", "two levels"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    image = {"noise": rng.random((h, w)), "constant": np.full((h, w), 0.4), "saturated": np.ones((h, w)),
             "two levels": np.where(np.arange(w) < w // 2, 0.2, 0.8)[None].repeat(h, 0)}[kind]  # fmt: skip
    n = draw(st.integers(1, 12))
    rows = draw(st.lists(st.floats(0, h - 1), min_size=n, max_size=n))
    cols = draw(st.lists(st.floats(0, w - 1), min_size=n, max_size=n))
    labels = draw(st.lists(st.sampled_from([0, 3, 5, 9, -100]), min_size=n, max_size=n))
    return image[None].astype(np.float32), np.array([rows, cols], np.float64).T, np.array(labels, np.int64)


@FAST
@given(field=labelled_fields(), seed=st.integers(0, 2**16))
def test_classic_features_are_finite_defined_everywhere_and_blind_to_point_order(field, seed):
    """The refiner's features (`classic_features`): finite for any valid field, a value for every found
    class at every pixel, and the same whatever order the points are listed in."""
    from fusionseg.models.prior import FEATURES, PIXEL_FEATURES, classic_features
    from fusionseg.sample import IGNORE_INDEX

    image, coords, labels = field
    h, w = image.shape[1:]
    feats = classic_features(image, coords, labels)
    found = np.unique(labels[labels != IGNORE_INDEX])
    assert feats.found.tolist() == found.tolist()
    assert feats.region.shape == (len(found), h * w, len(FEATURES)) and np.isfinite(feats.region).all()
    pixels = feats.pixel_features(np.arange(h * w)).numpy()
    assert pixels.shape == (len(found), h * w, len(PIXEL_FEATURES)) and np.isfinite(pixels).all()
    for method in ("geodesic", "random-walker"):
        filled = feats.classic_labels(method) if len(found) else None
        assert filled is None or set(np.unique(filled)) <= set(found.tolist())
    order = np.random.default_rng(seed).permutation(len(labels))
    shuffled = classic_features(image, coords[order], labels[order])
    np.testing.assert_allclose(shuffled.region, feats.region, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(shuffled.pixel_features(np.arange(h * w)).numpy(), pixels, rtol=1e-5, atol=1e-5)
