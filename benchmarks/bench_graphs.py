"""Graph-builder speed and memory.

    python benchmarks/bench_graphs.py [--quick] [--repeats 5]

(a) the vectorised ``grid`` builder vs a per-pixel Python-loop construction of the same graph
    (the paper's way: 8-connected pixels, Delaunay points, point<->nearest pixel/point) at 150^2;
(b) ``grid`` + cross edges at 2048^2 with 1 % points (pixels/s, cached geometry and cold), and
    the ``superpixel`` builder (slic, felzenszwalb, grid) at 2048^2;
(c) peak RSS of one ``grid`` build at 4096^2 (ru_maxrss of a fresh subprocess).
torch and cKDTree run on 2 threads. Prints one JSON document of medians (seconds) to stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from scipy.spatial import Delaunay

ROOT = Path(__file__).resolve().parents[1]
THREADS = 2


def make_sample(size: int, fraction: float = 0.01, seed: int = 0, features: int = 32) -> Any:
    """A BSE-like field: ~size/40 grains per side (nearest-seed phases), 4 grey levels, noise."""
    from fusionseg import Sample, SampleMeta

    rng = np.random.default_rng(seed)
    n_grains = max(4, (size // 40) ** 2)
    seeds = np.ones((size, size), bool)
    seeds[rng.integers(0, size, n_grains), rng.integers(0, size, n_grains)] = False
    ir, ic = ndimage.distance_transform_edt(seeds, return_distances=False, return_indices=True)
    image = ((ir * 7 + ic * 13) % 4).astype(np.float32) / 4  # int32 / float32: small peak RSS
    del ir, ic
    image += 0.05 * rng.standard_normal((size, size), dtype=np.float32)
    n = max(1, int(fraction * size * size))
    coords = np.stack([rng.integers(0, size, n), rng.integers(0, size, n)], 1).astype(np.float32)
    meta = SampleMeta(class_names=("a", "b", "c", "d"))
    return Sample(image[None], coords, rng.random((n, features), dtype=np.float32), meta=meta)


def median_time(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def paper_style_graph(sample: Any) -> tuple[list, list, list, list]:
    """Reference: per-pixel Python loops, as in the public code of Repka et al. (2025)."""
    img = sample.image[0].numpy()
    h, w = img.shape
    pts = sample.point_coords.numpy()
    pixel_edges, pixel_dist = [], []
    for r in range(h):
        for c in range(w):
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    if (dr or dc) and 0 <= r + dr < h and 0 <= c + dc < w:
                        pixel_edges.append((r * w + c, (r + dr) * w + c + dc))
                        pixel_dist.append(math.hypot(dr, dc))
    point_edges = []
    for simplex in Delaunay(pts).simplices:
        for i in range(3):
            a, b = int(simplex[i]), int(simplex[(i + 1) % 3])
            point_edges += [(a, b), (b, a)]
    point_edges = sorted(set(point_edges))
    cross = []
    for j, (pr, pc) in enumerate(pts):
        r, c = min(max(round(pr), 0), h - 1), min(max(round(pc), 0), w - 1)
        cross.append((j, r * w + c, math.hypot(pr - r, pc - c)))
    back = []
    for r in range(h):
        for c in range(w):
            d = np.hypot(pts[:, 0] - r, pts[:, 1] - c)
            j = int(np.argmin(d))
            back.append((r * w + c, j, float(d[j])))
    return pixel_edges, point_edges, cross, back


def bench_vs_loops(size: int, repeats: int) -> dict[str, Any]:
    """Interleaved rounds (one loop build, then 5 vectorised builds) so both see the same load."""
    from fusionseg.graphs import GridGraphBuilder, clear_geometry_cache

    sample = make_sample(size)
    builder = GridGraphBuilder()
    n_ref = len(paper_style_graph(sample)[0])
    assert builder(sample)["pixel", "near", "pixel"].edge_index.shape[1] == n_ref, "reference and builder disagree"
    ref, warm, cold, ratio = [], [], [], []
    for _ in range(repeats):
        ref.append(median_time(lambda: paper_style_graph(sample), 1))
        cold.append(median_time(lambda: (clear_geometry_cache(), builder(sample)), 1))
        warm.append(median_time(lambda: builder(sample), 5))
        ratio.append(ref[-1] / warm[-1])
    return {
        "size": size,
        "points": sample.num_points,
        "loops_s": statistics.median(ref),
        "grid_builder_s": statistics.median(warm),
        "grid_builder_cold_s": statistics.median(cold),
        "speedup": statistics.median(ratio),
        "speedup_cold": statistics.median(ref) / statistics.median(cold),
    }


def bench_grid_large(size: int, repeats: int) -> dict[str, Any]:
    from fusionseg.graphs import GridGraphBuilder, clear_geometry_cache
    from fusionseg.graphs.points import point_point_edges

    sample = make_sample(size)
    builder = GridGraphBuilder()
    clear_geometry_cache()
    start = time.perf_counter()
    builder(sample)
    cold = time.perf_counter() - start
    warm = median_time(lambda: builder(sample), repeats)
    pixels = size * size
    out = {
        "size": size,
        "points": sample.num_points,
        "cold_s": cold,
        "warm_s": warm,
        "mpix_per_s_warm": pixels / warm / 1e6,
        "mpix_per_s_cold": pixels / cold / 1e6,
        "delaunay_s": median_time(lambda: point_point_edges(sample.point_coords), repeats),
    }
    for name, kw in (("grid4", {"connectivity": 4}), ("grid8_intensity", {"intensity_edges": True})):
        b = GridGraphBuilder(**kw)
        b(sample)
        out[f"{name}_warm_s"] = median_time(lambda b=b: b(sample), repeats)
    clear_geometry_cache()
    return out


def bench_superpixel(size: int, repeats: int) -> dict[str, Any]:
    from fusionseg.graphs import SuperpixelGraphBuilder

    sample = make_sample(size)
    out: dict[str, Any] = {"size": size, "region_size": 8}
    for method in ("grid", "slic", "felzenszwalb"):
        builder = SuperpixelGraphBuilder(method=method)
        reps = repeats if method == "grid" else max(1, min(repeats, 2))
        out[f"{method}_s"] = median_time(lambda b=builder: b(sample), reps)
        graph = builder(sample)  # keep a reference: node stores only weakly reference their graph
        out[f"{method}_regions"] = graph["region"].num_nodes
    fast = SuperpixelGraphBuilder(method="felzenszwalb", downscale=2)
    out["felzenszwalb_downscale2_s"] = median_time(lambda: fast(sample), 1)
    graph = fast(sample)
    out["felzenszwalb_downscale2_regions"] = graph["region"].num_nodes
    return out


def rss_child(size: int) -> None:
    """Subprocess body: build one grid graph, print its peak RSS (MB) and time as JSON."""
    torch.set_num_threads(THREADS)
    from fusionseg.graphs import GridGraphBuilder

    sample = make_sample(size)
    current = _current_rss_mb()
    start = time.perf_counter()
    g = GridGraphBuilder()(sample)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    edges = sum(g[et].edge_index.shape[1] for et in g.edge_types)
    graph_mb = sum(t.numel() * t.element_size() for t in _tensors(g)) / 2**20
    keys = ("size", "peak_rss_mb", "rss_before_build_mb", "graph_tensors_mb", "build_s", "edges")
    print(json.dumps(dict(zip(keys, (size, peak, current, graph_mb, seconds, edges), strict=True))))


def _current_rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def _tensors(g: Any) -> list[torch.Tensor]:
    stores = [*g.node_stores, *g.edge_stores, g._global_store]
    return [v for s in stores for v in s.values() if isinstance(v, torch.Tensor)]


def bench_rss(size: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--rss-child", str(size)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes (smoke run, < 1 min)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.rss_child:
        return rss_child(a.rss_child)
    torch.set_num_threads(THREADS)
    large, rss = (512, 1024) if a.quick else (2048, 4096)
    repeats = 3 if a.quick else a.repeats
    result: dict[str, Any] = {"threads": THREADS, "quick": a.quick, "repeats": repeats}
    for key, fn in (
        ("vs_python_loops", lambda: bench_vs_loops(150, repeats)),
        ("grid_large", lambda: bench_grid_large(large, repeats)),
        ("superpixel", lambda: bench_superpixel(large, repeats)),
        ("peak_rss", lambda: bench_rss(rss)),
    ):
        print(f"[bench_graphs] {key} ...", file=sys.stderr, flush=True)
        result[key] = fn()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
