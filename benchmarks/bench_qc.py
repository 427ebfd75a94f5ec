"""QC of ``fusionseg segment``'s default path (shipped weights) on the accuracy benchmark's held-out split.

    python benchmarks/bench_qc.py [--fraction 0.01] [--threads 1]

For each of the 12 held-out synthetic fields (`bench_accuracy.test_samples`, full protocol) measured
at ``--fraction``, runs `segment_field` with the shipped weights as ``fusionseg segment`` does and
prints, per field, the share of confidently identified points the final map agrees with (measured
points honoured), the model's own agreement before honouring, the held-out check (10 % of the points
withheld from the prediction) and the unclassified share. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> dict:
    from benchmarks.bench_accuracy import FULL, test_samples
    from fusionseg.pretrain import DEFAULT_WEIGHTS
    from fusionseg.sem.segment import SegmentConfig, segment_field

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fraction", type=float, default=0.01)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    samples, _ = test_samples(FULL, a.fraction)
    config = SegmentConfig(progress=False, fallback_per_field=True)
    fields = []
    for s in samples:
        r = segment_field(replace(s, point_target=None, target=None), DEFAULT_WEIGHTS, config)
        qc = r.qc
        fields.append({
            "field": s.meta.name, "mode": r.mode, "identified_points": qc["points_identified"],
            "agreement": qc["agreement"]["share"], "agreement_model": qc["agreement_model"]["share"],
            "held_out": qc["held_out"]["share"], "held_out_points": qc["held_out"].get("points"),
            "unclassified_share": qc["unclassified_share"], "warnings": qc["warnings"],
        })  # fmt: skip
        print(json.dumps(fields[-1]), file=sys.stderr)
    result = {
        "fraction": a.fraction,
        "min_agreement": min(f["agreement"] for f in fields),
        "mean_agreement_model": round(sum(f["agreement_model"] for f in fields) / len(fields), 4),
        "fields": fields,
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
