"""Backbones, fusion modules and heads on tiny hand-built `SegGraph`s."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree
from torch_geometric.data import Batch, Data

import fusionseg.graphs
from fusionseg.graphs.schema import NEAR, PIXEL, POINT, REGION, TO, SegGraph, image_node_type
from fusionseg.models import BackboneError, FusionError
from fusionseg.registry import BACKBONES, FUSIONS, HEADS, POINT_ENCODERS
from fusionseg.sem.meta import EnergyAxis

AXIS = EnergyAxis(256, 40.0, 0.0)
BACKBONE_NAMES = ["gcn", "sage", "gin", "gat", "gatv2", "transformer"]
FUSION_NAMES = ["early", "hetero", "cross-attention", "late", "image-only"]


def _edges(src_pos: np.ndarray, dst_pos: np.ndarray, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Edges from each dst node's k nearest src nodes: (2, E) (src, dst) and distances (E, 1) in pixels."""
    k = min(k, len(src_pos))
    dist, idx = cKDTree(src_pos).query(dst_pos, k=k)
    dist, idx = dist.reshape(len(dst_pos), k), idx.reshape(len(dst_pos), k)
    dst = np.repeat(np.arange(len(dst_pos)), k)
    edge_index = torch.from_numpy(np.stack([idx.ravel(), dst])).long()
    return edge_index, torch.from_numpy(dist.ravel()).float()[:, None]


