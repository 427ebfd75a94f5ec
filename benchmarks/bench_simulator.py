"""Speed of the built-in SEM simulator: one 1024² field with label map and 1 % EDS spectra, one core.

Run: ``python benchmarks/bench_simulator.py [--size 1024] [--repeats 5]``; prints JSON with median
seconds for the field (phase map + BSE), the spectra at the sampled points, the whole ``src[i]``
(including `Sample` validation), and the 1 s target. Threads are pinned to 1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from fusionseg.sem.data.synthetic import SyntheticSEMSource  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rock", default="granite")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    src = SyntheticSEMSource(num_fields=args.repeats + 1, size=args.size, rocks=(args.rock,), eds_fraction=0.01)
    src[0]  # warm-up: expected spectra and sampling tables are computed once per calibration
    t_field, t_spec, t_item = [], [], []
    for i in range(1, args.repeats + 1):
        a = time.perf_counter()
        fld = src.field(i)
        b = time.perf_counter()
        rng = np.random.default_rng(i)
        coords = src.sampler(args.size, args.size, src.n_points, rng)
        fld.spectra_at(coords, rng)
        c = time.perf_counter()
        src[i]
        d = time.perf_counter()
        t_field.append(b - a)
        t_spec.append(c - b)
        t_item.append(d - c)
    field_plus_spectra = statistics.median(f + s for f, s in zip(t_field, t_spec, strict=True))
    result = {
        "benchmark": "simulator",
        "rock": args.rock,
        "size": args.size,
        "eds_fraction": 0.01,
        "n_points": src.n_points,
        "threads": 1,
        "repeats": args.repeats,
        "median_field_s": round(statistics.median(t_field), 4),
        "median_spectra_s": round(statistics.median(t_spec), 4),
        "median_field_plus_spectra_s": round(field_plus_spectra, 4),
        "median_sample_s": round(statistics.median(t_item), 4),
        "target_s": 1.0,
        "meets_target": field_plus_spectra <= 1.0,
        "machine": platform.processor() or platform.machine(),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
