"""Score a model on the validation split, where model designs are chosen (never on the test split).

    python benchmarks/validate_model.py [--ckpt fusionseg/weights/default.ckpt] [--quick]
    python benchmarks/validate_model.py --method nearest-point     # a classic fill on the same fields
    python benchmarks/validate_model.py --mineral-shuffle 1        # every field's minerals swapped (same textures)

The validation split of `tune_classic.py` (seed 1000, two 128² fields per rock type, identified
point labels) at every benchmarked EDS fraction, simulated twice: at the simulator's BSE noise and
at 0.2x it (close to a real detector's: the Repka et al. field's noise is ~0.011, the simulator's
0.035-0.06). Prints mIoU / pixel accuracy per (noise, fraction) and their mean mIoU as JSON. With ``--large``,
also a large-field cell (one 512² field per rock type, seed VAL_SEED + 500, 0.1 % and 1 %, the simulator's noise),
reported beside the mean, not in it (the mean stays comparable with the design history's).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_accuracy import CLASSIC, FRACTIONS, baseline_map, held_out_fields  # noqa: E402
from tune_classic import VAL_SEED  # noqa: E402

NOISE_SCALES = (1.0, 0.2)  # x the simulator's BSE noise
LARGE_FRACTIONS = (0.001, 0.01)  # the large-field cell's EDS fractions


def validate(
    ckpt: Path | None,
    size: int = 128,
    per_rock: int = 2,
    method: str | None = None,
    mineral_shuffle: float = 0.0,
    large: int = 0,
    sampler: str = "random",
) -> dict:
    """Scores of the checkpoint ``ckpt``, or of the classic ``method`` (one of ``CLASSIC``) when given;
    ``mineral_shuffle``: that share of the fields with other minerals on the same texture (the simulator's
    ``mineral_shuffle``: assemblages no rock recipe has, as on a real section). ``large``: the side (px) of the
    large-field cell's fields (0: none). ``sampler``: where the points are placed (``superpixel``: image-guided)."""
    from fusionseg.models.module import FusionSegModule

    model = None if method else FusionSegModule.load_from_checkpoint(ckpt, map_location="cpu").eval()
    out = {}
    for noise in NOISE_SCALES:
        for f in FRACTIONS:
            fields = held_out_fields(size, per_rock, f, VAL_SEED, sampler, bse_noise_scale=noise,
                                     mineral_shuffle=mineral_shuffle)[0]  # fmt: skip
            out[f"noise {noise} / {f}"] = _cell(model, method, fields)
    mean = round(float(np.mean([v["miou"] for v in out.values()])), 4)
    report = {"ckpt": None if method else str(ckpt), "method": method, "mineral_shuffle": mineral_shuffle,
              "sampler": sampler, "results": out, "mean_miou": mean}  # fmt: skip
    if large:
        report["large_field"] = {f"{large} px / {f}": _cell(model, method, held_out_fields(
            large, 1, f, VAL_SEED + 500, mineral_shuffle=mineral_shuffle)[0]) for f in LARGE_FRACTIONS}  # fmt: skip
    return report


def _cell(model: object, method: str | None, samples: list) -> dict:
    """mIoU and pixel accuracy of the model (or the classic ``method``) over ``samples``, identified point labels."""
    from fusionseg.models.metrics import Scores
    from fusionseg.sem.identify import with_identified_point_labels
    from fusionseg.sem.minerals import class_names

    names = class_names()
    scores = Scores(len(names))
    for s in samples:
        sample = with_identified_point_labels(s)
        if method:
            pred = baseline_map(method, sample, sample.point_target.numpy())
        else:
            pred = model.predict_samples([sample])[0]["labels"].numpy()
        scores.add(pred, sample.target.numpy())
    summary = scores.summary(names)
    return {"miou": round(summary["miou"], 4), "pixel_acc": round(summary["pixel_acc"], 4)}


def main(argv: list[str] | None = None) -> dict:
    from fusionseg.paths import DEFAULT_WEIGHTS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", type=Path, default=DEFAULT_WEIGHTS)
    p.add_argument("--method", choices=CLASSIC, help="score this classic fill instead of a checkpoint")
    p.add_argument("--quick", action="store_true", help="64 px fields, one per rock")
    p.add_argument("--mineral-shuffle", type=float, default=0.0, help="share of fields with swapped minerals")
    p.add_argument("--large", type=int, default=0, metavar="PX", help="add the large-field cell (512: PX² fields)")
    p.add_argument("--sampler", default="random", help="point placement of the validation fields (e.g. superpixel)")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    result = validate(a.ckpt, *((64, 1) if a.quick else (128, 2)), method=a.method, mineral_shuffle=a.mineral_shuffle,
                      large=a.large, sampler=a.sampler)  # fmt: skip
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
