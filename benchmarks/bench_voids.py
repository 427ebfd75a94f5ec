"""Voids stage benchmark: pore/epoxy pixels of `segment`'s map against the simulator's truth, without and with
the stage (`fusionseg.sem.segment.voids`), on granite and grain-mount fields at 1 % EDS (fixed seeds, shipped
weights). Recall and precision of the "not sample" class (pore + epoxy, one class); for grain mounts the particle
count and median diameter (`fusionseg.sem.export.mineralogy.particle_statistics`) of the truth and of each map;
and the stage's seconds on a 2048² BSE image.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python benchmarks/bench_voids.py [--size 256] [--seeds 0 1 2] [--json OUT]

A Markdown table on stdout (JSON lines with ``--json``).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

NOT_SAMPLE = ("pore", "epoxy")


def void_of(labels: np.ndarray, names: tuple[str, ...] | list[str]) -> np.ndarray:
    """(H, W) bool: pixels whose class is pore or epoxy."""
    return np.isin(labels, [k for k, n in enumerate(names) if n in NOT_SAMPLE])


def scores(truth: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """(recall, precision) of ``pred`` against ``truth`` (bool maps); 1.0 where a denominator is empty."""
    tp = float((truth & pred).sum())
    return tp / truth.sum() if truth.any() else 1.0, tp / pred.sum() if pred.any() else 1.0


def particles(labels: np.ndarray, names: tuple[str, ...], px_um: float) -> tuple[int, float]:
    """(particle count, median equivalent diameter µm) of a map (particles: non-background, >= 4 px)."""
    from fusionseg.sem.export.mineralogy import particle_statistics

    rows = particle_statistics(labels, names, px_um)
    return len(rows), float(np.median([r["diameter_um"] for r in rows])) if rows else 0.0


def one_field(rock: str, size: int, seed: int) -> dict:
    """Before/after scores of one simulated field."""
    from fusionseg.paths import DEFAULT_WEIGHTS
    from fusionseg.registry import DATA_SOURCES
    from fusionseg.sem.segment import SegmentConfig, segment_field

    src = DATA_SOURCES.create("sem-synthetic", num_fields=1, size=size, rocks=[rock], eds_fraction=0.01, seed=seed)
    s = src[0]
    truth_names = tuple(s.meta.class_names)
    truth = s.target.numpy()
    true_void = void_of(truth, truth_names)
    rc = np.rint(s.point_coords.numpy()).astype(int)
    row = {"rock": rock, "seed": seed, "size": size, "void_pixels": int(true_void.sum()),
           "points_in_voids": int(true_void[rc[:, 0], rc[:, 1]].sum()), "points": s.num_points}  # fmt: skip
    blind = replace(s, point_target=None, target=None)
    for tag, voids in (("before", False), ("after", True)):
        start = time.perf_counter()
        r = segment_field(blind, DEFAULT_WEIGHTS, SegmentConfig(progress=False, voids=voids, num_threads=1))
        labels, names = r.labels.numpy(), tuple(r.class_names)
        rec, prec = scores(true_void, void_of(labels, names))
        row.update({f"{tag}_recall": round(rec, 4), f"{tag}_precision": round(prec, 4),
                    f"{tag}_s": round(time.perf_counter() - start, 1)})  # fmt: skip
        if rock == "grain-mount":
            row[f"{tag}_particles"], row[f"{tag}_d50_um"] = particles(labels, names, s.meta.pixel_size_um)
        if voids:
            row["voids_s"] = r.timings.get("voids_s")
    if rock == "grain-mount":
        row["true_particles"], row["true_d50_um"] = particles(truth, truth_names, s.meta.pixel_size_um)
    return row


def stage_seconds(size: int = 2048) -> dict[str, float]:
    """Seconds of the stage (`find_voids` + `apply_voids` on the true map, best of 3) on simulated ``size``² BSE
    images of each rock with 1 % points (spectra of 2,000 of them repeated: their cost is a few column sums)."""
    from fusionseg.sem.data.synthetic.field import simulate_field
    from fusionseg.sem.minerals import class_names
    from fusionseg.sem.segment.voids import apply_voids, find_voids

    out = {}
    for rock in ("granite", "grain-mount"):
        f = simulate_field(rock, size, seed=0)
        coords = np.random.default_rng(0).random((size * size // 100, 2)) * (size - 1)
        spectra = torch.from_numpy(f.spectra_at(coords[:2000]))
        spectra = spectra.repeat(len(coords) // 2000 + 1, 1)[: len(coords)]
        best = np.inf
        for _ in range(3):
            labels, conf = f.labels.copy(), np.zeros(f.shape, np.float32)
            start = time.perf_counter()
            finding, _ = find_voids(f.bse, coords, spectra, f.spectra.axis)
            if finding is not None:
                apply_voids(labels, conf, tuple(class_names()), finding)
            best = min(best, time.perf_counter() - start)
        out[rock] = round(best, 3)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rocks", nargs="+", default=["granite", "grain-mount"])
    p.add_argument("--no-timing", action="store_true", help="skip the 2048² stage timing")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    torch.set_num_threads(1)
    rows = [one_field(rock, a.size, seed) for rock in a.rocks for seed in a.seeds]
    head = ["rock", "seed", "void_pixels", "points_in_voids", "before_recall", "before_precision", "after_recall",
            "after_precision", "voids_s"]  # fmt: skip
    print("| " + " | ".join(head) + " |\n|" + " --- |" * len(head))
    for r in rows:
        print("| " + " | ".join(str(r[h]) for h in head) + " |")
    mounts = [r for r in rows if r["rock"] == "grain-mount"]
    if mounts:
        print("\n| seed | true particles | before | after | true D50 µm | before | after |\n|" + " --- |" * 7)
        for r in mounts:
            print(f"| {r['seed']} | {r['true_particles']} | {r['before_particles']} | {r['after_particles']} | "
                  f"{r['true_d50_um']:.1f} | {r['before_d50_um']:.1f} | {r['after_d50_um']:.1f} |")  # fmt: skip
    if not a.no_timing:
        seconds = stage_seconds()
        print(f"\nvoids stage on 2048² fields (1 % points), s: {seconds}")
        rows.append({"stage_seconds_2048": seconds})
    if a.json:
        a.json.write_text("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    main()
