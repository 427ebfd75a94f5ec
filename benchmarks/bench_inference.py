"""End-to-end inference speed and memory per stage: simulate -> encode -> build -> forward -> decode.

    python benchmarks/bench_inference.py [--quick] [--configs default paper_gat] [--sizes 256 1024] [--threads 2]

Each (config, size) runs in its own subprocess so that peak RSS (ru_maxrss) is that run's alone.
Fields larger than ``--tile`` px are processed the way ``fusionseg segment`` does it: overlapping
tiles (``--overlap`` px of context each side), each tile's stages timed and summed, so memory
stays bounded. Models are untrained (weights do not change the cost). One warm-up (graph
geometry cached, kernels primed on a small field), then medians over ``--repeats`` runs.
Prints one JSON document with the growth exponent of time against pixels per config.
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("simulate", "encode", "build", "forward", "decode")
# Sizes per config: the slow graph models stop where one run would take minutes.
FULL_SIZES = {
    "default": [256, 1024, 2048, 4096],
    "grid_cross_cnn": [256, 1024],
    "grid_late_sage": [256, 512],
    "knn_hetero_sage": [256, 512],
    "paper_gat": [256, 512],
}
QUICK_SIZES = {"default": [256, 512], "grid_cross_cnn": [256, 512], "paper_gat": [256]}


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def load_model(config: str):
    from fusionseg.build import build

    return build(config, {"data.source_kwargs.size": 32, "trainer.logger": False}).model.eval()


def tiles(size: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """(lo, hi, keep_lo, keep_hi) along one axis: the windows ``fusionseg segment`` predicts."""
    from fusionseg.sem.segment import tile_spans

    return tile_spans(size, tile, overlap)


def infer(model, sample, tile: int, overlap: int) -> dict[str, float]:
    """Seconds per stage (encode, build, forward, decode) for one field, tiled when larger than ``tile``."""
    import torch
    from torch_geometric.data import Batch

    from fusionseg.graphs.schema import POINT, decode_to_pixels
    from fusionseg.sem.segment import _crop

    h, w = sample.height, sample.width
    t = dict.fromkeys(("encode", "build", "forward", "decode"), 0.0)
    labels = torch.empty(h, w, dtype=torch.long)
    everything = torch.ones(sample.num_points, dtype=torch.bool)
    for r, r_end, r_lo, r_hi in tiles(h, tile, overlap):
        for c, c_end, c_lo, c_hi in tiles(w, tile, overlap):
            th, tw = r_end - r, c_end - c
            part = sample if (th, tw) == (h, w) else _crop(sample, r, c, th, tw, everything, ~everything)
            enc, dt = _timed(lambda p=part: model.point_encoder(p.point_features))
            t["encode"] += dt
            graph, dt = _timed(lambda p=part: Batch.from_data_list([model.graph_builder(p)]))
            t["build"] += dt
            graph[POINT].x = enc
            node_out, dt = _timed(lambda g=graph: model.head(model.fusion(g), g))
            t["forward"] += dt
            start = time.perf_counter()
            pix = decode_to_pixels(node_out.argmax(-1), graph).view(th, tw)
            labels[r_lo:r_hi, c_lo:c_hi] = pix[r_lo - r : r_hi - r, c_lo - c : c_hi - c]
            t["decode"] += time.perf_counter() - start
    return t


def run_one(config: str, size: int, repeats: int, threads: int, eds_fraction: float, tile: int, overlap: int) -> dict:
    import torch

    from fusionseg.registry import DATA_SOURCES

    torch.set_num_threads(threads)
    model = load_model(config)
    source = DATA_SOURCES.create(
        "sem-synthetic", num_fields=repeats, size=size, rocks=["granite"], eds_fraction=eds_fraction, seed=7
    )
    warm = DATA_SOURCES.create("sem-synthetic", num_fields=1, size=min(size, tile), rocks=["granite"], seed=8)
    stages: dict[str, list[float]] = {k: [] for k in (*STAGES, "total")}
    with torch.inference_mode():
        infer(model, warm[0], tile, overlap)  # warm-up: geometry cache, kernels
        for i in range(repeats):
            sample, t_sim = _timed(lambda i=i: source[i])
            t = infer(model, sample, tile, overlap)
            stages["simulate"].append(t_sim)
            for key, value in t.items():
                stages[key].append(value)
            stages["total"].append(sum(t.values()))
    pixels = size * size
    med = {k: statistics.median(v) for k, v in stages.items()}
    return {
        "size": size,
        "points": sample.num_points,
        "tiles": len(tiles(size, tile, overlap)) ** 2,
        "seconds_median": {k: round(v, 4) for k, v in med.items()},
        "pixels_per_second": {k: round(pixels / v) for k, v in med.items() if v > 0},
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def growth_exponent(results: list[dict]) -> float | None:
    """Slope of log(total seconds) against log(pixels) over sizes >= 512 px (all sizes if fewer than two)."""
    rows = [r for r in results if r["size"] >= 512]
    rows = rows if len(rows) >= 2 else results
    if len(rows) < 2:
        return None
    x = np.log([r["size"] ** 2 for r in rows])
    y = np.log([r["seconds_median"]["total"] for r in rows])
    return round(float(np.polyfit(x, y, 1)[0]), 3)


def repeats_for(size: int, repeats: int) -> int:
    """Fewer repeats for the large fields (up to minutes each): 2 at 1024 px, 1 from 2048 px up."""
    return repeats if size < 1024 else min(repeats, 2) if size < 2048 else 1


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", help="config names under configs/ (default: the built-in plan)")
    p.add_argument("--sizes", type=int, nargs="+", help="field sizes in px (default: per config, see FULL_SIZES)")
    p.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eds-fraction", type=float, default=0.01)
    p.add_argument("--tile", type=int, default=2112, help="tile px for large fields (2048 + 2 x overlap)")
    p.add_argument("--overlap", type=int, default=32)
    p.add_argument("--one", nargs=2, metavar=("CONFIG", "SIZE"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if not 0 <= 2 * a.overlap < a.tile:
        p.error(f"--overlap ({a.overlap} px) must be less than half of --tile ({a.tile} px).")
    if a.one:
        result = run_one(a.one[0], int(a.one[1]), a.repeats, a.threads, a.eds_fraction, a.tile, a.overlap)
        print(json.dumps(result))
        return result
    plan = QUICK_SIZES if a.quick else FULL_SIZES
    configs = a.configs or list(plan)
    report = {"benchmark": "inference", "threads": a.threads, "eds_fraction": a.eds_fraction, "tile": a.tile,
              "overlap": a.overlap, "configs": {}}  # fmt: skip
    for name in configs:
        config = str(ROOT / "configs" / f"{name}.yaml")
        results = []
        for size in a.sizes or plan.get(name, [256, 1024]):
            cmd = [sys.executable, __file__, "--one", config, str(size), "--repeats", str(repeats_for(size, a.repeats)),
                   "--threads", str(a.threads), "--eds-fraction", str(a.eds_fraction), "--tile", str(a.tile),
                   "--overlap", str(a.overlap)]  # fmt: skip
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                print(out.stderr[-2000:], file=sys.stderr)
                results.append({"size": size, "error": out.stderr.strip().splitlines()[-1][:300]})
                continue
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"[inference] {name} {size}: {json.dumps(results[-1])}", file=sys.stderr, flush=True)
        ok = [r for r in results if "error" not in r]
        report["configs"][name] = {"results": results, "growth_exponent": growth_exponent(ok)}
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
