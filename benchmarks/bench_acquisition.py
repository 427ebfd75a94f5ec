"""Adaptive acquisition: mIoU of the shipped model against the number of spectra, per planner strategy.

    python benchmarks/bench_acquisition.py run --split test --case synthetic --out docs/results/acquisition.jsonl
    python benchmarks/bench_acquisition.py run --split test --case repka2025 --draws 4 \
        --out docs/results/acquisition.jsonl
    python benchmarks/bench_acquisition.py report docs/results/acquisition.jsonl --plot docs/acquisition_curves.png
    python benchmarks/bench_acquisition.py plan-time     # seconds per planning step at 1024^2 and 2048^2

Cases: ``synthetic``, twelve 128^2 simulated fields (two per rock type) of the split (``test``: base seed 2000,
the accuracy benchmark's fields; ``validation``: 1000, where settings are chosen); ``repka2025``, the real BSE
field and phase map of Repka et al. (2025) with spectra simulated per mapped mineral (as the accuracy benchmark
does). ``--draws`` loops with different seeds per field, scores pooled (one draw of random points swings the
split's mIoU by ~0.02). Each strategy runs the planner loop to the budget in
``BATCHES`` batches, spectra drawn only where the planner asks; the final map is scored split-wide (mIoU, pixel
accuracy) with the measured-phases ceiling (the truth where some spectrum hit the phase). Static designs
(random, grid, stratified, superpixel) do not read the map, so they are segmented once, at the end.
``run`` appends one JSON line per (case, split, strategy, budget) and skips those already in ``--out``
(resumable); the committed run is ``docs/results/acquisition.jsonl``. ``plan-time``: a 0.3 % budget in
``BATCHES`` batches on a simulated granite field (the first map by the shipped model, later confidence maps drawn
at random: the planner's own time), the BSE regions built in the background meanwhile.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
ROCKS = ["granite", "basalt", "sulfide-ore", "carbonate", "sandstone", "grain-mount"]
STRATEGIES = ("random", "grid", "stratified", "superpixel", "unmeasured-regions", "uncertainty", "hybrid")
BUDGETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.02)
SPLIT_SEEDS = {"validation": 1000, "test": 2000}
BATCHES = 12  # the planner's DEFAULT_BATCHES (batch = budget / 12), chosen on the validation split


# ----------------------------------------------------------------------------- fields
def synthetic_fields(split: str) -> list:
    """The split's twelve 128^2 simulated fields (`SyntheticField`: phase map, BSE, spectra on demand)."""
    from fusionseg.registry import DATA_SOURCES

    source = DATA_SOURCES.create("sem-synthetic", num_fields=12, size=128, rocks=ROCKS, eds_fraction=0.01,
                                 seed=SPLIT_SEEDS[split])  # fmt: skip
    return [source.field(i) for i in range(len(source))]


def repka_field():
    """The Repka et al. (2025) field as a `SyntheticField`: real BSE and phase map, simulated spectra per mapped
    mineral (`benchmarks.bench_accuracy.repka_samples`' mapping and spectrum model)."""
    import tifffile
    from skimage import io

    from benchmarks.bench_accuracy import REPKA, repka_mapping
    from fusionseg.sem.data.synthetic.field import SyntheticField
    from fusionseg.sem.meta import EnergyAxis
    from fusionseg.sem.minerals import class_index, class_names
    from fusionseg.sem.physics import SpectrumModel

    mapping, _ = repka_mapping()
    bse = io.imread(REPKA / "bse.png").astype(np.float32) / 65535
    phases = tifffile.imread(REPKA / "phases.tiff")
    lut = np.full(int(phases.max()) + 1, -1, dtype=np.int64)
    for pid, name in mapping.items():
        lut[pid] = class_index(name)
    spectra = SpectrumModel(class_names(), EnergyAxis(), 20.0, 130.0, 1000.0)
    return SyntheticField(lut[phases], bse, "repka2025", 1.0, spectra, seed=11)


