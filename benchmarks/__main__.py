"""Run every benchmark and keep its JSON under benchmarks/results/.

python -m benchmarks [--quick] [--only simulator graphs inference accuracy]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SUITES = {
    "simulator": ["bench_simulator.py"],
    "graphs": ["bench_graphs.py"],
    "inference": ["bench_inference.py"],
    "accuracy": ["bench_accuracy.py"],
}
QUICK_ARGS = {
    "graphs": ["--quick"],
    "inference": ["--sizes", "256", "1024", "--repeats", "2"],
    "accuracy": ["--quick"],
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    p.add_argument("--only", nargs="+", choices=sorted(SUITES), default=sorted(SUITES))
    a = p.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    failed = []
    for name in a.only:
        script = HERE / SUITES[name][0]
        if not script.exists():
            print(f"[{name}] {script.name} missing, skipped", file=sys.stderr)
            continue
        cmd = [sys.executable, str(script), *(QUICK_ARGS.get(name, []) if a.quick else [])]
        print(f"[{name}] {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=HERE.parent)
        if out.returncode != 0:
            print(out.stderr[-3000:], file=sys.stderr)
            failed.append(name)
            continue
        start = out.stdout.find("{")
        report = json.loads(out.stdout[start:])
        report["machine"] = {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "date": datetime.date.today().isoformat(),
            "quick": a.quick,
        }
        (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2))
        print(f"[{name}] -> {RESULTS / f'{name}.json'}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
