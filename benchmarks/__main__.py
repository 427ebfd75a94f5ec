"""Run every benchmark, keep its JSON under benchmarks/results/, render README.md and plots there.

python -m benchmarks [--quick] [--only simulator graphs inference accuracy] [--render]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.report import render

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SUITES = {  # run in this order: the accuracy suite is the longest
    "simulator": ["bench_simulator.py"],
    "graphs": ["bench_graphs.py"],
    "inference": ["bench_inference.py"],
    "accuracy": ["bench_accuracy.py"],
}
QUICK_ARGS = {
    "graphs": ["--quick"],
    "inference": ["--quick", "--repeats", "2"],
    "accuracy": ["--quick"],
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    p.add_argument("--only", nargs="+", choices=sorted(SUITES), default=list(SUITES))
    p.add_argument("--render", action="store_true", help="only re-render README.md and plots from existing JSON")
    a = p.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    if a.render:
        print(f"-> {render(RESULTS)}", file=sys.stderr)
        return 0
    start = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    failed = []
    for name in a.only:
        script = HERE / SUITES[name][0]
        cmd = [sys.executable, str(script), *(QUICK_ARGS.get(name, []) if a.quick else [])]
        print(f"[{name}] {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
        out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env, cwd=HERE.parent)  # stderr: live
        if out.returncode != 0:
            print(f"[{name}] failed with exit status {out.returncode}", file=sys.stderr)
            failed.append(name)
            continue
        report = json.loads(out.stdout[out.stdout.find("{") :])
        report["machine"] = {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "date": datetime.date.today().isoformat(),
            "quick": a.quick,
        }
        (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2))
        print(f"[{name}] -> {RESULTS / f'{name}.json'} ({time.perf_counter() - start:.0f} s so far)", file=sys.stderr)
    print(f"-> {render(RESULTS)}; total {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