# ----------------------------------------------------------------------------- one loop
def acquire(fld, strategy: str, budget: float, model, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The final map of one planner loop on ``fld``, the measured (row, col) pixels and the slowest plan step (s)."""
    from fusionseg.acquisition import Planner, run_acquisition
    from fusionseg.acquisition.strategies import RandomDesign, StaticDesign
    from fusionseg.sem.acquire import model_segmenter

    rng = np.random.default_rng([seed, 99])  # the simulator's counting noise
    segmenter = model_segmenter(model)
    planner = Planner(fld.bse, budget=budget, batch_size=None, strategy=strategy,
                      segmenter=segmenter, meta=fld.to_sample(np.zeros((1, 2))).meta, seed=seed)  # fmt: skip
    measure = lambda rc: fld.spectra_at(rc, rng)  # noqa: E731
    if isinstance(planner.strategy, StaticDesign | RandomDesign):  # the map is not read: segment once at the end
        while not planner.done:
            coords = planner.propose()
            planner.add(coords, measure(coords))
        labels = segmenter(planner.sample())[0]
    else:
        labels = run_acquisition(planner, measure)[-1].labels
    return labels, planner.coords, max(planner.plan_seconds)


def score(fields: list, strategy: str, budget: float, model, draws: int = 1) -> dict:
    """Split-wide scores of the final maps of ``strategy`` at ``budget`` over ``fields`` x ``draws`` loops."""
    from fusionseg.baselines import measured_phases_ceiling
    from fusionseg.models.metrics import Scores
    from fusionseg.sem.minerals import class_names

    k = len(class_names())
    scores, ceiling, points, plan_s, start = Scores(k), Scores(k), [], [], time.perf_counter()
    for i, fld in enumerate(fields):
        for draw in range(draws):
            labels, coords, slowest = acquire(fld, strategy, budget, model, seed=i + 100 * draw)
            scores.add(labels, fld.labels)
            ceiling.add(measured_phases_ceiling(fld.labels, fld.labels[coords[:, 0], coords[:, 1]]), fld.labels)
            points.append(len(coords))
            plan_s.append(slowest)
    s, c = scores.summary(class_names()), ceiling.summary(class_names())
    return {"strategy": strategy, "budget": budget, "points_per_field": round(float(np.mean(points)), 1),
            "miou": s["miou"], "pixel_acc": s["pixel_acc"], "ceiling_miou": c["miou"],
            "slowest_plan_step_s": round(float(max(plan_s)), 3),
            "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip


def run(args: argparse.Namespace) -> None:
    """Every (strategy, budget) of one case and split not yet in ``args.out``, one JSON line each."""
    from fusionseg.pretrain import load_weights, shipped_weights_path

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    done = set()
    if out.is_file():
        for line in out.read_text().splitlines():
            r = json.loads(line)
            done.add((r["case"], r["split"], r["strategy"], r["budget"]))
    model = load_weights(shipped_weights_path("default"))
    fields = synthetic_fields(args.split) if args.case == "synthetic" else [repka_field()]
    draws = args.draws
    for strategy in args.strategies.split(","):
        for budget in (float(b) for b in args.budgets.split(",")):
            if (args.case, args.split, strategy, budget) in done:
                continue
            row = {"case": args.case, "split": args.split, "fields": len(fields), "draws": draws, "batches": BATCHES,
                   **score(fields, strategy, budget, model, draws)}  # fmt: skip
            print(json.dumps(row), flush=True)
            out.parent.mkdir(parents=True, exist_ok=True)
            with out.open("a") as fh:
                fh.write(json.dumps(row) + "\n")


# ----------------------------------------------------------------------------- report
def report(args: argparse.Namespace) -> None:
    """Markdown tables (mIoU, and the measured-phases ceiling) per case and split; optionally the curves."""
    rows = [json.loads(line) for line in Path(args.results).read_text().splitlines() if line.strip()]
    groups = sorted({(r["case"], r["split"]) for r in rows})
    for case, split in groups:
        sub = [r for r in rows if (r["case"], r["split"]) == (case, split)]
        strategies = [s for s in STRATEGIES if any(r["strategy"] == s for r in sub)]
        budgets = sorted({r["budget"] for r in sub})
        cell = {(r["strategy"], r["budget"]): r for r in sub}
        print(f"\n{case} ({split}), mIoU (measured-phases ceiling):\n")
        print("| EDS budget | " + " | ".join(strategies) + " |")
        print("| --- " * (len(strategies) + 1) + "|")
        for b in budgets:
            vals = [cell.get((s, b)) for s in strategies]
            text = [f"{v['miou']:.3f} ({v['ceiling_miou']:.2f})" if v else "" for v in vals]
            print(f"| {100 * b:g} % | " + " | ".join(text) + " |")
    if args.plot:
        plot(rows, groups, Path(args.plot))


def plot(rows: list[dict], groups: list[tuple[str, str]], path: Path) -> None:
    """mIoU against the EDS budget (log axis), one panel per case and split, one line per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(groups), figsize=(5.2 * len(groups), 4.2), squeeze=False)
    for ax, (case, split) in zip(axes[0], groups, strict=True):
        for strategy in STRATEGIES:
            pts = sorted((r["budget"], r["miou"]) for r in rows if (r["case"], r["split"], r["strategy"]) ==
                         (case, split, strategy))  # fmt: skip
            if pts:
                style = "-o" if strategy in ("uncertainty", "random") else "--."
                ax.plot([100 * b for b, _ in pts], [m for _, m in pts], style, label=strategy, ms=4)
        ax.set_xscale("log")
        ax.set_xlabel("EDS spectra (% of pixels)")
        ax.set_ylabel("mIoU")
        ax.set_title(f"{case} ({split})")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot written to {path}")


