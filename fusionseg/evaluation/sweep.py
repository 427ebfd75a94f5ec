"""A sweep: configs x grid overrides x seeds, trained for a fixed number of epochs, scored at several EDS budgets.

Each *variant* (a base config plus one value per grid key) is trained once per seed (``seed_everything``:
weight initialisation, batch order; the data splits stay fixed by ``data.seed``) for ``budget`` epochs
with ``trainer.max_time`` switched off, so results do not depend on machine load. The trained model is
scored on the config's held-out test split, rebuilt at every EDS fraction (same fields, same point
positions for a given fraction), with `fusionseg.models.metrics.Scores`. Classic methods
(`fusionseg.baselines.CLASSIC_METHODS`) give extra rows from the same fields and the same point labels.

Every (variant, seed) or (baseline, test split) pair is one *job*; a finished job is one JSON file under
``out/jobs/`` written atomically, so a re-run with the same ``out`` skips it and an interrupted sweep
keeps its finished rows. ``results.csv``, ``summary.md`` and the plot are rebuilt from those files.

This module runs the jobs (`run_sweep`); planning is `sweep_plan`, one job `sweep_jobs`, the results
`sweep_report`. Their public names are re-exported here.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import torch

from fusionseg.evaluation.sweep_jobs import (
    QUIET_TRAINER,
    classic_predictor,
    model_predictor,
    quiet_lightning,
    run_job,
    score,
    test_split,
    train,
)
from fusionseg.evaluation.sweep_plan import (
    Job,
    Sweep,
    SweepError,
    Variant,
    expand,
    parse_grid,
    parse_value,
    split_values,
)
from fusionseg.evaluation.sweep_report import (
    CSV_COLUMNS,
    HIGHER_IS_BETTER,
    METRICS,
    summarise,
    write_csv,
    write_results,
    write_summary,
)


# ----------------------------------------------------------------------------- running
@dataclass
class SweepResult:
    """Rows of the finished jobs (in sweep order), the jobs not finished, the files written, failures by job id."""

    rows: list[dict]
    missing: list[Job]
    files: dict[str, Path]
    failed: dict[str, str] = field(default_factory=dict)


def _load(path: Path, job: Job) -> dict | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if record.get("spec") == json.loads(json.dumps(job.spec(), default=str)) else None


def _worker(job: Job, out: Path, threads: int | None) -> dict:
    if threads:
        torch.set_num_threads(threads)
    return run_job(job, out)


def run_sweep(
    sweep: Sweep, out: Path, jobs: int = 1, threads: int | None = None, log: Callable[[str], None] = print
) -> SweepResult:
    """Run the sweep's unfinished jobs (``jobs`` processes at a time; 1 = in this process) and write the results.

    ``threads``: torch threads per job (None: torch's default, or cpu_count // jobs with ``jobs`` > 1).
    A ``KeyboardInterrupt`` stops the sweep after writing the results of the jobs finished so far.
    """
    out = Path(out)
    (out / "jobs").mkdir(parents=True, exist_ok=True)
    todo = sweep.jobs()
    done = {j.id: r for j in todo if (r := _load(out / "jobs" / f"{j.id}.json", j)) is not None}
    pending = [j for j in todo if j.id not in done]
    log(f"{len(todo)} jobs: {len(done)} finished before (skipped), {len(pending)} to run, {jobs} at a time")
    failed: dict[str, str] = {}
    try:
        for i, (job, record) in enumerate(_execute(pending, out, jobs, threads), 1):
            if isinstance(record, Exception):
                failed[job.id] = f"{type(record).__name__}: {record}"
                log(f"[{i}/{len(pending)}] {_what(job)} FAILED: {failed[job.id]}")
                continue
            done[job.id] = record
            log(f"[{i}/{len(pending)}] {_describe(job, record)}")
    except KeyboardInterrupt:
        log(f"interrupted: {len(done)} of {len(todo)} jobs finished; run the same command again to resume")
        write_results(sweep, [done[j.id] for j in todo if j.id in done], out)
        raise
    finally:
        with contextlib.suppress(OSError):
            (out / ".work").rmdir()  # only when empty: each job removes its own checkpoint folder
    records = [done[j.id] for j in todo if j.id in done]
    rows, files = write_results(sweep, records, out)
    return SweepResult(rows, [j for j in todo if j.id not in done], files, failed)


def _execute(pending: list[Job], out: Path, jobs: int, threads: int | None) -> Iterator[tuple[Job, dict | Exception]]:
    """Run ``pending`` and yield each job with its record, or the exception that stopped it (the sweep goes on)."""
    if jobs <= 1:
        if threads:
            torch.set_num_threads(threads)
        for job in pending:
            try:
                yield job, run_job(job, out)
            except Exception as err:  # noqa: BLE001 (one broken variant must not lose the others' results)
                yield job, err
        return
    threads = threads or max(1, (os.cpu_count() or 1) // jobs)
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"))
    try:
        futures = {pool.submit(_worker, job, out, threads): job for job in pending}
        while futures:
            finished, _ = wait(futures, return_when=FIRST_COMPLETED)
            for fut in finished:
                job = futures.pop(fut)
                err = fut.exception()
                yield job, err if err is not None else fut.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _what(job: Job) -> str:
    return f"{job.name} seed {job.seed}" if job.method is None else f"{job.name} (baseline)"


def _describe(job: Job, record: dict) -> str:
    first = record["rows"][0]
    train = f", trained {first['train_seconds']} s" if first["train_seconds"] is not None else ""
    return f"{_what(job)}: mIoU {first['miou']:.3f} at {100 * first['fraction']:g} % EDS{train} ({record['seconds']} s)"


__all__ = [
    "CSV_COLUMNS",
    "HIGHER_IS_BETTER",
    "METRICS",
    "QUIET_TRAINER",
    "Job",
    "Sweep",
    "SweepError",
    "SweepResult",
    "Variant",
    "classic_predictor",
    "expand",
    "model_predictor",
    "parse_grid",
    "parse_value",
    "quiet_lightning",
    "run_job",
    "run_sweep",
    "score",
    "split_values",
    "summarise",
    "test_split",
    "train",
    "write_csv",
    "write_results",
    "write_summary",
]
