"""Adaptive acquisition: mIoU of the shipped model against the EDS budget for each planner strategy.

    python benchmarks/bench_acquisition.py STRATEGIES BUDGETS [SEED]
    python benchmarks/bench_acquisition.py random,uncertainty 0.002,0.003,0.01 1000   # validation split
    python benchmarks/bench_acquisition.py plan-time     # seconds per planning step at 1024^2 and 2048^2

Twelve 128^2 synthetic fields (two per rock type) of the split with base seed SEED (1000: validation, 2000: the
accuracy benchmark's test split); each strategy runs the planner loop to the budget in six batches, spectra
drawn by the simulator only where asked; the final map is scored (split-wide mIoU, pixel accuracy).
Prints one JSON line per (strategy, budget). ``plan-time``: a 0.3 % budget in 0.05 % batches on a simulated
granite field, the map's confidence drawn at random (the planner's own time, not the model's); the first
adaptive batch also builds the BSE regions once. Work in progress for issue 28 (no README table yet).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch

ROCKS = ["granite", "basalt", "sulfide-ore", "carbonate", "sandstone", "grain-mount"]


def score(strategy: str, budget: float, source, model) -> dict:
    """Split-wide scores of the final maps of ``strategy`` at ``budget`` over every field of ``source``."""
    from fusionseg.acquisition import Planner, run_acquisition
    from fusionseg.models.metrics import Scores
    from fusionseg.sem.acquire import model_segmenter
    from fusionseg.sem.minerals import class_names

    scores, start = Scores(len(class_names())), time.perf_counter()
    for i in range(len(source)):
        fld = source.field(i)
        rng = np.random.default_rng([source.seed, i, 99])  # the simulator's counting noise
        meta = fld.to_sample(np.zeros((1, 2))).meta
        planner = Planner(fld.bse, budget=budget, batch_size=budget / 6, strategy=strategy,
                          segmenter=model_segmenter(model), meta=meta, seed=i)  # fmt: skip
        states = run_acquisition(planner, lambda c, fld=fld, rng=rng: fld.spectra_at(c, rng))
        scores.add(states[-1].labels, fld.labels)
    s = scores.summary(class_names())
    return {"strategy": strategy, "budget": budget, "miou": s["miou"], "pixel_acc": s["pixel_acc"],
            "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip


def plan_time(sizes: tuple[int, ...] = (1024, 2048), steps: int = 3) -> None:
    """Seconds of `Planner.propose` per strategy and field size: the region build and the median later step."""
    from fusionseg.acquisition import Planner
    from fusionseg.sem.data.synthetic.field import simulate_field

    torch.set_num_threads(2)
    for n in sizes:
        bse = simulate_field("granite", n, seed=0).bse
        conf = np.random.default_rng(0).uniform(0.3, 1.0, (n, n)).astype(np.float32)
        for strategy in ("uncertainty", "unmeasured-regions", "hybrid"):
            planner = Planner(bse, budget=0.003, batch_size=0.0005, strategy=strategy,
                              segmenter=lambda s, n=n, conf=conf: (np.zeros((n, n), np.int64), conf))  # fmt: skip
            seconds = []
            for _ in range(steps + 2):  # first batch: no map yet; second: regions built (uncertainty)
                start = time.perf_counter()
                coords = planner.propose()
                seconds.append(time.perf_counter() - start)
                planner.add(coords, np.ones((len(coords), 1)))
                planner.update()
            record = {"size": n, "strategy": strategy, "first_batches_s": [round(x, 2) for x in seconds[:2]],
                      "median_later_step_s": round(float(np.median(seconds[2:])), 3)}  # fmt: skip
            print(json.dumps(record), flush=True)


def main(argv: list[str]) -> None:
    from fusionseg.pretrain import load_weights, shipped_weights_path
    from fusionseg.registry import DATA_SOURCES

    if argv[:1] == ["plan-time"]:
        return plan_time()
    torch.set_num_threads(1)
    strategies, budgets = argv[0].split(","), [float(b) for b in argv[1].split(",")]
    seed = int(argv[2]) if len(argv) > 2 else 1000
    model = load_weights(shipped_weights_path("default"))
    source = DATA_SOURCES.create("sem-synthetic", num_fields=12, size=128, rocks=ROCKS, eds_fraction=0.01, seed=seed)
    for strategy in strategies:
        for budget in budgets:
            print(json.dumps(score(strategy, budget, source, model)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
