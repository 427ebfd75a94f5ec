"""``fusionseg predict`` over many fields with one process and with DDP processes (CPU, gloo): fields per second,
their ratio, and whether the outputs are the same.

    .venv/bin/python benchmarks/bench_distributed.py [--fields 16] [--size 512] [--processes 2] \
        [--json benchmarks/results/distributed.json]

Both runs map the same simulated predict split (``configs/default.yaml``'s rocks, 1 % EDS) with the shipped
weights, one field per batch, from a cold start (wall time of the whole command: start-up, simulation, mapping,
writing). One process uses every core as torch threads; each of P processes uses cores / P
(``OMP_NUM_THREADS``), so both runs use the whole machine. Outputs: every field's phase TIFF must be equal
(labels); the confidences may differ by float round-off of the thread count (max difference reported).
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


def predict(out: Path, fields: int, size: int, processes: int) -> float:
    """Wall seconds of ``fusionseg predict`` into ``out/predictions`` with ``processes`` DDP processes."""
    from fusionseg.paths import DEFAULT_CONFIG, DEFAULT_WEIGHTS

    threads = max(1, (os.cpu_count() or 1) // processes)
    cmd = [sys.executable, "-m", "fusionseg.cli", "predict", "--config", str(DEFAULT_CONFIG),
           f"--ckpt_path={DEFAULT_WEIGHTS}", f"--data.predict_fields={fields}", f"--data.source_kwargs.size={size}",
           "--data.batch_size=1", "--trainer.accelerator=cpu", f"--trainer.devices={processes}",
           f"--trainer.default_root_dir={out}", f"--trainer.logger.init_args.save_dir={out}",
           "--trainer.enable_progress_bar=false"]  # fmt: skip
    if processes > 1:
        cmd.append("--trainer.strategy=ddp")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"predict with {processes} process(es) failed:\n{done.stderr[-3000:]}")
    return seconds


def field_maps(predictions: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per field folder: (labels, uncertainty) as written."""
    import tifffile

    return {
        d.name: (tifffile.imread(d / f"{d.name}_phases.tif"), tifffile.imread(d / f"{d.name}_uncertainty.tif"))
        for d in sorted(predictions.iterdir())
        if d.is_dir()
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fields", type=int, default=16)
    p.add_argument("--size", type=int, default=512, help="field side in pixels")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "distributed.json")
    a = p.parse_args(argv)
    rows, maps = [], {}
    with tempfile.TemporaryDirectory(prefix="bench_distributed.") as tmp:
        for processes in (1, a.processes):
            seconds = predict(Path(tmp) / f"p{processes}", a.fields, a.size, processes)
            maps[processes] = field_maps(Path(tmp) / f"p{processes}" / "predictions")
            rows.append({"processes": processes, "seconds": round(seconds, 1),
                         "fields_per_s": round(len(maps[processes]) / seconds, 4)})  # fmt: skip
            print(f"{processes} process(es): {len(maps[processes])} fields in {seconds:.1f} s", file=sys.stderr)
    one, many = maps[1], maps[a.processes]
    same_fields = one.keys() == many.keys() and len(one) == a.fields
    labels_equal = same_fields and all(np.array_equal(one[k][0], many[k][0]) for k in one)
    conf_diff = max(float(np.abs(one[k][1] - many[k][1]).max()) for k in one) if same_fields else float("nan")
    report = {
        "fields": a.fields, "size": a.size, "cpus": os.cpu_count(), "runs": rows,
        "speedup": round(rows[0]["seconds"] / rows[1]["seconds"], 3), "each_field_once": same_fields,
        "labels_equal": labels_equal, "max_confidence_difference": conf_diff,
    }  # fmt: skip
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(report, indent=1))
    print(json.dumps(report))
    print("\n| processes | seconds | fields/s |\n| --- | --- | --- |", file=sys.stderr)
    for r in rows:
        print(f"| {r['processes']} | {r['seconds']} | {r['fields_per_s']} |", file=sys.stderr)
    print(f"speed-up {report['speedup']}x; labels equal: {labels_equal}; confidence max diff {conf_diff:.2e}",
          file=sys.stderr)  # fmt: skip
    return 0 if labels_equal else 1


if __name__ == "__main__":
    sys.exit(main())
