"""The refiner's classic features of one field: the NumPy/SciPy reference against the torch path on a device.

    .venv/bin/python benchmarks/bench_features.py [--size 1024 2048] [--device cuda] [--repeats 3] [--threads 2]

Each field is a simulated granite field at 1 % EDS, labelled by identification; its regions are the shipped
model's (superpixels split at their mean, as `segment` predicts). Prints, per size, the median seconds of
`classic_features` on the reference path and on ``--device`` (a warm-up run first: CUDA start-up is not counted),
their ratio, and the largest difference of any region feature, as JSON lines and a Markdown table. On a CPU the
torch path is a check, not a speed-up (it is 20-45x slower there, which is why `segment` on a CPU uses the reference).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch


def field_inputs(size: int) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """(image, coords, labels) of a simulated granite field at 1 % points and the shipped refiner's regions."""
    from fusionseg.pretrain import load_weights
    from fusionseg.registry import DATA_SOURCES
    from fusionseg.sem.identify import with_identified_point_labels

    sample = DATA_SOURCES.create("sem-synthetic", num_fields=1, size=size, rocks=["granite"], eds_fraction=0.01)[0]
    sample = with_identified_point_labels(sample)
    model = load_weights()
    graph = model.build_graphs([sample])
    _, regions = model.refiner.regions(graph, slice(0, size * size), sample)
    args = (sample.image.numpy(), sample.point_coords.numpy(), sample.point_target.numpy())
    return args, regions.reshape(size, size)


def median_seconds(run: Callable[[], object], repeats: int, device: torch.device | None) -> tuple[float, object]:
    """Median wall seconds of ``run`` over ``repeats`` calls (the device synchronised), and its last result."""
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = run()
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    from fusionseg.models.prior import classic_features

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs="+", default=[1024, 2048], help="field sides (px)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch path's device")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per path (median)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch and the reference's fills)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = []
    for size in args.size:
        inputs, regions = field_inputs(size)
        reference = partial(classic_features, *inputs, regions)
        on_device = partial(classic_features, *inputs, regions, device)
        on_device()  # warm-up: CUDA context, kernels
        ref_s, ref = median_seconds(reference, args.repeats, None)
        dev_s, dev = median_seconds(on_device, args.repeats, device)
        row = {"size": size, "regions": int(ref.region.shape[1]), "classes": len(ref.found), "device": str(device),
               "reference_s": round(ref_s, 3), "torch_s": round(dev_s, 3), "speedup": round(ref_s / dev_s, 2),
               "max_feature_difference": float(np.abs(ref.region - dev.region).max()),
               "same_classic_fills": all(np.array_equal(ref.best[m], dev.best[m]) for m in ref.best)}  # fmt: skip
        print(json.dumps(row), flush=True)
        rows.append(row)
    print("\n| field | regions | classes | reference (CPU) s | torch s | ratio | max difference | same fills |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['size']}² | {r['regions']} | {r['classes']} | {r['reference_s']} | {r['torch_s']} ({r['device']}) "
            f"| {r['speedup']}x | {r['max_feature_difference']:.1e} | {r['same_classic_fills']} |"
        )


if __name__ == "__main__":
    main()
