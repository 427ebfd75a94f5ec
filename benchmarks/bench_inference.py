"""End-to-end inference speed per stage: simulate -> encode -> build -> forward -> decode.

    python benchmarks/bench_inference.py [--config configs/default.yaml] [--sizes 256 1024 2048] [--threads 2]

Each size runs in its own subprocess so that peak RSS (ru_maxrss) is that size's alone. The
model is untrained (weights do not change the cost). Prints one JSON document; medians over
``--repeats`` runs after one warm-up.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def run_one(config: str, size: int, repeats: int, threads: int, eds_fraction: float) -> dict:
    import torch
    from torch_geometric.data import Batch

    from fusionseg.cli import make_cli
    from fusionseg.graphs.schema import POINT, decode_to_pixels
    from fusionseg.registry import DATA_SOURCES

    torch.set_num_threads(threads)
    cli = make_cli(["--config", config, "--data.source_kwargs.size=32"], run=False)
    model = cli.model.eval()
    source = DATA_SOURCES.create(
        "sem-synthetic", num_fields=repeats + 1, size=size, rocks=["granite"], eds_fraction=eds_fraction, seed=7
    )
    stages: dict[str, list[float]] = {k: [] for k in ("simulate", "encode", "build", "forward", "decode", "total")}
    with torch.inference_mode():
        for i in range(repeats + 1):
            sample, t_sim = _timed(lambda i=i: source[i])
            graph, t_build = _timed(lambda s=sample: Batch.from_data_list([model.graph_builder(s)]))
            enc, t_enc = _timed(lambda g=graph: model.point_encoder(g[POINT].x))
            graph[POINT].x = enc
            node_out, t_fwd = _timed(lambda g=graph: model.head(model.fusion(g), g))
            _, t_dec = _timed(lambda g=graph, o=node_out: decode_to_pixels(o.argmax(-1), g))
            if i == 0:
                continue  # warm-up
            for key, t in zip(stages, (t_sim, t_enc, t_build, t_fwd, t_dec), strict=False):
                stages[key].append(t)
            stages["total"].append(t_enc + t_build + t_fwd + t_dec)
    pixels = size * size
    med = {k: statistics.median(v) for k, v in stages.items()}
    return {
        "size": size,
        "points": sample.num_points,
        "seconds_median": {k: round(v, 4) for k, v in med.items()},
        "pixels_per_second": {k: round(pixels / v) for k, v in med.items() if v > 0},
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 2048])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eds-fraction", type=float, default=0.01)
    p.add_argument("--one-size", type=int, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.one_size:
        result = run_one(a.config, a.one_size, a.repeats, a.threads, a.eds_fraction)
        print(json.dumps(result))
        return result
    results = []
    for size in a.sizes:
        cmd = [sys.executable, __file__, "--config", a.config, "--one-size", str(size), "--repeats", str(a.repeats),
               "--threads", str(a.threads), "--eds-fraction", str(a.eds_fraction)]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), file=sys.stderr)
    report = {"benchmark": "inference", "config": a.config, "threads": a.threads, "results": results}
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
