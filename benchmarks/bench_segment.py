"""Per-field training time of ``fusionseg segment`` (no checkpoint) on a synthetic 1024² granite field.

    .venv/bin/python benchmarks/bench_segment.py [--size 1024] [--threads 1] [--repeats 1]

Prints identify / train / predict seconds, epochs, and mIoU of the map against the simulator's truth.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def main() -> None:
    from fusionseg.demo import field_metrics
    from fusionseg.registry import DATA_SOURCES
    from fusionseg.segment import SegmentConfig, segment_field

    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--mode", default="auto")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    field = DATA_SOURCES.create("sem-synthetic", num_fields=1, size=a.size, rocks=["granite"])[0]
    print(f"simulated {field} in {time.perf_counter() - t0:.1f} s")
    truth, truth_names = field.target, field.meta.class_names
    runs = []
    for seed in range(a.repeats):
        unlabelled = type(field)(**{**vars(field), "point_target": None, "target": None})
        res = segment_field(unlabelled, config=SegmentConfig(seed=seed, progress=False, mode=a.mode))
        index = {n: i for i, n in enumerate(truth_names)}
        mapped = torch.tensor([index.get(n, -1) for n in res.class_names])[res.labels]
        metrics = field_metrics(mapped, truth, len(truth_names)) if res.point_labels.mode == "library" else {}
        runs.append({**res.timings, **res.info, **metrics, "labelling": res.point_labels.counts()})
        print(json.dumps(runs[-1]))
    print("median train_s", statistics.median(r["train_s"] for r in runs))


if __name__ == "__main__":
    main()
