"""``fusionseg compare``: train variants of configs once per seed, score them at several EDS budgets, tabulate.

fusionseg compare --config configs/default.yaml --grid model.backbone=sage,gat --fractions 0.01 0.05 \\
    --seeds 0 1 2 --budget 20 --baselines --out runs/compare
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fusionseg.argtypes import ArgumentParser
from fusionseg.baselines import CLASSIC_METHODS
from fusionseg.build import BuildError, check_config
from fusionseg.evaluation.sweep import Sweep, SweepError, expand, parse_grid, run_sweep

EPILOG = """\
--grid takes any config key (as `fusionseg fit --print_config` shows it) and comma-separated values,
parsed as YAML (48, null, [0.001,0.05], gat); several --grid flags give the product of their values.
A re-run with the same --out skips finished jobs (out/jobs/*.json); Ctrl-C keeps the finished rows.
Outputs: out/results.csv (one row per variant x fraction x seed), out/summary.md (mean ± std over
seeds, paired comparison against the first variant), out/miou_vs_fraction.png.
"""


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="fusionseg compare",
        description="Benchmark variants of configs over seeds and EDS fractions on a fixed held-out split.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", nargs="+", type=Path, required=True, help="base config(s), each a variant family")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2", help="values of one config key")
    p.add_argument("--fractions", nargs="+", type=float, default=[0.01], help="EDS fractions to score (0.01 = 1 %%)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds (seed_everything)")
    p.add_argument("--budget", type=int, default=None, help="epochs per training (default: the config's max_epochs)")
    p.add_argument(
        "--baselines",
        nargs="*",
        default=None,
        metavar="METHOD",
        help=f"classic methods as extra rows (none named: all of {', '.join(CLASSIC_METHODS)})",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder (re-use it to resume)")
    p.add_argument("--jobs", type=int, default=1, help="trainings in parallel processes (default 1: one by one)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per job (default: torch's; cores / jobs with --jobs > 1)",
    )
    return p


def compare_main(argv: list[str]) -> int:
    """Run the sweep; 0 when every job finished, 1 when some failed, 2 on a bad specification, 130 on Ctrl-C."""
    a = parser().parse_args(argv)
    if a.jobs < 1 or (a.threads is not None and a.threads < 1):
        print("fusionseg compare: --jobs and --threads must be >= 1.", file=sys.stderr)
        return 2
    try:
        grid = [parse_grid(g) for g in a.grid]
        baselines = list(CLASSIC_METHODS) if a.baselines == [] else list(a.baselines or [])
        sweep = Sweep(expand(a.config, grid), a.seeds, a.fractions, a.budget, baselines)
    except SweepError as err:
        print(f"fusionseg compare: {err}", file=sys.stderr)
        return 2
    try:  # every variant's configuration parses before anything is written or trained
        for v in sweep.variants:
            check_config(list(v.configs), {**v.overrides, "trainer.max_time": None})
    except BuildError as err:
        print(f"fusionseg compare: {err}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        result = run_sweep(sweep, a.out, jobs=a.jobs, threads=a.threads, log=lambda m: print(m, file=sys.stderr))
    except KeyboardInterrupt:
        return 130
    except (SweepError, BuildError) as err:
        print(f"fusionseg compare: {err}", file=sys.stderr)
        return 2
    for job_id, message in result.failed.items():
        print(f"failed: {job_id}: {message}", file=sys.stderr)
    print(f"{len(result.rows)} rows in {time.perf_counter() - start:.0f} s; wrote", file=sys.stderr)
    for path in result.files.values():
        print(f"  {path}", file=sys.stderr)
    return 1 if result.failed else 0