# ----------------------------------------------------------------------------- planning time
def plan_time(sizes: tuple[int, ...] = (1024, 2048), steps: int = 3) -> None:
    """Seconds of `Planner.propose` (what the microscope waits for the planner) per strategy and field size.

    The first update maps the field with the shipped model (its seconds reported as ``first_map_s``; the BSE
    regions are built in the background meanwhile); later updates return a random confidence map at once, so
    the later steps time the planner alone.
    """
    from fusionseg.acquisition import Planner
    from fusionseg.pretrain import load_weights, shipped_weights_path
    from fusionseg.sem.acquire import model_segmenter
    from fusionseg.sem.data.synthetic.field import simulate_field

    torch.set_num_threads(2)
    model = load_weights(shipped_weights_path("default"))
    for n in sizes:
        fld = simulate_field("granite", n, seed=0)
        conf = np.random.default_rng(0).uniform(0.3, 1.0, (n, n)).astype(np.float32)
        for strategy in ("uncertainty", "unmeasured-regions", "hybrid"):
            real = model_segmenter(model)
            batch = round(0.003 / BATCHES * n * n)
            segmenter = lambda s, n=n, conf=conf, real=real, batch=batch: (  # noqa: E731
                real(s) if s.num_points <= batch else (np.zeros((n, n), np.int64), conf)
            )
            planner = Planner(fld.bse, budget=0.003, batch_size=batch, strategy=strategy, segmenter=segmenter,
                              meta=fld.to_sample(np.zeros((1, 2))).meta)  # fmt: skip
            seconds, first_map = [], 0.0
            for _ in range(steps + 2):
                start = time.perf_counter()
                coords = planner.propose()
                seconds.append(time.perf_counter() - start)
                planner.add(coords, fld.spectra_at(coords))
                start = time.perf_counter()
                planner.update()
                first_map = first_map or time.perf_counter() - start
            record = {"size": n, "strategy": strategy, "batch": batch, "first_map_s": round(first_map, 1),
                      "first_two_steps_s": [round(x, 2) for x in seconds[:2]],
                      "median_later_step_s": round(float(np.median(seconds[2:])), 3),
                      "slowest_step_s": round(max(seconds), 2)}  # fmt: skip
            print(json.dumps(record), flush=True)


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="bench_acquisition", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="mIoU against the EDS budget per strategy")
    r.add_argument("--case", choices=("synthetic", "repka2025"), default="synthetic")
    r.add_argument("--split", choices=tuple(SPLIT_SEEDS), default="validation")
    r.add_argument("--strategies", default=",".join(STRATEGIES))
    r.add_argument("--budgets", default=",".join(map(str, BUDGETS)), help="shares of the pixels, comma-separated")
    r.add_argument("--draws", type=int, default=3, help="loops (seeds) per field, strategy and budget, pooled")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--out", default="benchmarks/results/acquisition.jsonl")
    t = sub.add_parser("report", help="tables (and --plot) from a results file")
    t.add_argument("results")
    t.add_argument("--plot")
    sub.add_parser("plan-time", help="seconds per planning step at 1024^2 and 2048^2")
    args = p.parse_args(argv)
    {"run": run, "report": report, "plan-time": lambda a: plan_time()}[args.command](args)


if __name__ == "__main__":
    main(sys.argv[1:])
