"""Score a model on the validation split, where model designs are chosen (never on the test split).

    python benchmarks/validate_model.py [--ckpt fusionseg/weights/default.ckpt] [--quick]
    python benchmarks/validate_model.py --method nearest-point     # a classic fill on the same fields
    python benchmarks/validate_model.py --mineral-shuffle 1        # every field's minerals swapped (same textures)

The validation split of `tune_classic.py` (seed 1000, two 128² fields per rock type, identified
point labels) at every benchmarked EDS fraction, simulated twice: at the simulator's BSE noise and
at 0.2x it (close to a real detector's: the Repka et al. field's noise is ~0.011, the simulator's
0.035-0.06). Prints mIoU / pixel accuracy per (noise, fraction) and their mean mIoU as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_accuracy import CLASSIC, FRACTIONS, ROCKS, baseline_map  # noqa: E402
from tune_classic import VAL_SEED  # noqa: E402

NOISE_SCALES = (1.0, 0.2)  # x the simulator's BSE noise


def validate(
    ckpt: Path | None, size: int = 128, per_rock: int = 2, method: str | None = None, mineral_shuffle: float = 0.0
) -> dict:
    """Scores of the checkpoint ``ckpt``, or of the classic ``method`` (one of ``CLASSIC``) when given;
    ``mineral_shuffle``: that share of the fields with other minerals on the same texture (the simulator's
    ``mineral_shuffle``: assemblages no rock recipe has, as on a real section)."""
    from fusionseg.models.metrics import Scores
    from fusionseg.models.module import FusionSegModule
    from fusionseg.registry import DATA_SOURCES
    from fusionseg.sem.identify import with_identified_point_labels
    from fusionseg.sem.minerals import class_names

    names = class_names()
    model = None if method else FusionSegModule.load_from_checkpoint(ckpt, map_location="cpu").eval()
    out = {}
    for noise in NOISE_SCALES:
        for f in FRACTIONS:
            source = DATA_SOURCES.create("sem-synthetic", num_fields=per_rock * len(ROCKS), size=size, rocks=ROCKS,
                                         eds_fraction=f, seed=VAL_SEED, bse_noise_scale=noise,
                                         mineral_shuffle=mineral_shuffle)  # fmt: skip
            scores = Scores(len(names))
            for i in range(len(source)):
                sample = with_identified_point_labels(source[i])
                if method:
                    pred = baseline_map(method, sample, sample.point_target.numpy())
                else:
                    pred = model.predict_samples([sample])[0]["labels"].numpy()
                scores.add(pred, sample.target.numpy())
            summary = scores.summary(names)
            out[f"noise {noise} / {f}"] = {
                "miou": round(summary["miou"], 4),
                "pixel_acc": round(summary["pixel_acc"], 4),
            }
    mean = round(float(np.mean([v["miou"] for v in out.values()])), 4)
    return {"ckpt": None if method else str(ckpt), "method": method, "mineral_shuffle": mineral_shuffle, "results": out,
            "mean_miou": mean}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    from fusionseg.paths import DEFAULT_WEIGHTS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", type=Path, default=DEFAULT_WEIGHTS)
    p.add_argument("--method", choices=CLASSIC, help="score this classic fill instead of a checkpoint")
    p.add_argument("--quick", action="store_true", help="64 px fields, one per rock")
    p.add_argument("--mineral-shuffle", type=float, default=0.0, help="share of fields with swapped minerals")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    result = validate(a.ckpt, *((64, 1) if a.quick else (128, 2)), method=a.method, mineral_shuffle=a.mineral_shuffle)
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
