"""Choose the classic baselines' settings on the validation split (never the test split).

    python benchmarks/tune_classic.py [--quick] > tune.json

The validation split is the DataModule's (seed 1000 for seed 0): two 128² fields per rock type,
measured at every benchmarked EDS fraction with identified point labels. Each method's setting
with the best mIoU averaged over the fractions is printed; `fusionseg.baselines` holds them as
defaults.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_accuracy import FRACTIONS, ROCKS  # noqa: E402

from fusionseg.models.metrics import Scores  # noqa: E402

VAL_SEED = 1000  # FusionSegDataModule validation split of seed 0
GRIDS: dict[str, dict[str, list[float]]] = {
    "random-walker": {"beta": [30, 65, 130, 260, 520, 1000]},
    "geodesic": {"edge_weight": [25, 50, 100, 200, 400, 800, 1600, 3200], "sigma_px": [0.5, 1.0, 2.0, 3.0]},
    "fast-global-smoother": {"lam": [1e2, 1e3, 1e4, 1e5], "sigma_color": [1, 2, 4, 8, 16]},
}


def validation_fields(size: int, per_rock: int, fraction: float) -> list:
    from fusionseg.registry import DATA_SOURCES
    from fusionseg.sem.identify import with_identified_point_labels

    source = DATA_SOURCES.create("sem-synthetic", num_fields=per_rock * len(ROCKS), size=size, rocks=ROCKS,
                                 eds_fraction=fraction, seed=VAL_SEED)  # fmt: skip
    return [with_identified_point_labels(source[i]) for i in range(len(source))]


def main(argv: list[str] | None = None) -> dict:
    from fusionseg.baselines import classic_map
    from fusionseg.sem.minerals import class_names

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="64 px fields, one per rock")
    p.add_argument("--methods", nargs="+", default=list(GRIDS))
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    size, per_rock = (64, 1) if a.quick else (128, 2)
    names = class_names()
    fields = {f: validation_fields(size, per_rock, f) for f in FRACTIONS}
    report: dict = {"val_seed": VAL_SEED, "size": size, "fields": per_rock * len(ROCKS), "methods": {}}
    for method in a.methods:
        grid = GRIDS[method]
        rows = []
        for values in itertools.product(*grid.values()):
            settings = dict(zip(grid, values, strict=True))
            start = time.perf_counter()
            miou = {}
            for f, samples in fields.items():
                sc = Scores(len(names))
                for s in samples:
                    pred = classic_map(method, s.image.numpy(), s.point_coords.numpy(), s.point_target.numpy(),
                                       len(names), **settings)  # fmt: skip
                    sc.add(pred, s.target.numpy())
                miou[str(f)] = sc.summary(names)["miou"]
            rows.append({"settings": settings, "miou": miou, "mean_miou": round(float(np.mean(list(miou.values()))), 4),
                         "seconds": round(time.perf_counter() - start, 1)})  # fmt: skip
            print(method, rows[-1], file=sys.stderr, flush=True)
        best = max(rows, key=lambda r: r["mean_miou"])
        report["methods"][method] = {"best": best, "grid": rows}
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
