"""The learned propagation stage: class probabilities diffused over the region graph, points re-inserted."""

from __future__ import annotations

import pytest
import torch

from fusionseg.models.learned_propagation import EDGE_FEATURES, LearnedDiffusion
from fusionseg.models.prior import PriorRefiner, classic_features
from fusionseg.registry import PROPAGATIONS
from fusionseg.sample import Sample
from tests.test_prior import pixel_graph, two_regions


def chain(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Edges (2, n-1) of a chain of n regions and zero edge features."""
    edges = torch.stack([torch.arange(n - 1), torch.arange(1, n)])
    return edges, torch.zeros(n - 1, len(EDGE_FEATURES))


def test_points_flow_out_along_the_graph_and_stay_where_measured() -> None:
    """Two seeds at the ends of a chain, no opinion in between: each end's class wins on its own half."""
    torch.manual_seed(0)
    diffusion = LearnedDiffusion(steps=20)
    with torch.no_grad():
        diffusion.keep_gate.bias.fill_(-8.0)  # keep almost nothing of the (flat) start: pure diffusion
    edges, feats = chain(9)
    seeds = torch.zeros(2, 9)
    seeds[0, 0] = seeds[1, 8] = 1.0
    out = diffusion(torch.zeros(2, 9), edges, feats, torch.full((9, 3), 1 / 3), seeds)
    assert out.argmax(0)[:4].eq(0).all() and out.argmax(0)[5:].eq(1).all()
    assert out[0, 0] - out[1, 0] > 6  # the seeded region is its point's class: 0.5 x (log 1 - log 1e-6)


def test_a_strong_edge_stops_what_a_weak_one_lets_through() -> None:
    """An affinity learned from the image contrast: with it, a seed's class does not cross the contrast edge."""
    diffusion = LearnedDiffusion(steps=30, hidden_channels=2)
    with torch.no_grad():  # affinity = softplus(10 - 20 * contrast): ~10 on flat boundaries, ~0 across a step
        for p in diffusion.edge_mlp.parameters():
            p.zero_()
        diffusion.edge_mlp[0].weight[0, 0] = 1.0
        diffusion.edge_mlp[2].weight[0, 0] = -20.0
        diffusion.edge_mlp[2].bias.fill_(10.0)
        diffusion.keep_gate.bias.fill_(-8.0)
    edges, feats = chain(8)
    feats[3, 0] = 5.0  # a step between regions 3 and 4
    seeds = torch.zeros(2, 8)
    seeds[0, 0] = seeds[1, 7] = 1.0
    scores = torch.zeros(2, 8)
    scores[1, 1:7] = 0.3  # the refiner leans to class 1 everywhere; region 1..3 are joined to class 0's seed
    out = diffusion(scores, edges, feats, torch.full((8, 2), 0.5), seeds)
    assert out.argmax(0).tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


def test_one_class_or_no_edges_leave_the_scores_as_they_are() -> None:
    diffusion = LearnedDiffusion()
    edges, feats = chain(5)
    scores = torch.randn(1, 5)
    assert torch.equal(diffusion(scores, edges, feats, torch.ones(5, 1), torch.zeros(1, 5)), scores)
    scores = torch.randn(3, 5)
    empty = torch.zeros(2, 0, dtype=torch.long)
    assert torch.equal(diffusion(scores, empty, feats[:0], torch.ones(5, 3) / 3, torch.zeros(3, 5)), scores)


def test_registry_and_bad_settings() -> None:
    assert PROPAGATIONS.get("diffusion") is LearnedDiffusion
    with pytest.raises(ValueError, match="steps"):
        LearnedDiffusion(steps=0)
    with pytest.raises(ValueError, match="initial_mix"):
        LearnedDiffusion(initial_mix=0.0)


def test_refiner_with_propagation_trains_end_to_end_and_predicts_its_forward() -> None:
    """In the refiner: gradients reach the affinities, the network and the MLP; `predict` equals `forward`."""
    image, coords, labels = two_regions()
    assert classic_features(image, coords, labels).edges is None  # only when a propagation reads them
    feats = classic_features(image, coords, labels, with_edges=True)
    assert feats.edge_features.shape == (feats.edges.shape[1], len(EDGE_FEATURES))
    assert torch.isfinite(torch.from_numpy(feats.edge_features)).all()
    assert feats.seed_share.shape == (2, 32 * 32) and feats.seed_share.sum() == 2  # two labelled points
    sample = Sample(image=torch.from_numpy(image), point_coords=torch.from_numpy(coords).float(),
                    point_features=torch.ones(3, 4), point_target=torch.from_numpy(labels))  # fmt: skip
    refiner = PriorRefiner(hidden_channels=8, num_layers=2, propagation="diffusion", propagation_kwargs={"steps": 4})
    logits = torch.zeros(32 * 32, 9, requires_grad=True)
    graph = pixel_graph(32 * 32)
    out = refiner(logits, graph, [sample])
    out[:, 2].sum().backward()
    assert logits.grad.abs().sum() > 0
    assert refiner.propagation.edge_mlp[0].weight.grad.abs().sum() > 0
    assert refiner.propagation.mix.grad is not None
    refiner.eval()
    with torch.no_grad():
        expected = refiner(logits, graph, [sample]).softmax(-1)
        labels_, conf = refiner.predict(logits, graph, [sample], only_found=False)[0]
    assert torch.equal(labels_.flatten(), expected.argmax(-1))
    assert torch.allclose(conf.flatten(), expected.max(-1).values, atol=1e-5)
