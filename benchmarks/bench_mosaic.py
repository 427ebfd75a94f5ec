"""``fusionseg mosaic`` end to end: a 4x4 mosaic of 1024² fields, its wall time and peak memory; and the
measurement behind the overlap check's threshold (``--calibrate``).

    .venv/bin/python benchmarks/bench_mosaic.py [--grid 4] [--size 1024] [--overlap 64] [--max-memory 4GB]
        [--threads 2] [--json benchmarks/results/mosaic.json]
    .venv/bin/python benchmarks/bench_mosaic.py --calibrate [--json benchmarks/results/mosaic_calibration.json]

The first simulates ONE granite field of grid * size - (grid - 1) * overlap px a side (3904² by default) and cuts
it into grid x grid fields of size² px overlapping by ``overlap`` px, each with its own 1 % of random points
(drawn per field, as separately acquired fields are; the BSE of an overlap is the same render in both fields),
written as sample files with a positions CSV. It then runs ``fusionseg mosaic`` (shipped weights) in a child
process and ``fusionseg segment`` on one of the fields in another (the one-field reference), each under the same
``--max-memory`` and ``--threads``, and reports wall seconds, peak RSS (``os.wait4``: that child alone,
`bench_segment.run_child`), and the mosaic's pixel accuracy against the simulator's phases, inside and outside
the overlaps. ``--calibrate`` renders each of 6 rocks' fields twice (independent noise, brightness and
contrast, as two scans) and scores `overlap_match` on 32 and 64 px overlap strips at the right place and
shifted by 1-64 px.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_segment import run_child, run_segment  # noqa: E402 (after the path)

SHIFTS = (0, 1, 2, 3, 4, 8, 16, 32, 64)


def write_fields(folder: Path, grid: int, size: int, overlap: int, eds_fraction: float, seed: int = 0) -> dict:
    """Simulate one granite field, cut it into grid x grid fields (``fields/tile_RC.npz``), write
    ``positions.csv`` and the whole field's phases (``truth.npy``, library class ids); returns the layout."""
    import torch

    from fusionseg.data.io import save_sample
    from fusionseg.sem.data.synthetic import simulate_field

    step = size - overlap
    side = grid * size - (grid - 1) * overlap
    start = time.perf_counter()
    field = simulate_field("granite", side, seed=seed)
    np.save(folder / "truth.npy", field.labels.astype(np.int16))
    (folder / "fields").mkdir(parents=True, exist_ok=True)
    rows = ["field,x_px,y_px"]
    rng = np.random.default_rng(seed)
    n = round(eds_fraction * size * size)
    for i in range(grid):
        for j in range(grid):
            name, r, c = f"tile_{i}{j}", i * step, j * step
            local = np.unique(rng.integers(0, size, (n, 2)), axis=0).astype(np.float64)
            at = local + [r, c]
            s = field.to_sample(at, field.spectra_at(at, rng), name=name)  # this field's points, in the whole
            part = type(s)(image=s.image[:, r : r + size, c : c + size], point_coords=torch.from_numpy(local),
                           point_features=s.point_features, meta=s.meta, target=s.target[r : r + size, c : c + size],
                           point_target=s.point_target)  # fmt: skip
            save_sample(part, folder / "fields" / f"{name}.npz")
            rows.append(f"{name},{c},{r}")
    (folder / "positions.csv").write_text("\n".join(rows) + "\n")
    return {"grid": grid, "field_px": size, "overlap_px": overlap, "mosaic_px": side, "points_per_field": n,
            "simulate_s": round(time.perf_counter() - start, 1)}  # fmt: skip


def score(out: Path, truth: np.ndarray, layout: dict) -> dict:
    """Pixel accuracy of the mosaic against the simulator's phases, in the overlaps and elsewhere."""
    from fusionseg.export.mosaic import read_label_tiff
    from fusionseg.sem.minerals import class_names

    labels, names = read_label_tiff(out / "mosaic_phases.tif")
    library = list(class_names())
    lut = np.full(65536, -2, dtype=np.int32)
    lut[: len(names)] = [library.index(n) if n in library else -2 for n in names]
    right = lut[labels] == truth
    seams = np.zeros(truth.shape, dtype=bool)
    step, size = layout["field_px"] - layout["overlap_px"], layout["field_px"]
    for k in range(1, layout["grid"]):
        seams[k * step : (k - 1) * step + size, :] = True
        seams[:, k * step : (k - 1) * step + size] = True
    return {"pixel_accuracy": round(float(right.mean()), 4), "in_overlaps": round(float(right[seams].mean()), 4),
            "elsewhere": round(float(right[~seams].mean()), 4)}  # fmt: skip


