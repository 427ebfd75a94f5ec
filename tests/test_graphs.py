"""Graph builders: exact edge sets, cross edges vs brute force, symmetry, decoding, batching."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from fusionseg import IGNORE_INDEX, Sample, SampleError, SampleMeta
from fusionseg.graphs import (
    GraphBuildError,
    SegGraph,
    decode_to_pixels,
    grid_geometry,
    image_node_type,
    pixel_batch,
    point_point_edges,
    to_homogeneous,
)
from fusionseg.graphs.schema import edge_types
from fusionseg.registry import GRAPH_BUILDERS

CLASSES = ("a", "b", "c")


def make_sample(h: int = 12, w: int = 15, n: int = 10, c: int = 1, seed: int = 0, coords=None) -> Sample:
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand(n, 2, generator=g) * torch.tensor([h - 1.0, w - 1.0]) if coords is None else coords
    n = len(pts)
    return Sample(
        torch.rand(c, h, w, generator=g),
        pts,
        torch.rand(n, 5, generator=g),
        meta=SampleMeta(class_names=CLASSES),
        target=torch.randint(-1, 3, (h, w), generator=g),
        point_target=torch.randint(0, 3, (n,), generator=g),
    )


def edge_set(ei: torch.Tensor) -> set[tuple[int, int]]:
    return set(map(tuple, ei.T.tolist()))


def undirected(pairs: list[tuple[int, int]]) -> set[tuple[int, int]]:
    return {p for a, b in pairs for p in ((a, b), (b, a))}


def image_edges(g: SegGraph) -> tuple[torch.Tensor, torch.Tensor]:
    store = g[edge_types(image_node_type(g))["image"]]
    return store.edge_index, store.edge_attr


# --- exact grid edges on 3x3 -------------------------------------------------------------------

H_PAIRS = [(0, 1), (1, 2), (3, 4), (4, 5), (6, 7), (7, 8)]
V_PAIRS = [(0, 3), (3, 6), (1, 4), (4, 7), (2, 5), (5, 8)]
D_PAIRS = [(0, 4), (1, 5), (3, 7), (4, 8), (1, 3), (2, 4), (4, 6), (5, 7)]


@pytest.mark.parametrize("conn, pairs", [(4, H_PAIRS + V_PAIRS), (8, H_PAIRS + V_PAIRS + D_PAIRS)])
def test_grid_3x3_exact_edges(conn: int, pairs: list[tuple[int, int]]) -> None:
    g = GRAPH_BUILDERS.create("grid", connectivity=conn, cache=False)(make_sample(3, 3, 2))
    ei, attr = image_edges(g)
    assert edge_set(ei) == undirected(pairs) and ei.shape[1] == 2 * len(pairs)
    pos = g["pixel"].pos
    assert torch.allclose(attr[:, 0], (pos[ei[0]] - pos[ei[1]]).norm(dim=1))
    assert {round(float(d), 4) for d in attr[:, 0]} == ({1.0} if conn == 4 else {1.0, round(math.sqrt(2), 4)})
    assert torch.equal(g.pixel_to_node, torch.arange(9))
    assert torch.equal(g["pixel"].x[:, 0], g["pixel"].x.view(-1)) and g.image_size.tolist() == [[3, 3]]


def test_grid_dilation_adds_far_neighbours() -> None:
    g = GRAPH_BUILDERS.create("grid", connectivity=4, dilation=[1, 2])(make_sample(3, 3, 2))
    far = [(0, 2), (3, 5), (6, 8), (0, 6), (1, 7), (2, 8)]
    ei, attr = image_edges(g)
    assert edge_set(ei) == undirected(H_PAIRS + V_PAIRS + far)
    assert sorted(set(attr[:, 0].tolist())) == [1.0, 2.0]


def test_grid_stride_pools_blocks_and_maps_pixels() -> None:
    s = make_sample(5, 5, 3)
    g = GRAPH_BUILDERS.create("grid", stride=2, connectivity=4)(s)
    img = s.image[0]
    assert g["pixel"].num_nodes == 9
    assert torch.allclose(g["pixel"].pos[:3, 1], torch.tensor([0.5, 2.5, 4.0]))
    expected = torch.tensor([img[r : r + 2, c : c + 2].mean() for r in (0, 2, 4) for c in (0, 2, 4)])
    assert torch.allclose(g["pixel"].x[:, 0], expected, atol=1e-6)
    rows, cols = torch.meshgrid(torch.arange(5), torch.arange(5), indexing="ij")
    assert torch.equal(g.pixel_to_node, ((rows // 2) * 3 + cols // 2).reshape(-1))
    # majority label over the block's labelled pixels
    t = s.target.reshape(-1)
    for node in range(9):
        vals = t[(g.pixel_to_node == node) & (t != IGNORE_INDEX)]
        if len(vals) and (torch.bincount(vals) == torch.bincount(vals).max()).sum() == 1:
            assert g["pixel"].y[node] == torch.bincount(vals).argmax()


def test_intensity_edges_and_position_features() -> None:
    s = make_sample(6, 7, 4, c=2)
    b = GRAPH_BUILDERS.create("grid", intensity_edges=True, add_position=True, dilation=[1, 3])
    g = b(s)
    ei, attr = image_edges(g)
    x = g["pixel"].x
    assert x.shape[1] == b.image_feature_dim(2) == 4 and attr.shape[1] == 3
    assert torch.allclose(attr[:, 1:], (x[ei[0], :2] - x[ei[1], :2]).abs())
    assert torch.allclose(x[:, 2:], g["pixel"].pos / torch.tensor([5.0, 6.0]))


# --- cross edges vs brute force ----------------------------------------------------------------


def brute_nearest(src: torch.Tensor, dst: torch.Tensor, k: int) -> torch.Tensor:
    return torch.cdist(src.double(), dst.double()).topk(k, largest=False).values


@pytest.mark.parametrize("stride, k", [(1, 1), (1, 3), (2, 1), (3, 4)])
def test_grid_cross_edges_are_k_nearest(stride: int, k: int) -> None:
    s = make_sample(13, 11, 9, seed=stride * 10 + k)
    g = GRAPH_BUILDERS.create("grid", stride=stride, cross_k=k)(s)
    npix, npt = g["pixel"].num_nodes, g["point"].num_nodes
    for key, src, dst in (
        ("point_to_image", g["point"].pos, g["pixel"].pos),
        ("image_to_point", g["pixel"].pos, g["point"].pos),
    ):
        ei, attr = g[edge_types("pixel")[key]].edge_index, g[edge_types("pixel")[key]].edge_attr
        n_src = npt if key == "point_to_image" else npix
        assert ei.shape[1] == n_src * k and torch.equal(ei[0], torch.arange(n_src).repeat_interleave(k))
        got = attr[:, 0].view(n_src, k).sort(1).values.double()
        assert torch.allclose(got, (src[ei[0]] - dst[ei[1]]).norm(dim=1).view(n_src, k).sort(1).values.double())
        tol = 1.415 if (key, stride, k) == ("image_to_point", 1, 1) else 1e-5  # EDT: nearest by snapped pixel
        assert (got - brute_nearest(src, dst, k)).abs().max() <= tol


def test_cross_exact_uses_sub_pixel_positions() -> None:
    s = make_sample(13, 11, 9, seed=5)
    g = GRAPH_BUILDERS.create("grid", cross_exact=True)(s)
    attr = g["pixel", "to", "point"].edge_attr[:, 0].double()
    assert torch.allclose(attr, brute_nearest(g["pixel"].pos, s.point_coords, 1)[:, 0])


def test_edt_exact_for_pixel_centred_points() -> None:
    coords = torch.tensor([[0.0, 0.0], [4.0, 9.0], [10.0, 3.0], [7.0, 7.0]])
    g = GRAPH_BUILDERS.create("grid")(make_sample(11, 10, coords=coords))
    attr = g["pixel", "to", "point"].edge_attr[:, 0].double()
    assert torch.allclose(attr, brute_nearest(g["pixel"].pos, coords, 1)[:, 0])


# --- point-point edges -------------------------------------------------------------------------


def test_point_edges_small_counts_and_symmetry() -> None:
    assert point_point_edges(torch.zeros(0, 2))[0].shape == (2, 0)
    assert point_point_edges(torch.tensor([[1.0, 1.0]]))[0].shape == (2, 0)
    ei, d = point_point_edges(torch.tensor([[0.0, 0.0], [3.0, 4.0]]))
    assert edge_set(ei) == {(0, 1), (1, 0)} and torch.allclose(d[:, 0], torch.tensor([5.0, 5.0]))
    for method in ("delaunay", "knn"):
        ei, d = point_point_edges(torch.rand(40, 2) * 50, method, k=4)
        assert edge_set(ei) == {(b, a) for a, b in edge_set(ei)} and ei.shape[1] == len(edge_set(ei))
        assert (ei[0] != ei[1]).all()


def test_delaunay_matches_scipy_triangles() -> None:
    from scipy.spatial import Delaunay

    pts = torch.rand(30, 2, generator=torch.Generator().manual_seed(3)) * 20
    tri = Delaunay(pts.double().numpy()).simplices
    expected = undirected([(int(t[i]), int(t[(i + 1) % 3])) for t in tri for i in range(3)])
    assert edge_set(point_point_edges(pts)[0]) == expected


def test_collinear_points_fall_back_to_chain() -> None:
    pts = torch.tensor([[0.0, 0.0], [0.0, 2.0], [0.0, 4.0], [0.0, 6.0], [0.0, 8.0]])
    ei, d = point_point_edges(pts, "delaunay", k=2)
    assert undirected([(0, 1), (1, 2), (2, 3), (3, 4)]) <= edge_set(ei)
    assert edge_set(ei) == {(b, a) for a, b in edge_set(ei)}


def test_duplicated_points_join_their_first_copy() -> None:
    pts = torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0], [5.0, 0.0], [5.0, 0.0]])
    ei, d = point_point_edges(pts)
    es = edge_set(ei)
    assert es == undirected([(0, 1), (1, 2), (0, 2), (3, 1), (4, 1)]) and ei.shape[1] == len(es)
    assert torch.all(d[(ei[0] >= 3) | (ei[1] >= 3), 0] == 0)
    g = GRAPH_BUILDERS.create("grid")(make_sample(8, 8, coords=pts))  # cross edges cope too
    assert g["point", "to", "pixel"].edge_index.shape == (2, 5)


@pytest.mark.parametrize("name", ["grid", "knn", "superpixel"])
def test_zero_points_give_empty_point_side(name: str) -> None:
    g = GRAPH_BUILDERS.create(name)(make_sample(9, 9, coords=torch.zeros(0, 2)))
    img = image_node_type(g)
    assert g["point"].num_nodes == 0 and g["point"].x.shape == (0, 5)
    for key in ("point", "point_to_image", "image_to_point"):
        store = g[edge_types(img)[key]]
        assert store.edge_index.shape == (2, 0) and store.edge_attr.shape == (0, 1)
    h = to_homogeneous(Batch.from_data_list([g, g]))
    assert h.num_nodes == h.num_image_nodes == 2 * g[img].num_nodes


# --- knn and superpixel builders ---------------------------------------------------------------


def test_knn_builder_edges_are_nearest_in_feature_space() -> None:
    s = make_sample(8, 9, 5)
    b = GRAPH_BUILDERS.create("knn", k=4, intensity_scale=5.0, symmetric=False)
    g = b(s)
    ei, attr = image_edges(g)
    space = torch.cat([g["pixel"].pos, 5.0 * g["pixel"].x], 1).double()
    d = torch.cdist(space, space)
    d.fill_diagonal_(float("inf"))
    got = d[ei[0], ei[1]].view(-1, 4).sort(1).values
    assert torch.allclose(got, d.topk(4, largest=False).values)
    assert torch.allclose(attr[:, 0], (g["pixel"].pos[ei[0]] - g["pixel"].pos[ei[1]]).norm(dim=1))
    ei_sym = image_edges(GRAPH_BUILDERS.create("knn", k=4, intensity_scale=5.0)(s))[0]
    assert edge_set(ei_sym) == edge_set(ei) | {(b, a) for a, b in edge_set(ei)}


def test_superpixel_grid_regions_adjacency_features_and_decoding() -> None:
    s = make_sample(8, 8, 6)
    b = GRAPH_BUILDERS.create("superpixel", method="grid", region_size=4, quantiles=[0.0, 0.5, 1.0])
    g = b(s)
    assert g["region"].num_nodes == 4 and g["region"].x.shape[1] == b.image_feature_dim(1) == 8
    assert edge_set(image_edges(g)[0]) == undirected([(0, 1), (0, 2), (1, 3), (2, 3)])
    img, labels = s.image[0].reshape(-1), g.pixel_to_node
    for r in range(4):
        v = img[labels == r].double()
        feats = g["region"].x[r].double()
        expected = [v.mean(), v.std(unbiased=False), v.min(), v.quantile(0.5), v.max(), math.log1p(16)]
        assert torch.allclose(
            feats[:6], torch.stack([torch.as_tensor(e, dtype=torch.float64) for e in expected]), atol=1e-5
        )
    centroid = torch.tensor([[1.5, 1.5], [1.5, 5.5], [5.5, 1.5], [5.5, 5.5]])
    assert torch.allclose(g["region"].pos, centroid) and torch.allclose(g["region"].x[:, 6:], centroid / 7)
    decoded = decode_to_pixels(g["region"].x[:, 0], g)  # round trip: pixels get their region's mean
    means = torch.stack([img[labels == r].mean() for r in range(4)])
    assert torch.allclose(decoded, means[labels])


@pytest.mark.parametrize("method", ["slic", "felzenszwalb", "grid"])
def test_superpixel_methods_partition_the_image(method: str) -> None:
    s = make_sample(40, 48, 12, c=3)
    rows, cols = torch.meshgrid(torch.arange(40), torch.arange(48), indexing="ij")
    phases = ((rows // 10 + cols // 12) % 3).float()  # blocky phases + noise, like a BSE field
    s.image = phases[None].repeat(3, 1, 1) / 2 + 0.05 * s.image
    b = GRAPH_BUILDERS.create("superpixel", method=method, region_size=6, cross_k=2, intensity_edges=True)
    g = b(s)
    labels, r = g.pixel_to_node, g["region"].num_nodes
    assert torch.equal(torch.unique(labels), torch.arange(r)) and r > 10
    assert g["region"].x.shape == (r, b.image_feature_dim(3)) and image_edges(g)[1].shape[1] == 4
    t = s.target.reshape(-1)
    for node in range(r):  # majority label
        vals = t[(labels == node) & (t != IGNORE_INDEX)]
        counts = torch.bincount(vals, minlength=3) if len(vals) else None
        assert g["region"].y[node] == (IGNORE_INDEX if counts is None else counts.argmax()) or (
            counts[g["region"].y[node]] == counts.max()
        )
    p2r = g["point", "to", "region"].edge_index
    home = labels.view(40, 48)[s.point_coords.round().long()[:, 0], s.point_coords.round().long()[:, 1]]
    assert torch.equal(p2r[1, ::2], home) and (p2r[1, ::2] != p2r[1, 1::2]).all()


# --- homogeneous layout ------------------------------------------------------------------------


def hand_built_4x4(s: Sample) -> dict[tuple[int, int], float]:
    """The paper-style graph of a 4x4 image with 2 points, built by explicit loops."""
    edges, m = {}, 16
    for r in range(4):
        for c in range(4):
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    if (dr or dc) and 0 <= r + dr < 4 and 0 <= c + dc < 4:
                        edges[(r * 4 + c, (r + dr) * 4 + c + dc)] = math.hypot(dr, dc)
    pts = s.point_coords.tolist()
    d01 = math.dist(pts[0], pts[1])
    edges[(m, m + 1)] = edges[(m + 1, m)] = d01
    for j, (pr, pc) in enumerate(pts):
        r, c = round(pr), round(pc)
        edges[(m + j, r * 4 + c)] = math.dist((pr, pc), (r, c))
    for r in range(4):
        for c in range(4):
            ds = [math.dist((r, c), p) for p in pts]
            j = int(np.argmin(ds))
            edges[(r * 4 + c, m + j)] = ds[j]
    return edges | {(b, a): d for (a, b), d in edges.items()}  # undirected, as the paper's code


def test_to_homogeneous_equals_hand_built_4x4() -> None:
    # pixel-centred points (as EDS spots are) and no pixel equidistant to both (6r + 4c = 13 has no
    # integer solution): the distance-transform path is then exact
    s = make_sample(4, 4, coords=torch.tensor([[0.0, 0.0], [3.0, 2.0]]))
    h = to_homogeneous(GRAPH_BUILDERS.create("grid")(s))
    expected = hand_built_4x4(s)
    got = {(int(a), int(b)): float(d) for (a, b), d in zip(h.edge_index.T.tolist(), h.edge_attr[:, 0], strict=True)}
    assert got.keys() == expected.keys() and h.edge_index.shape[1] == len(expected)
    assert all(abs(got[e] - expected[e]) < 1e-5 for e in expected)
    x = torch.zeros(18, 6)
    x[:16, 0] = s.image.reshape(-1)
    x[16:, 1:] = s.point_features
    assert torch.equal(h.x, x) and h.num_image_nodes == 16 and h.edge_attr.shape == (len(expected), 1)
    assert torch.equal(h.y, torch.cat([s.target.reshape(-1), s.point_target]))
    assert torch.equal(h.node_type, torch.tensor([0] * 16 + [1] * 2))
    lifted = to_homogeneous(GRAPH_BUILDERS.create("grid")(s), point_height=5.0)  # the paper's EDS nodes at z = 5
    cross = h.node_type[h.edge_index[0]] != h.node_type[h.edge_index[1]]
    assert torch.equal(lifted.edge_index, h.edge_index)
    assert torch.allclose(lifted.edge_attr[cross, 0], torch.sqrt(h.edge_attr[cross, 0] ** 2 + 25.0))
    assert torch.equal(lifted.edge_attr[~cross], h.edge_attr[~cross]) and lifted.edge_attr[cross].min() >= 5.0


def test_every_pixel_receives_its_nearest_point_in_the_paper_graph() -> None:
    """The paper's cross edges carry spectra *into* every pixel (the collapse of issue 25: they only left it).

    At the paper config's field size and 1 % EDS, each pixel node has exactly one incoming edge from a
    point node, and that point is its nearest one.
    """
    s = make_sample(128, 128, n=164, seed=3, coords=torch.randint(0, 128, (164, 2)).float())
    g = GRAPH_BUILDERS.create("grid", connectivity=8, point_edges="delaunay", cross_k=1)(s)
    h = to_homogeneous(g)
    src, dst = h.edge_index
    into_pixels = (h.node_type[src] == 1) & (h.node_type[dst] == 0)
    senders = torch.full((h.num_image_nodes,), -1)
    senders[dst[into_pixels]] = src[into_pixels] - h.num_image_nodes
    assert torch.bincount(dst[into_pixels], minlength=h.num_image_nodes).min() >= 1
    nearest = torch.cdist(h.pos[: h.num_image_nodes], s.point_coords).min(1).values
    own = (h.pos[: h.num_image_nodes] - s.point_coords[senders]).norm(dim=1)
    assert torch.allclose(own[senders >= 0], nearest, atol=1e-5)


# --- batching ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, kw", [("grid", {}), ("grid", {"stride": 2}), ("knn", {}), ("superpixel", {"method": "grid"})]
)
def test_batching_keeps_pixel_to_node_and_edges_consistent(name: str, kw: dict) -> None:
    b = GRAPH_BUILDERS.create(name, **kw)
    s1, s2 = make_sample(7, 9, 5, seed=1), make_sample(10, 6, 8, seed=2)
    g1, g2 = b(s1), b(s2)
    img = b.image_node_type
    batch = Batch.from_data_list([g1, g2])
    m1 = g1[img].num_nodes
    ids = decode_to_pixels(torch.arange(batch[img].num_nodes), batch)
    assert torch.equal(ids, torch.cat([g1.pixel_to_node, g2.pixel_to_node + m1]))
    pixels = decode_to_pixels(batch[img].x[:, 0], batch)
    assert torch.equal(
        pixels, torch.cat([decode_to_pixels(g1[img].x[:, 0], g1), decode_to_pixels(g2[img].x[:, 0], g2)])
    )
    assert torch.equal(pixel_batch(batch), torch.tensor([0] * 63 + [1] * 60))
    if name == "grid" and not kw:
        assert torch.equal(pixels, torch.cat([s1.image.reshape(-1), s2.image.reshape(-1)]))
    h = to_homogeneous(batch)
    assert h.num_image_nodes == batch[img].num_nodes and torch.equal(h.pixel_to_node, batch.pixel_to_node)
    src, dst = h.edge_index
    assert torch.equal(h.batch[src], h.batch[dst])  # no edge crosses graphs
    assert torch.allclose(h.edge_attr[:, 0], (h.pos[src] - h.pos[dst]).norm(dim=1), atol=1e-5)
    f = g1[img].x.shape[1]
    dense = h.x[: h.num_image_nodes][h.pixel_to_node][:, :f]
    assert torch.equal(dense, torch.cat([decode_to_pixels(g[img].x, g) for g in (g1, g2)], 0))


def test_batching_does_not_touch_the_cached_geometry() -> None:
    b = GRAPH_BUILDERS.create("grid")
    g1, g2 = b(make_sample(6, 6, 3, seed=1)), b(make_sample(6, 6, 3, seed=2))
    before = grid_geometry(6, 6, 8, (1,), 1).edge_index.clone()
    Batch.from_data_list([g1, g2])
    assert g1["pixel", "near", "pixel"].edge_index is g2["pixel", "near", "pixel"].edge_index  # shared, cached
    assert torch.equal(grid_geometry(6, 6, 8, (1,), 1).edge_index, before)


# --- registry, options, bad input --------------------------------------------------------------


@pytest.mark.parametrize("name", ["grid", "knn", "superpixel"])
@pytest.mark.parametrize("c", [1, 3])
def test_registered_builders_follow_the_schema(name: str, c: int) -> None:
    b = GRAPH_BUILDERS.create(name)
    g = b(make_sample(16, 16, 6, c=c))
    img = image_node_type(g)
    assert img == b.image_node_type and g[img].x.shape[1] == b.image_feature_dim(c)
    assert g.validate() and g.pixel_to_node.shape == (256,) and g.pixel_y.shape == (256,)
    for key, et in edge_types(img).items():
        ei, attr = g[et].edge_index, g[et].edge_attr
        assert ei.dtype == torch.long and attr.dtype == torch.float32 and attr.shape[0] == ei.shape[1]
        if key in ("image", "point"):
            assert edge_set(ei) == {(b_, a) for a, b_ in edge_set(ei)}


@pytest.mark.parametrize(
    "name, kw",
    [
        ("grid", {"connectivity": 6}),
        ("grid", {"stride": 0}),
        ("grid", {"dilation": []}),
        ("grid", {"point_edges": "voronoi"}),
        ("grid", {"cross_k": -1}),
        ("knn", {"k": 0}),
        ("knn", {"intensity_scale": float("nan")}),
        ("superpixel", {"method": "watershed"}),
        ("superpixel", {"quantiles": [1.5]}),
    ],
)
def test_bad_options_raise_clear_errors(name: str, kw: dict) -> None:
    with pytest.raises(GraphBuildError, match="must"):
        GRAPH_BUILDERS.create(name, **kw)


def test_bad_input_is_rejected() -> None:
    b = GRAPH_BUILDERS.create("grid")
    with pytest.raises(GraphBuildError, match="fusionseg.Sample"):
        b(torch.zeros(1, 4, 4))
    with pytest.raises(SampleError, match="NaN"):
        Sample(torch.full((1, 4, 4), float("nan")), torch.zeros(1, 2), torch.zeros(1, 3))
    with pytest.raises(SampleError, match="outside"):
        Sample(torch.zeros(1, 4, 4), torch.tensor([[9.0, 1.0]]), torch.zeros(1, 3))
    with pytest.raises(SampleError, match="sizes > 0"):
        Sample(torch.zeros(1, 0, 4), torch.zeros(0, 2), torch.zeros(0, 3))
    s = make_sample(4, 4, 2)
    s.image[0, 0, 0] = float("nan")  # mutated after validation
    with pytest.raises(GraphBuildError, match="NaN"):
        b(s)


def test_cross_k_zero_disables_cross_edges() -> None:
    g = GRAPH_BUILDERS.create("grid", cross_k=0)(make_sample(5, 5, 3))
    assert g["point", "to", "pixel"].edge_index.shape == (2, 0)
    assert g["pixel", "to", "point"].edge_index.shape == (2, 0)


def _build_many_points() -> None:
    g = GRAPH_BUILDERS.create("grid")(make_sample(60, 60, 2500))
    assert g["point", "near", "point"].edge_index.shape[1] > 2500


def test_threaded_delaunay_survives_fork() -> None:
    import multiprocessing as mp

    _build_many_points()  # parent starts its worker thread
    proc = mp.get_context("fork").Process(target=_build_many_points)
    proc.start()
    proc.join(timeout=60)
    assert proc.exitcode == 0
