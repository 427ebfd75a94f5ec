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
from fusionseg.models.prior import feature_device
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


def adapted_mlp(
    module: Any, sample: Sample, settings: FieldAdaptation, points: Tensor | None = None
) -> tuple[nn.Module | None, str]:
    """The refiner MLP of ``module`` (a `FusionSegModule`) fine-tuned to ``sample`` (None when it is not), and why.
    ``points``: (N,) bool, the points it may learn from (default: all)."""
    refiner = module.refiner
    if refiner is None:
        return None, "no refiner to adapt"
    window = central_window(sample, settings.max_px, points)
    labelled = int((window.point_target != IGNORE_INDEX).sum()) if window.point_target is not None else 0
    if labelled < settings.min_points:
        return None, f"{labelled} labelled points < {settings.min_points}: shipped refiner kept"
    examples = held_out_examples(module, window, settings.folds, settings.seed)
    if len(examples) < 2:
        return None, "fine-tuning did not lower the held-out loss (nan): shipped refiner kept"
    # one training: a model per fold left out (the gate's cross-fit), and the last on every fold (the one kept)
    trains = ~np.eye(len(examples) + 1, len(examples), dtype=bool)
    *cross_fitted, tuned = fine_tuned(refiner.mlp, examples, settings, trains)
    gain = cross_fitted_gain(refiner.mlp, cross_fitted, examples)
    if not gain > 0:
        return None, f"fine-tuning did not lower the held-out loss ({gain:+.3f}): shipped refiner kept"
    return tuned, f"refiner fine-tuned on {labelled} points (held-out loss {-gain:+.3f})"


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
        feats = refiner.features(sub, regions, keep=False, device=feature_device(module.device))  # read once
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


def fine_tuned(mlp: nn.Module, examples: Examples, settings: FieldAdaptation, trains: np.ndarray) -> list[nn.Module]:
    """Copies of ``mlp``, one per row of ``trains`` (K, len(examples)) bool, each after ``settings.steps`` Adam
    steps on the examples its row marks, L2-pulled to ``mlp``'s weights.

    The copies train side by side, a group at a time (`torch.func.vmap` over stacked weights): Adam and the loss
    are separate per copy, so each copy ends where training it alone would (up to float rounding), at the Python
    cost of one. Groups are sized so their activations stay under ``ADAPT_BATCH_BYTES``."""
    x, pixel, y, fold = _padded(examples)
    per_copy = x.shape[0] * x.shape[1] * (_width(mlp) + x.shape[2]) * 4 * 6  # activations kept for the backward
    group = max(1, int(ADAPT_BATCH_BYTES // max(per_copy, 1)))
    masks = torch.from_numpy(np.asarray(trains, dtype=bool))[:, fold]  # (K, n): the points each copy trains on
    out: list[nn.Module] = []
    for i in range(0, len(masks), group):
        out += _train_group(mlp, x, pixel, y, masks[i : i + group], settings)
    return out


ADAPT_BATCH_BYTES = 256e6
"""Activation memory one group of side-by-side fine-tuned copies may hold (bytes); more copies train in turns."""


def _width(mlp: nn.Module) -> int:
    return max((m.out_features for m in mlp.modules() if isinstance(m, nn.Linear)), default=1)


def _padded(examples: Examples) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Every fold's examples in one batch: inputs (F, n, D) zero-padded to the most classes any fold found, the pixel
    term (F, n) -inf there (a padded class never scores), class positions (n,) and each point's fold (n,)."""
    classes = max(x.shape[0] for x, _, _ in examples)
    xs, terms = [], []
    for x, p, _ in examples:
        pad = classes - x.shape[0]
        xs.append(F.pad(x, (0, 0, 0, 0, 0, pad)))
        terms.append(F.pad(p, (0, 0, 0, pad), value=float("-inf")))
    fold = torch.cat([torch.full((len(y),), k) for k, (_, _, y) in enumerate(examples)])
    return torch.cat(xs, 1), torch.cat(terms, 1), torch.cat([y for *_, y in examples]), fold


def _train_group(mlp: nn.Module, x: Tensor, pixel: Tensor, y: Tensor, masks: Tensor,
                 settings: FieldAdaptation) -> list[nn.Module]:  # fmt: skip
    """``len(masks)`` copies of ``mlp`` fine-tuned at once, copy k on the points where ``masks[k]`` is True."""
    from torch.func import functional_call, stack_module_state, vmap

    with torch.inference_mode(False), torch.enable_grad():  # predictions run under inference mode
        copies = [copy.deepcopy(mlp) for _ in range(len(masks))]
        params, _ = stack_module_state(copies)
        start = {k: v.detach().clone() for k, v in params.items()}
        x, pixel, y = x.clone(), pixel.clone(), y.clone()  # inference tensors: no backward
        weight = masks.float() / masks.sum(1, keepdim=True).clamp(min=1)  # each copy's mean over its points
        base = copy.deepcopy(mlp).to("meta")

        def scores(p: dict[str, Tensor]) -> Tensor:
            return functional_call(base, p, (x,)).squeeze(-1) + pixel  # (F, n)

        optimiser = torch.optim.Adam(params.values(), lr=settings.lr)
        for _ in range(settings.steps):
            optimiser.zero_grad()
            logits = vmap(scores)(params)  # (K, F, n)
            loss = F.cross_entropy(logits.transpose(1, 2).flatten(0, 1), y.repeat(len(masks)), reduction="none")
            pull = sum(((params[k] - start[k]) ** 2).sum() for k in params)
            ((loss.view(len(masks), -1) * weight).sum() + settings.l2 * pull).backward()
            optimiser.step()
        for i, tuned in enumerate(copies):
            tuned.load_state_dict({k: v[i].detach() for k, v in params.items()})
    return [tuned.eval() for tuned in copies]


@torch.no_grad()
def cross_fitted_gain(mlp: nn.Module, cross_fitted: list[nn.Module], examples: Examples) -> float:
    """Mean over folds of (shipped - fine-tuned-without-that-fold) held-out loss: > 0 when adapting helps.
    ``cross_fitted[k]``: ``mlp`` fine-tuned on every fold but ``examples[k]``."""
    gains = [float(held_out_loss(mlp, [fold]) - held_out_loss(tuned, [fold]))
             for tuned, fold in zip(cross_fitted, examples, strict=True)]  # fmt: skip
    return float(np.mean(gains))
