"""The fast paths (convolutional grid backbone, dense k-nearest-point attention, library encoder)."""

import pytest
import torch
from torch_geometric.data import Batch

from fusionseg.models.fusion import PointAttention
from fusionseg.models.grid_cnn import GridCNN, GridLayoutError
from fusionseg.registry import DATA_SOURCES, GRAPH_BUILDERS, POINT_ENCODERS


@pytest.fixture(scope="module")
def samples():
    src = DATA_SOURCES.create("sem-synthetic", num_fields=3, size=40, rocks=["granite", "basalt"], eds_fraction=0.02)
    return [src[i] for i in range(3)]


def test_grid_cnn_is_per_field_and_batch_independent(samples):
    torch.manual_seed(0)
    net = GridCNN(1, 8, num_layers=2, dilations=(1, 2)).eval()
    builder = GRAPH_BUILDERS.create("grid")
    graphs = [builder(s) for s in samples]
    batch = Batch.from_data_list(graphs)
    together = net.forward_grid(batch["pixel"].x, batch)
    alone = torch.cat([net.forward_grid(g["pixel"].x, g) for g in graphs])
    assert together.shape == (3 * 40 * 40, 8)
    assert torch.allclose(
        together, alone, rtol=1e-4, atol=1e-3
    )  # oneDNN picks per-shape kernels: fp32 rounding differs
    # Equals running the convolution on the image itself (row-major pixel order).
    image = samples[0].image[None]
    assert torch.allclose(alone[: 40 * 40], net.forward_image(image)[0].reshape(8, -1).T, rtol=1e-4, atol=1e-3)


def test_grid_cnn_refuses_a_strided_grid(samples):
    g = GRAPH_BUILDERS.create("grid", stride=2)(samples[0])
    with pytest.raises(GridLayoutError, match="stride 1"):
        GridCNN(1, 8).forward_grid(g["pixel"].x, g)


def test_dense_and_scatter_attention_agree(monkeypatch):
    torch.manual_seed(0)
    att = PointAttention(hidden=8, heads=2, distance_dim=4)
    m, n, k = 30, 7, 3
    h_img, h_pt = torch.randn(m, 8), torch.randn(n, 8)
    dst = torch.arange(m).repeat_interleave(k)
    src = torch.randint(0, n, (m * k,))
    enc = torch.rand(m * k) * 10  # distances in pixels
    monkeypatch.setattr(PointAttention, "chunk", 7)  # several chunks, the last one partial
    dense = att(h_pt, h_img, torch.stack([src, dst]), enc)  # regular: k edges per node, in order
    perm = torch.randperm(m * k)  # same edges shuffled: forces the scatter path
    scattered = att(h_pt, h_img, torch.stack([src[perm], dst[perm]]), enc[perm])
    assert torch.allclose(dense, scattered, atol=1e-5)


def test_library_posterior_identifies_simulated_minerals(samples):
    s = samples[1]
    enc = POINT_ENCODERS.create("library-posterior", energy_axis=s.meta.domain.energy_axis)
    feats = enc(s.point_features)
    assert feats.shape == (s.num_points, len(s.meta.class_names) + 2)
    posterior = feats[:, :-2]
    assert torch.allclose(posterior.sum(1), torch.ones(s.num_points), atol=1e-4)
    has_spectrum = s.point_features.sum(1) > 0
    pore = s.meta.class_names.index("pore")
    measured = has_spectrum & (s.point_target != pore)
    accuracy = (posterior.argmax(1)[measured] == s.point_target[measured]).float().mean()
    assert accuracy > 0.9
