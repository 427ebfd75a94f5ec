"""Per-field adaptation: fine-tune the refiner's MLP on the field's own measured points before mapping it.

The shipped refiner learned how far to trust each classic fill on simulated fields; a real instrument's
field (cleaner image, finer grains) wants other weights. Each field carries its own answer key: its
labelled points. Cross-fitting makes them training examples without leaking: the points are split into
folds, and for each fold the network and the classic features are computed from the *other* points, so
a held-out point is scored exactly as an unmeasured pixel is at prediction time. The MLP is then
fine-tuned on those examples, pulled towards the shipped weights by an L2 penalty, and kept only when a
second cross-fit (fine-tune on all folds but one, score the one left) shows it lowers the held-out loss.

Settings were chosen on the validation split (`benchmarks/validate_model.py`, seed-1000 fields), never on
the benchmark's test fields: below ~50 labelled points (0.1 % of a 128² field) adaptation overfits.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusionseg.baselines import point_pixels
from fusionseg.inference import central_window
from fusionseg.sample import IGNORE_INDEX, Sample

Examples = list[tuple[Tensor, Tensor, Tensor]]
"""Per fold: MLP inputs (F, n, len(FEATURES) + 1) of its held-out points, the refiner's pixel term there (F, n),
and each point's class position among the fold's found classes (n,)."""


@dataclass(frozen=True)
class FieldAdaptation:
    """How a field's points fine-tune the refiner (see the module docstring).

    folds: cross-fitting folds (each held out once); steps / lr: Adam steps and learning rate of the
    fine-tuning; l2: weight of the squared distance to the shipped weights; min_points: fewer labelled
    points leave the shipped weights alone; max_px: examples come from a central window at most this
    many pixels on a side (bounds the cost on large fields: folds x one classic-feature pass); seed:
    the fold split.
    """

    folds: int = 4
    steps: int = 100
    lr: float = 3e-3
    l2: float = 0.01
    min_points: int = 50
    max_px: int = 384
    seed: int = 0


def adapted_mlp(module: Any, sample: Sample, settings: FieldAdaptation) -> tuple[nn.Module | None, str]:
    """The refiner MLP of ``module`` (a `FusionSegModule`) fine-tuned to ``sample`` (None when it is not), and why."""
    refiner = module.refiner
    if refiner is None:
        return None, "no refiner to adapt"
    window = central_window(sample, settings.max_px)
    labelled = int((window.point_target != IGNORE_INDEX).sum()) if window.point_target is not None else 0
    if labelled < settings.min_points:
        return None, f"{labelled} labelled points < {settings.min_points}: shipped refiner kept"
    examples = held_out_examples(module, window, settings.folds, settings.seed)
    gain = cross_fitted_gain(refiner.mlp, examples, settings)
    if not gain > 0:
        return None, f"fine-tuning did not lower the held-out loss ({gain:+.3f}): shipped refiner kept"
    how = f"refiner fine-tuned on {labelled} points (held-out loss {-gain:+.3f})"
    return fine_tune(refiner.mlp, examples, settings), how


@torch.no_grad()
def held_out_examples(module: Any, sample: Sample, folds: int, seed: int) -> Examples:
    """Refiner inputs at each fold's labelled points, computed from the other folds' points only."""
    refiner = module.refiner
    labels = sample.point_target.numpy()
    coords = sample.point_coords.numpy()
    labelled = np.flatnonzero(labels != IGNORE_INDEX)
    fold = np.random.default_rng(seed).permutation(len(labelled)) % folds
    examples: Examples = []
    for k in range(folds):
        held = labelled[fold == k]
        rest = np.setdiff1d(np.arange(len(labels)), held)
        sub = Sample(image=sample.image, point_coords=sample.point_coords[rest], meta=sample.meta,
                     point_features=sample.point_features[rest], point_target=sample.point_target[rest])  # fmt: skip
        graph = module.build_graphs([sub.to(module.device)])
        nodes, regions = refiner.regions(graph, slice(0, sample.height * sample.width), sub)
        region_logits = module(graph)[nodes.to(module.device)].cpu()
        feats = refiner.features(sub, regions)
        rows, cols = point_pixels(coords[held], (sample.height, sample.width))
        pixel = rows * sample.width + cols
        position = np.searchsorted(feats.found, labels[held])
        ok = position < len(feats.found)
        ok[ok] = feats.found[position[ok]] == labels[held][ok]  # a phase only the held-out fold saw cannot be named
        if not ok.any():
            continue
        pixel, position = pixel[ok], position[ok]
        x = refiner.region_inputs(region_logits, feats)[:, torch.from_numpy(feats.regions[pixel])]
        examples.append((x, refiner.pixel_term(feats, pixel, x), torch.from_numpy(position)))
    return examples


def held_out_loss(mlp: nn.Module, examples: Examples) -> Tensor:
    """Mean cross-entropy of the refiner's class scores (the MLP's plus the fixed pixel term) at the held-out points."""
    total = sum(F.cross_entropy((mlp(x).squeeze(-1) + p).T, y, reduction="sum") for x, p, y in examples)
    return total / max(1, sum(len(y) for *_, y in examples))


def fine_tune(mlp: nn.Module, examples: Examples, settings: FieldAdaptation) -> nn.Module:
    """A copy of ``mlp`` after ``settings.steps`` Adam steps on the examples, L2-pulled to ``mlp``'s weights."""
    with torch.inference_mode(False), torch.enable_grad():  # predictions run under inference mode
        tuned = copy.deepcopy(mlp)
        start = [p.detach().clone() for p in tuned.parameters()]
        examples = [(x.clone(), p.clone(), y.clone()) for x, p, y in examples]  # inference tensors: no backward
        optimiser = torch.optim.Adam(tuned.parameters(), lr=settings.lr)
        for _ in range(settings.steps):
            optimiser.zero_grad()
            pull = sum(((p - p0) ** 2).sum() for p, p0 in zip(tuned.parameters(), start, strict=True))
            (held_out_loss(tuned, examples) + settings.l2 * pull).backward()
            optimiser.step()
    return tuned.eval()


@torch.no_grad()
def cross_fitted_gain(mlp: nn.Module, examples: Examples, settings: FieldAdaptation) -> float:
    """Mean over folds of (shipped - fine-tuned-without-that-fold) held-out loss: > 0 when adapting helps."""
    if len(examples) < 2:
        return float("nan")
    gains = []
    for k, fold in enumerate(examples):
        tuned = fine_tune(mlp, examples[:k] + examples[k + 1 :], settings)
        gains.append(float(held_out_loss(mlp, [fold]) - held_out_loss(tuned, [fold])))
    return float(np.mean(gains))