def make_graph(
    img: str = PIXEL, h: int = 6, w: int = 6, n_points: int = 5, seed: int = 0, k: int = 2, k_img: int = 3
) -> SegGraph:
    """A tiny SegGraph following `fusionseg.graphs.schema`; point x are raw spectra on ``AXIS``."""
    rng = np.random.default_rng(seed)
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    if img == PIXEL:
        pixel_to_node = np.arange(h * w)
        pos = np.stack([rows.ravel(), cols.ravel()], 1).astype(float)
    else:  # 2x2 blocks as regions
        pixel_to_node = (rows // 2 * ((w + 1) // 2) + cols // 2).ravel()
        m = pixel_to_node.max() + 1
        pos = np.stack([np.bincount(pixel_to_node, c.ravel()) / np.bincount(pixel_to_node) for c in (rows, cols)], 1)
        assert len(pos) == m
    g = SegGraph()
    g[img].x = torch.rand(len(pos), 2, generator=torch.Generator().manual_seed(seed))
    g[img].pos = torch.from_numpy(pos).float()
    pts = rng.uniform(0, [h - 1, w - 1], size=(n_points, 2))
    g[POINT].pos = torch.from_numpy(pts).float()
    g[POINT].x = torch.poisson(torch.full((n_points, AXIS.size), 3.0) + 50 * torch.rand(n_points, 1))
    g[POINT].y = torch.from_numpy(rng.integers(0, 3, n_points)).long()
    # As the builders do: (point, to, img) = each point to its k nearest image nodes,
    # (img, to, point) = each image node to its k_img nearest points.
    for et, (s, d, kk, flip) in {
        (img, NEAR, img): (pos, pos, 5, False),
        (POINT, NEAR, POINT): (pts, pts, 3, False),
        (POINT, TO, img): (pos, pts, k, True),
        (img, TO, POINT): (pts, pos, k_img, True),
    }.items():
        ei, ea = _edges(s, d, kk)
        ei = ei.flip(0) if flip else ei
        keep = ea[:, 0] > 0 if et[0] == et[2] else torch.ones(len(ea), dtype=torch.bool)  # no self loops
        g[et].edge_index, g[et].edge_attr = ei[:, keep], ea[keep]
    g.pixel_to_node = torch.from_numpy(pixel_to_node).long()
    g.image_size = torch.tensor([[h, w]])
    return g


def fallback_to_homogeneous(graph: SegGraph) -> Data:
    """Minimal stand-in for `fusionseg.graphs.to_homogeneous` (image nodes first, zero-padded x)."""
    img = image_node_type(graph)
    xi, xp = graph[img].x, graph[POINT].x
    x = torch.cat([F.pad(xi, (0, xp.shape[1])), F.pad(xp, (xi.shape[1], 0))])
    offset = {img: 0, POINT: xi.shape[0]}
    ei = [graph[et].edge_index + torch.tensor([[offset[et[0]]], [offset[et[2]]]]) for et in graph.edge_types]
    ea = [graph[et].edge_attr[:, :1] for et in graph.edge_types]
    return Data(x=x, edge_index=torch.cat(ei, 1), edge_attr=torch.cat(ea), num_image_nodes=xi.shape[0])


@pytest.fixture(autouse=True)
def _homogeneous(monkeypatch: pytest.MonkeyPatch) -> None:
    if not hasattr(fusionseg.graphs, "to_homogeneous"):
        monkeypatch.setattr(fusionseg.graphs, "to_homogeneous", fallback_to_homogeneous, raising=False)


@pytest.mark.parametrize("img", [PIXEL, REGION])
@pytest.mark.parametrize("fusion", FUSION_NAMES)
@pytest.mark.parametrize("backbone", BACKBONE_NAMES)
def test_every_backbone_and_fusion_trains(backbone: str, fusion: str, img: str) -> None:
    torch.manual_seed(0)
    g = make_graph(img)
    enc = POINT_ENCODERS.create("learned", energy_axis=AXIS, out_dim=6)
    fu = FUSIONS.create(
        fusion, image_dim=2, point_dim=6, hidden_channels=8, image_node_type=img, backbone=backbone,
        backbone_kwargs={"num_layers": 2, "heads": 2},
    )  # fmt: skip
    head = HEADS.create("classifier", in_dim=fu.out_dim, num_outputs=3)
    g[POINT].x = enc(g[POINT].x)
    logits = head(fu(g), g)
    assert logits.shape == (g[img].num_nodes, 3) and torch.isfinite(logits).all()
    F.cross_entropy(logits[g.pixel_to_node], torch.randint(0, 3, (36,))).backward()
    enc_grads = [p.grad for p in enc.parameters()]
    if fusion != "image-only":  # the image-only baseline ignores points by design
        assert all(gr is not None and gr.abs().sum() > 0 for gr in enc_grads), "no gradient reached the encoder"
    fu_grads = [p.grad for p in fu.parameters()]
    reached = sum(gr is not None and bool(gr.abs().sum() > 0) for gr in fu_grads)
    assert reached >= 0.7 * len(fu_grads), f"only {reached}/{len(fu_grads)} fusion parameters got gradients"


@pytest.mark.parametrize("fusion", FUSION_NAMES)
def test_fusion_on_batched_graphs(fusion: str) -> None:
    torch.manual_seed(0)
    graphs = [make_graph(REGION, seed=s, n_points=4 + s) for s in range(2)]
    for g in graphs:
        g[POINT].x = g[POINT].x[:, :5]
    batch = Batch.from_data_list(graphs)
    fu = FUSIONS.create(fusion, image_dim=2, point_dim=5, hidden_channels=8, image_node_type=REGION)
    fu.eval()
    out = fu(batch)
    assert out.shape == (18, fu.out_dim)
    assert torch.allclose(out[:9], fu(graphs[0]), atol=1e-5)  # batched = each graph alone
    assert torch.allclose(out[9:], fu(graphs[1]), atol=1e-5)


def test_fusion_rejects_mismatched_graphs() -> None:
    g = make_graph(PIXEL)
    fu = FUSIONS.create("late", image_dim=2, point_dim=6, hidden_channels=8, image_node_type=REGION)
    with pytest.raises(FusionError, match="image_node_type"):
        fu(g)
    fu = FUSIONS.create("hetero", image_dim=2, point_dim=6, hidden_channels=8)
    with pytest.raises(FusionError, match="encode point spectra"):
        fu(g)  # point x still raw 256-channel spectra
    g[POINT].x = g[POINT].x[:, :6]
    del g[POINT, TO, PIXEL]
    del g[PIXEL, TO, POINT]
    with pytest.raises(FusionError, match="cross edges"):
        FUSIONS.create("cross-attention", image_dim=2, point_dim=6, hidden_channels=8)(g)


def test_cross_attention_attends_over_each_pixels_nearest_points() -> None:
    torch.manual_seed(0)
    g = make_graph(PIXEL, k=3)
    g[POINT].x = g[POINT].x[:, :4]
    fu = FUSIONS.create("cross-attention", image_dim=2, point_dim=4, hidden_channels=8).eval()
    ref = fu(g)
    src_pixel, dst_point = g[PIXEL, TO, POINT].edge_index
    hears = torch.zeros(36, dtype=torch.bool)
    hears[src_pixel[dst_point == 0]] = True  # pixels with point 0 among their nearest points
    g[POINT].x[0] *= 50
    changed = (fu(g) - ref).abs().amax(1) > 1e-5
    assert torch.equal(changed, hears) and 0 < int(hears.sum()) < 36


def test_hetero_fusion_passes_points_to_each_pixels_nearest_points() -> None:
    torch.manual_seed(0)
    g = make_graph(PIXEL, k=3)
    g[POINT].x = g[POINT].x[:, :4]
    fu = FUSIONS.create("hetero", image_dim=2, point_dim=4, hidden_channels=8, num_layers=1).eval()
    ref = fu(g)
    src_pixel, dst_point = g[PIXEL, TO, POINT].edge_index
    hears = torch.zeros(36, dtype=torch.bool)
    hears[src_pixel[dst_point == 0]] = True
    g[POINT].x[0] *= 50
    changed = (fu(g) - ref).abs().amax(1) > 1e-5
    assert torch.equal(changed, hears) and 0 < int(hears.sum()) < 36


def test_image_only_fusion_does_not_depend_on_points() -> None:
    torch.manual_seed(0)
    g = make_graph(PIXEL)
    g[POINT].x = torch.rand(g[POINT].num_nodes, 4)
    fu = FUSIONS.create("image-only", image_dim=2, point_dim=4, hidden_channels=8).eval()
    before = fu(g)
    g[POINT].x = torch.rand_like(g[POINT].x) * 100
    assert torch.equal(before, fu(g))
    g[PIXEL].x = g[PIXEL].x + 1
    assert not torch.allclose(before, fu(g))


def test_late_fusion_ignores_points_where_there_are_none() -> None:
    g = make_graph(PIXEL)
    g[POINT].x = g[POINT].x[:, :4]
    fu = FUSIONS.create("late", image_dim=2, point_dim=4, hidden_channels=8).eval()
    out = fu(g)
    g[POINT].x = g[POINT].x * 100  # every pixel hears its nearest points: all change
    assert not torch.allclose(fu(g), out)
    g2 = make_graph(PIXEL)
    g2[POINT].x = g2[POINT].x[:, :4]
    keep = g2[PIXEL, TO, POINT].edge_index[0] < 18  # drop point edges of the lower half
    g2[PIXEL, TO, POINT].edge_index = g2[PIXEL, TO, POINT].edge_index[:, keep]
    g2[PIXEL, TO, POINT].edge_attr = g2[PIXEL, TO, POINT].edge_attr[keep]
    a = fu(g2)
    g2[POINT].x = g2[POINT].x * 100
    b = fu(g2)
    assert torch.allclose(b[18:], a[18:]) and not torch.allclose(b[:18], a[:18])


def test_backbone_errors() -> None:
    with pytest.raises(BackboneError, match="divisible"):
        BACKBONES.create("gat", in_channels=3, hidden_channels=10, num_layers=2, heads=4)
    with pytest.raises(BackboneError, match="residual"):
        BACKBONES.create("sage", in_channels=3, hidden_channels=8, num_layers=2, residual=True, jk="cat")
    bb = BACKBONES.create("gat", in_channels=3, hidden_channels=8, num_layers=2, edge_dim=1)
    with pytest.raises(BackboneError, match="edge_dim"):
        bb(torch.randn(4, 3), torch.tensor([[0, 1], [1, 2]]), torch.rand(2, 3))
    with pytest.raises(BackboneError, match=r"\(M, 3\)"):
        bb(torch.randn(4, 2), torch.tensor([[0, 1], [1, 2]]))


def test_classifier_and_regression_heads() -> None:
    x = torch.randn(10, 8)
    assert HEADS.create("classifier", in_dim=8, num_outputs=4)(x, None).shape == (10, 4)
    assert HEADS.create("classifier", in_dim=8, num_outputs=4, hidden=16, dropout=0.1)(x, None).shape == (10, 4)
    reg = HEADS.create("regression", in_dim=8, num_outputs=3, activation="softplus")(x, None)
    assert reg.shape == (10, 3) and (reg >= 0).all()
    with pytest.raises(ValueError, match="activation"):
        HEADS.create("regression", in_dim=8, num_outputs=3, activation="relu6")


def test_point_assignment_head_copies_the_only_neighbour() -> None:
    torch.manual_seed(0)
    g = make_graph(PIXEL, k_img=1)  # every pixel sees exactly its nearest point
    g[POINT].x = g[POINT].x[:, :4]
    head = HEADS.create("point-assignment", in_dim=8, num_outputs=3)
    emb = torch.randn(36, 8, requires_grad=True)
    out = head(emb, g)
    pixel, point = g[PIXEL, TO, POINT].edge_index
    expected = torch.full((36,), -1)
    expected[pixel] = g[POINT].y[point]
    assert torch.equal(out.argmax(1), expected)
    assert torch.allclose(out.exp().sum(1), torch.ones(36), atol=1e-4)
    g3 = make_graph(PIXEL, k=3)
    g3[POINT].x = g3[POINT].x[:, :4]
    out3 = head(emb, g3)
    assert torch.allclose(out3.exp().sum(1), torch.ones(36), atol=1e-4)
    F.nll_loss(out3, torch.randint(0, 3, (36,))).backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0
    del g3[POINT].y
    with pytest.raises(ValueError, match="point labels"):
        head(emb, g3)