def run(a: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        code = ("import benchmarks.bench_mosaic as b, json, pathlib; print(json.dumps(b.write_fields("
                f"pathlib.Path(r'{root}'), {a.grid}, {a.size}, {a.overlap}, {a.eds_fraction})))")  # fmt: skip
        made = subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, capture_output=True, text=True)
        layout = json.loads(made.stdout.strip().splitlines()[-1])
        print(json.dumps(layout), flush=True)
        cmd = [sys.executable, "-m", "fusionseg.cli", "mosaic", str(root / "fields"), "--positions",
               str(root / "positions.csv"), "--out", str(root / "out"), "--max-memory", a.max_memory,
               "--threads", str(a.threads)]  # fmt: skip
        load = os.getloadavg()[0]  # a shared machine: other jobs slow both runs
        child = run_child(cmd, root / "mosaic.stderr.txt", a.threads)
        if child["returncode"] != 0:
            raise RuntimeError(f"fusionseg mosaic failed: {child['stderr'][-3000:]}")
        report = json.loads((root / "out" / "mosaic.json").read_text())
        one = run_segment(root / "fields" / "tile_00.npz", root / "one", a.max_memory, 50.0, a.threads)  # its default
        row = {**layout, "max_memory": a.max_memory, "threads": a.threads, "eds_fraction": a.eds_fraction,
               "seconds": round(child["seconds"], 1), "peak_rss_gib": child["peak_rss_gib"],
               "seconds_per_field": round(child["seconds"] / a.grid**2, 1), "timings": report["timings"],
               "overlap_checks": {v: sum(c["verdict"] == v for c in report["overlap_checks"])
                                  for v in ("ok", "unverified", "mismatch")},
               "one_field": {"seconds": one["seconds"], "peak_rss_gib": one["peak_rss_gib"], "tile_px": one["tile_px"]},
               "tiff_levels": report["mosaic"]["levels"],
               "load_average": [round(load, 2), round(os.getloadavg()[0], 2)],
               "accuracy": score(root / "out", np.load(root / "truth.npy"), layout)}  # fmt: skip
    print(json.dumps(row), flush=True)
    return row


def strips(scans: list[np.ndarray], rng: np.random.Generator, strip: int = 512) -> list[dict]:
    """`overlap_match` of 6 overlap strips (32 or 64 px wide, ``strip`` long) of two scans of one field, at the
    right place and with the second scan's strip moved by each of `SHIFTS` px in a random direction."""
    from fusionseg.export.mosaic import overlap_match, verifiable

    rows, size = [], scans[0].shape[0]
    for k in range(6):
        width = 64 if k % 2 == 0 else 32
        h, w = (strip, width) if k % 3 == 0 else (width, strip)
        r, c = rng.integers(64, size - 64 - h), rng.integers(64, size - 64 - w)
        for shift in SHIFTS:
            angle = rng.uniform(0, 2 * np.pi)
            dy, dx = int(round(shift * np.sin(angle))), int(round(shift * np.cos(angle)))
            dx = dx if shift == 0 or (dy, dx) != (0, 0) else shift
            m = overlap_match(scans[0][r : r + h, c : c + w], scans[1][r + dy : r + dy + h, c + dx : c + dx + w])
            rows.append({"width": width, "shift": shift, **m, "verifiable": verifiable(m["expected"], h * w)})
    return rows


def calibrate(size: int = 768) -> dict:
    """`overlap_match` ratios of correct and shifted overlaps (see the module docstring); rows and a summary."""
    from fusionseg.sem.data.synthetic import rock_names, simulate_field
    from fusionseg.sem.data.synthetic.field import render_bse

    rows = []
    for rock in rock_names():
        for seed in (0, 1):
            labels = simulate_field(rock, size, seed=seed).labels
            for noise in (0.3, 1.0, 2.0):
                scans = [render_bse(labels, np.random.default_rng([seed, int(noise * 10), k]), noise)[0]
                         for k in (1, 2)]  # fmt: skip
                found = strips(scans, np.random.default_rng([seed, 1]))
                rows += [{"rock": rock, "seed": seed, "noise": noise, **r} for r in found]
    summary = []
    for shift in SHIFTS:
        ratios = np.array([r["ratio"] for r in rows if r["shift"] == shift and r["verifiable"]])
        n_all = sum(r["shift"] == shift for r in rows)
        summary.append({"shift_px": shift, "verifiable": f"{len(ratios)}/{n_all}", "min": round(float(ratios.min()), 3),
                        "max": round(float(ratios.max()), 3),
                        **{f"below_{t}": round(float((ratios < t).mean()), 3) for t in (0.5, 0.7, 0.9)}})  # fmt: skip
        print(json.dumps(summary[-1]), flush=True)
    return {"summary": summary, "rows": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", type=int, default=4, help="fields per side")
    p.add_argument("--size", type=int, default=1024, help="field size (px)")
    p.add_argument("--overlap", type=int, default=64, help="overlap of neighbouring fields (px)")
    p.add_argument("--eds-fraction", type=float, default=0.01)
    p.add_argument("--max-memory", default="4GB")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--calibrate", action="store_true", help="measure the overlap check's statistic instead")
    p.add_argument("--json", type=Path, help="write the result here (e.g. benchmarks/results/mosaic.json)")
    a = p.parse_args()
    result = calibrate() if a.calibrate else run(a)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
