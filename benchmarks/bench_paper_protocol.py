"""The paper's protocol on the real-geometry field: a model trained on the field's own points, predicting the rest.

    python benchmarks/bench_paper_protocol.py [--draws 5] [--steps 200] [--fraction 0.05] [--threads 2]

Repka et al. (2025) train their GAT on the labelled 5 % of the pixels of their tile and predict the whole tile
(transductive); they report 0.94 pixel accuracy. Here the same tile's geometry is used as in the accuracy
benchmark's ``repka2025`` case (their BSE image and phase map; spectra *simulated* at the points from the phase map,
each phase mapped to a library mineral, where theirs are measured), over ``draws`` point sets. Rows:

- ``paper_gat-transductive``: the paper's GAT architecture (the shipped ``paper_gat`` hyper-parameters, weights
  re-initialised) trained on the field alone by ``configs/paper_gat.yaml``'s optimizer;
- ``default-transductive``: the shipped default weights fine-tuned the same way (its config's optimizer);
- each shipped model as it is (inductive: trained on other fields), and the classic fills, for reference.

A training step shows the model the field with a random 75 % of its points and scores it on the pixels of the
other 25 % (a model that saw a point's label among its inputs would learn to copy it); the map is then predicted
with every point. Point labels are the identified ones (each spectrum's library match), as in the accuracy run.
Prints one JSON document: pixel accuracy and mIoU per row, mean and per draw, and the seconds each row took.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_accuracy import CLASSIC, REPKA, ROOT, baseline_map, predict_map, repka_samples  # noqa: E402

PAPER_PIXEL_ACCURACY = 0.94  # Repka et al. (2025), their demo tile at 5 %
QUERY_SHARE = 0.25  # share of the field's points hidden and scored at each step


def optimizer_of(config: str, params: object) -> torch.optim.Optimizer:
    """The optimizer a config names (``model.optimizer``: class_path and init_args) over ``params``."""
    from fusionseg.registry import import_class_path

    spec = yaml.safe_load((ROOT / "configs" / f"{config}.yaml").read_text())["model"]["optimizer"]
    return import_class_path(spec["class_path"], "optimizer")(params, **spec.get("init_args", {}))


def hide_and_score(sample: object, rng: np.random.Generator) -> object:
    """``sample`` with a random `QUERY_SHARE` of its points removed and its target the labels of those points'
    pixels only (everything else ignored): one transductive training step's view of the field."""
    from fusionseg.baselines import point_pixels
    from fusionseg.sample import IGNORE_INDEX

    rows, cols = point_pixels(sample.point_coords.numpy(), (sample.height, sample.width))
    query = rng.random(len(rows)) < QUERY_SHARE
    target = torch.full((sample.height, sample.width), IGNORE_INDEX, dtype=torch.long)
    target[rows[query], cols[query]] = sample.point_target[torch.from_numpy(query)]
    shown = torch.from_numpy(~query)
    return replace(sample, point_coords=sample.point_coords[shown], point_features=sample.point_features[shown],
                   point_target=sample.point_target[shown], target=target)  # fmt: skip


def fit_on_field(model: object, config: str, sample: object, steps: int, seed: int) -> object:
    """``model`` after ``steps`` optimizer steps on ``sample`` alone (`hide_and_score`, identified labels),
    returned in eval mode."""
    rng = np.random.default_rng(seed)
    optimizer = optimizer_of(config, model.parameters())
    model.field_adaptation = None  # the whole model learns the field here
    model.train()
    for _ in range(steps):
        loss, _, _ = model._loss([hide_and_score(sample, rng)])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def reinitialised(model: object) -> object:
    """``model`` with every learned layer drawn afresh (fitted encoder statistics kept): trained from scratch."""
    for module in model.modules():
        if module is not model and callable(getattr(module, "reset_parameters", None)):
            module.reset_parameters()
    return model


def scores(pred: np.ndarray, truth: np.ndarray) -> dict:
    from fusionseg.models.metrics import Scores
    from fusionseg.sem.minerals import class_names

    sc = Scores(len(class_names()))
    sc.add(pred, truth)
    summary = sc.summary(class_names())
    return {"pixel_acc": round(summary["pixel_acc"], 4), "miou": round(summary["miou"], 4)}


def run(fraction: float, draws: int, steps: int) -> dict:
    from fusionseg.pretrain import load_weights, shipped_weights_path
    from fusionseg.sem.identify import with_identified_point_labels

    samples = [with_identified_point_labels(s) for s in repka_samples((fraction,), draws)[0][fraction]]
    rows: dict[str, list[dict]] = {}
    seconds: dict[str, float] = {}

    def record(name: str, make_map: object) -> None:
        start = time.perf_counter()
        rows[name] = [scores(make_map(i, s), s.target.numpy()) for i, s in enumerate(samples)]
        seconds[name] = round(time.perf_counter() - start, 1)
        print(f"[paper protocol] {name}: {rows[name]}", file=sys.stderr, flush=True)

    for method in CLASSIC:
        record(method, lambda i, s, m=method: baseline_map(m, s, s.point_target.numpy()))
    for config in ("default", "paper_gat"):
        path = shipped_weights_path(config)
        record(f"{config}-shipped", lambda i, s, p=path: predict_map(load_weights(p), s))

        def transductive(i: int, s: object, c: str = config, p: Path = path) -> np.ndarray:
            model = load_weights(p)
            model = reinitialised(model) if c == "paper_gat" else model
            with torch.inference_mode(False), torch.enable_grad():
                fitted = fit_on_field(model, c, s, steps, seed=i)
            return predict_map(fitted, s)

        record(f"{config}-transductive", transductive)
    summary = {name: {k: round(float(np.mean([r[k] for r in per])), 4) for k in ("pixel_acc", "miou")}
               for name, per in rows.items()}  # fmt: skip
    return {"fraction": fraction, "draws": draws, "steps": steps, "query_share": QUERY_SHARE,
            "paper_pixel_accuracy": PAPER_PIXEL_ACCURACY, "mean": summary, "per_draw": rows,
            "seconds": seconds}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fraction", type=float, default=0.05)
    p.add_argument("--draws", type=int, default=5, help="point sets on the field (scores averaged)")
    p.add_argument("--steps", type=int, default=200, help="optimizer steps on the field per draw")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    if not REPKA.exists():
        raise SystemExit(f"the real-geometry field is not here: {REPKA} (../shared/data/real/repka2025).")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    report = run(a.fraction, a.draws, a.steps)
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
