"""Per-field training time of ``fusionseg segment`` (no checkpoint) on a synthetic 1024² granite field,
and the peak memory of the whole command under a memory budget.

    .venv/bin/python benchmarks/bench_segment.py [--size 1024] [--threads 1] [--repeats 1]
    .venv/bin/python benchmarks/bench_segment.py --peak-rss 512 1024 2048 4096 --max-memory 4GB --threads 2 \
        [--compare geodesic] [--json benchmarks/results/segment.json]

The first prints identify / train / predict seconds, epochs, and mIoU of the map against the simulator's
truth. ``--peak-rss`` writes each field (BSE TIFF + ``eds.npz`` at 1 % points) in one subprocess, then
runs ``fusionseg segment FOLDER --max-memory ...`` (the shipped weights) in another and reports its wall
seconds, the per-stage seconds of its ``summary.json`` and that process's peak RSS (``os.wait4``: this
child alone) with the tile size the budget chose, as JSON lines and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def write_field(size: int, folder: Path, eds_fraction: float = 0.01) -> None:
    """A simulated granite field as a segment input folder: ``bse.tif`` (uint16) + ``eds.npz`` (points)."""
    import numpy as np
    import tifffile

    from fusionseg.registry import DATA_SOURCES

    s = DATA_SOURCES.create("sem-synthetic", num_fields=1, size=size, rocks=["granite"], eds_fraction=eds_fraction)[0]
    folder.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(folder / "bse.tif", (s.image[0].numpy() * 65535).astype(np.uint16))
    ax = s.meta.domain.energy_axis
    np.savez(folder / "eds.npz", coords=s.point_coords.numpy(), spectra=s.point_features.numpy().astype(np.uint16),
             offset_ev=ax.offset_ev, scale_ev=ax.scale_ev, beam_energy_kev=s.meta.domain.beam_energy_kev)  # fmt: skip


def run_child(cmd: list[str], log_path: Path, threads: int) -> dict:
    """Run ``cmd`` in a child process (``OMP_NUM_THREADS=threads``, stderr to ``log_path``: a file, not a pipe,
    which would block when full): its wall seconds, peak RSS in GiB (``os.wait4``: this child alone), exit code
    and stderr."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    with log_path.open("w+") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        log.seek(0)
        err = log.read()
    return {"seconds": seconds, "peak_rss_gib": round(usage.ru_maxrss / 2**20, 2),
            "returncode": os.waitstatus_to_exitcode(status), "stderr": err}  # fmt: skip


def run_segment(folder: Path, out: Path, max_memory: str, time_budget: float, threads: int,
                extra: tuple[str, ...] = ()) -> dict:  # fmt: skip
    """``fusionseg segment FOLDER`` in a child process: wall seconds, its peak RSS (``os.wait4``: this child
    alone) and the per-stage timings of its ``summary.json``."""
    cmd = [sys.executable, "-m", "fusionseg.cli", "segment", str(folder), "--out", str(out), "--max-memory",
           max_memory, "--time-budget", str(time_budget), "--threads", str(threads), "--overwrite", *extra]  # fmt: skip
    child = run_child(cmd, out.parent / f"{out.name}.stderr.txt", threads)
    if child["returncode"] != 0:
        raise RuntimeError(f"segment {' '.join(extra)} failed on {folder}: {child['stderr'][-2000:]}")
    summary = json.loads((out / "summary.json").read_text())
    timings = summary["timings"]
    timings["start_and_write_s"] = round(child["seconds"] - timings.get("total_s", 0.0), 2)  # start + outputs
    return {"tile_px": summary["training"].get("tile_px"), "peak_rss_gib": child["peak_rss_gib"],
            "seconds": round(child["seconds"], 1), "timings": timings}  # fmt: skip


def peak_rss(sizes: list[int], max_memory: str, time_budget: float, threads: int, eds_fraction: float,
             compare: str | None = None) -> list[dict]:  # fmt: skip
    """Seconds, per-stage timings and peak RSS (GiB) of ``fusionseg segment`` per field size under
    ``--max-memory``; with ``compare``, the same field's ``segment --method COMPARE`` too (time ratio)."""
    rows = []
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "field"
            code = "import benchmarks.bench_segment as b, pathlib; " + (
                f"b.write_field({size}, pathlib.Path(r'{folder}'), {eds_fraction})"
            )
            subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)  # fmt: skip
            row = {"size": size, "eds_fraction": eds_fraction, "max_memory": max_memory, "threads": threads}
            try:
                row.update(run_segment(folder, Path(tmp) / "out", max_memory, time_budget, threads))
            except RuntimeError as err:  # a budget too small is refused before any work: a row, not a crash
                if "memory budget" not in str(err):
                    raise
                rows.append({**row, "refused": str(err).split("error: ")[-1].strip()})
                print(json.dumps(rows[-1]), flush=True)
                continue
            row["px_per_s"] = round(size * size / row["seconds"])
            if compare:
                other = run_segment(folder, Path(tmp) / "classic", max_memory, time_budget, threads,
                                    ("--method", compare))  # fmt: skip
                row[f"{compare}_seconds"] = other["seconds"]
                row[f"ratio_to_{compare}"] = round(row["seconds"] / other["seconds"], 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


STAGES = ("read_s", "identify_s", "adapt_s", "predict_s", "qc_predict_s", "classic_floor_s", "classic_features_s",
          "start_and_write_s")  # fmt: skip


def stage_table(rows: list[dict]) -> str:
    """Markdown table of `peak_rss` rows: seconds per stage, total, px/s, peak RSS."""
    head = ["field", "budget", "tile", *(s.removesuffix("_s") for s in STAGES), "total s", "px/s", "peak RSS GiB"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        if "refused" in r:
            lines.append(f"| {r['size']}² | {r['max_memory']} | refused: {r['refused']} |")
            continue
        t = r["timings"]
        cells = [f"{r['size']}²", r["max_memory"], r["tile_px"], *(t.get(s, "-") for s in STAGES), r["seconds"],
                 f"{r['px_per_s']:,}", r["peak_rss_gib"]]  # fmt: skip
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    from fusionseg.models.metrics import field_metrics
    from fusionseg.registry import DATA_SOURCES
    from fusionseg.sem.segment import SegmentConfig, segment_field

    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--mode", default="auto")
    p.add_argument("--peak-rss", type=int, nargs="+", help="field sizes (px) whose `segment` peak RSS to measure")
    p.add_argument("--max-memory", default="4GB", help="memory budget given to `segment` with --peak-rss")
    p.add_argument("--time-budget", type=float, default=10.0, help="per-field training seconds with --peak-rss")
    p.add_argument("--eds-fraction", type=float, default=0.01, help="fraction of pixels with a spectrum (--peak-rss)")
    p.add_argument("--compare", help="also time `segment --method COMPARE` on each field (--peak-rss), e.g. geodesic")
    p.add_argument("--json", type=Path, help="write the --peak-rss rows here (and print a Markdown table)")
    a = p.parse_args()
    if a.peak_rss:
        rows = peak_rss(a.peak_rss, a.max_memory, a.time_budget, a.threads, a.eds_fraction, a.compare)
        print(stage_table(rows))
        if a.json:
            a.json.parent.mkdir(parents=True, exist_ok=True)
            a.json.write_text(json.dumps(rows, indent=2))
        return
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
