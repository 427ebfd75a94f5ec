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
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import itertools
import json
import logging
import math
import os
import re
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from fusionseg.build import Built, ConfigLike, build
from fusionseg.models.metrics import Scores
from fusionseg.sample import Sample

QUIET_TRAINER = {"trainer.logger": False, "trainer.enable_progress_bar": False, "trainer.enable_model_summary": False}
METRICS = ("miou", "pixel_acc", "modal_area_error_percent", "train_seconds", "infer_px_per_s")
HIGHER_IS_BETTER = {"miou": True, "pixel_acc": True, "modal_area_error_percent": False, "train_seconds": False,
                    "infer_px_per_s": True}  # fmt: skip
CSV_COLUMNS = (
    "variant", "kind", "config", "overrides", "seed", "fraction", "miou", "pixel_acc", "modal_area_error_percent",
    "miou_mean_over_fields", "train_seconds", "epochs", "infer_px_per_s",
)  # fmt: skip


class SweepError(ValueError):
    """A sweep specification that cannot run; the message names the problem and the fix."""


# ----------------------------------------------------------------------------- what to run
def parse_value(text: str) -> Any:
    """A grid value as YAML reads it: ``48`` -> 48, ``null`` -> None, ``[0.001, 0.05]`` -> list, ``gat`` -> 'gat'."""
    return yaml.safe_load(text) if text.strip() else text


def split_values(text: str) -> list[str]:
    """Split ``v1,v2,...`` on commas outside brackets and braces (``[1,2],[3,4]`` is two values)."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "[{"
        depth -= ch in "]}"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return [*parts, current]


def parse_grid(text: str) -> tuple[str, list[Any]]:
    """``"model.backbone=sage,gat"`` -> ``("model.backbone", ["sage", "gat"])``."""
    key, sep, values = text.partition("=")
    key = key.strip().removeprefix("--")
    if not sep or not key or not values.strip():
        raise SweepError(f"--grid {text!r} is not KEY=V1,V2,...; e.g. --grid model.backbone=sage,gat.")
    return key, [parse_value(v) for v in split_values(values)]


def show(value: Any) -> str:
    """A value as the command line spells it."""
    return value if isinstance(value, str) else json.dumps(value)


@dataclass(frozen=True)
class Variant:
    """A base config (or several, later ones winning) plus dotted-key overrides, and its display name."""

    name: str
    configs: tuple[str, ...]
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def spec(self) -> dict:
        return {"configs": [_config_fingerprint(c) for c in self.configs], "overrides": dict(self.overrides)}


def _config_fingerprint(config: str) -> dict:
    """Path and content hash of a config file, so an edited config is re-run, not resumed."""
    return {"path": config, "sha1": hashlib.sha1(Path(config).read_bytes()).hexdigest()}


def expand(configs: Sequence[str | Path], grid: Sequence[tuple[str, Sequence[Any]]]) -> list[Variant]:
    """The product of configs and grid values, named by what varies (``backbone=gat``, ``default/backbone=gat``)."""
    if not configs:
        raise SweepError("No config given; pass --config configs/default.yaml (one or more).")
    for c in configs:
        if not Path(c).is_file():
            raise SweepError(f"Config {c} does not exist; pass a YAML file such as configs/default.yaml.")
    keys = [k for k, _ in grid]
    if len(set(keys)) != len(keys):
        raise SweepError(f"A grid key is given twice ({', '.join(keys)}); put all its values in one --grid KEY=V1,V2.")
    for k, values in grid:
        if not values:
            raise SweepError(f"--grid {k}= has no values; give at least one.")
    varying = [k for k, values in grid if len(values) > 1]
    short = _short_names(varying)
    stems = [Path(c).stem for c in configs]
    variants = []
    for config, stem in zip(configs, stems, strict=True):
        for combo in itertools.product(*(values for _, values in grid)):
            overrides = dict(zip(keys, combo, strict=True))
            parts = [f"{short[k]}={show(overrides[k])}" for k in varying]
            name = "/".join(([stem] if len(configs) > 1 or not parts else []) + ([",".join(parts)] if parts else []))
            variants.append(Variant(name, (str(config),), overrides))
    if len({v.name for v in variants}) != len(variants):
        raise SweepError("Two variants get the same name (the same config given twice?); give each config once.")
    return variants


def _short_names(keys: Sequence[str]) -> dict[str, str]:
    """Last component of each dotted key, or the full key where two keys share their last component."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last, strict=True)}


@dataclass(frozen=True)
class Job:
    """One training (``method`` None: the variant at ``seed``) or one classic method on the variant's test split."""

    variant: Variant
    fractions: tuple[float, ...]
    seed: int | None = None
    budget: int | None = None
    method: str | None = None

    @property
    def name(self) -> str:
        return self.method if self.method else self.variant.name

    def spec(self) -> dict:
        if self.method:  # a baseline depends only on the test split: the configs and their data overrides
            data = {k: v for k, v in self.variant.overrides.items() if k.startswith("data.")}
            return {"method": self.method, "configs": self.variant.spec()["configs"], "data": data,
                    "fractions": list(self.fractions)}  # fmt: skip
        fractions = list(self.fractions)
        return {**self.variant.spec(), "seed": self.seed, "budget_epochs": self.budget, "fractions": fractions}

    @property
    def id(self) -> str:
        digest = hashlib.sha1(_key(self.spec()).encode()).hexdigest()[:10]
        slug = re.sub(r"[^A-Za-z0-9_.=-]+", "_", self.name)[:60]
        return f"{slug}-s{self.seed}-{digest}" if self.method is None else f"{slug}-{digest}"


def _key(spec: dict) -> str:
    return json.dumps(spec, sort_keys=True, default=str)


@dataclass
class Sweep:
    """What to run: the variants, the seeds, the EDS fractions, the epoch budget and the classic baselines."""

    variants: list[Variant]
    seeds: Sequence[int] = (0,)
    fractions: Sequence[float] = (0.01,)
    budget: int | None = None
    baselines: Sequence[str] = ()

    def __post_init__(self) -> None:
        from fusionseg.baselines import CLASSIC_METHODS

        if not self.variants:
            raise SweepError("The sweep has no variant; pass --config (and --grid KEY=V1,V2 to vary a key).")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise SweepError(f"--seeds must be distinct integers, got {list(self.seeds)}.")
        bad = [f for f in self.fractions if not 0 < f <= 1]
        if not self.fractions or bad:
            raise SweepError(f"--fractions must be in (0, 1] (0.01 = 1 % of pixels), got {list(self.fractions)}.")
        if self.budget is not None and self.budget < 1:
            raise SweepError(f"--budget is epochs per training and must be >= 1, got {self.budget}.")
        unknown = [m for m in self.baselines if m not in CLASSIC_METHODS]
        if unknown:
            raise SweepError(f"Unknown baseline(s) {unknown}; choose from {', '.join(CLASSIC_METHODS)}.")
        clash = [k for v in self.variants for k in v.overrides if k in ("trainer.max_epochs", "seed_everything")]
        if clash:
            raise SweepError(f"{clash[0]} is set by the sweep (--budget, --seeds); remove it from --grid.")

    def jobs(self) -> list[Job]:
        """Training jobs (seed-major, so every variant has a first seed early), then one job per baseline and split."""
        fractions = tuple(self.fractions)
        trained = [Job(v, fractions, s, self.budget) for s in self.seeds for v in self.variants]
        splits = {_key(Job(v, fractions, method="-").spec()): v for v in self.variants}  # one per distinct test split
        return trained + [Job(v, fractions, method=m) for m in self.baselines for v in splits.values()]


# ----------------------------------------------------------------------------- training and scoring
def train(
    config: ConfigLike | Sequence[ConfigLike],
    overrides: Mapping[str, Any],
    workdir: Path,
    callbacks: Sequence[Any] = (),
) -> tuple[Built, dict]:
    """Build and fit ``config`` + ``overrides`` (quiet trainer, checkpoints under ``workdir``); model in eval mode.

    ``callbacks``: extra Lightning callbacks for this fit (e.g. early stopping).

    Returns the built run and its budget: epochs run, training fields, batch size, seconds of ``fit``.
    """
    built = build(config, {**QUIET_TRAINER, "trainer.default_root_dir": str(workdir), **overrides})
    built.trainer.callbacks.extend(callbacks)
    start = time.perf_counter()
    built.trainer.fit(built.model, datamodule=built.datamodule)
    seconds = time.perf_counter() - start
    hp = built.datamodule.hparams
    budget = {"epochs": built.trainer.current_epoch, "train_fields": hp.get("train_fields"),
              "batch_size": hp.get("batch_size"), "seconds": round(seconds, 1)}  # fmt: skip
    built.model.eval()
    return built, budget


_TEST_SPLITS: dict[str, list[Sample]] = {}
_TEST_SPLITS_KEPT = 4  # (split, fraction) pairs cached; 12 fields of 128² at 5 % EDS hold ~80 MB of spectra


def test_split(datamodule: Any, fraction: float) -> list[Sample]:
    """The datamodule's held-out test fields measured at ``fraction`` (point labels as its config says)."""
    hparams = getattr(datamodule, "hparams", {})
    if "eds_fraction" not in hparams or not hasattr(datamodule, "dataset"):
        raise SweepError(
            f"{type(datamodule).__name__} has no eds_fraction/dataset('test'); compare needs a "
            "FusionSegDataModule-like data section."
        )
    params = inspect.signature(type(datamodule)).parameters  # hparams also hold LightningCLI's private keys
    kwargs = {**{k: v for k, v in hparams.items() if k in params}, "eds_fraction": fraction}
    key = f"{type(datamodule).__module__}.{type(datamodule).__qualname__}:{_key(kwargs)}"
    if key not in _TEST_SPLITS:  # variants share their test split: generate (and identify) it once per process
        while len(_TEST_SPLITS) >= _TEST_SPLITS_KEPT:
            _TEST_SPLITS.pop(next(iter(_TEST_SPLITS)))
        _TEST_SPLITS[key] = list(type(datamodule)(**kwargs).dataset("test"))
    samples = _TEST_SPLITS[key]
    if not samples or any(s.target is None for s in samples):
        raise SweepError(
            "The test split has no fields with a dense target; set data.test_fields >= 1 on a labelled source."
        )
    return samples


def score(predict: Callable[[Sample], np.ndarray], samples: Sequence[Sample], class_names: Sequence[str]) -> dict:
    """`Scores` summary of ``predict`` over ``samples``, plus its throughput (pixels per second of ``predict``)."""
    scores, seconds, pixels = Scores(len(class_names)), 0.0, 0
    for s in samples:
        start = time.perf_counter()
        pred = predict(s)
        seconds += time.perf_counter() - start
        pixels += pred.size
        scores.add(pred, s.target.numpy())
    return {**scores.summary(class_names), "infer_px_per_s": round(pixels / max(seconds, 1e-9))}


def model_predictor(model: Any) -> Callable[[Sample], np.ndarray]:
    """(H, W) labels of a trained `FusionSegModule` for one sample."""

    def predict(sample: Sample) -> np.ndarray:
        with torch.inference_mode():
            return model.predict_samples([sample.to(model.device)])[0]["labels"].numpy()

    return predict


def classic_predictor(method: str, num_classes: int) -> Callable[[Sample], np.ndarray]:
    """(H, W) labels of a classic method from the sample's point labels."""
    from fusionseg.baselines import classic_map

    def predict(s: Sample) -> np.ndarray:
        return classic_map(method, s.image.numpy(), s.point_coords.numpy(), s.point_target.numpy(), num_classes)

    return predict


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silence Lightning's per-trainer banners and hints for the duration (restored afterwards)."""
    loggers = [logging.getLogger(n) for n in ("lightning", "lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*number of training batches.*")
            warnings.filterwarnings("ignore", message=".*overridden `transfer_batch_to_device`.*")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def run_job(job: Job, out: Path) -> dict:
    """Run one job, write ``out/jobs/<id>.json`` atomically, return its record (spec, rows, seconds)."""
    from fusionseg.export.writers import write_json

    start = time.perf_counter()
    workdir = out / ".work" / job.id
    try:
        with quiet_lightning():
            rows = _job_rows(job, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    record = {"id": job.id, "spec": job.spec(), "rows": rows, "seconds": round(time.perf_counter() - start, 1)}
    write_json(out / "jobs" / f"{job.id}.json", record)
    return record


def _job_rows(job: Job, workdir: Path) -> list[dict]:
    v = job.variant
    base = {"variant": job.name, "kind": "baseline" if job.method else "model", "config": ";".join(v.configs)}
    if job.method:
        data = {k: val for k, val in v.overrides.items() if k.startswith("data.")}
        dm = build(list(v.configs), {**QUIET_TRAINER, **data}).datamodule
        names = list(dm.class_names)
        predict = classic_predictor(job.method, len(names))
        base |= {"overrides": json.dumps(data, sort_keys=True), "seed": None, "train_seconds": None, "epochs": None}
    else:
        overrides = {**v.overrides, "seed_everything": job.seed, "trainer.max_time": None}
        if job.budget is not None:
            overrides["trainer.max_epochs"] = job.budget
        built, budget = train(list(v.configs), overrides, workdir)
        dm, names, predict = built.datamodule, list(built.model.class_names), model_predictor(built.model)
        base |= {"overrides": json.dumps(dict(v.overrides), sort_keys=True), "seed": job.seed,
                 "train_seconds": budget["seconds"], "epochs": budget["epochs"]}  # fmt: skip
    return [{**base, "fraction": f, **score(predict, test_split(dm, f), names)} for f in job.fractions]


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


# ----------------------------------------------------------------------------- results
def write_results(sweep: Sweep, records: Sequence[dict], out: Path) -> tuple[list[dict], dict[str, Path]]:
    """``results.csv`` (one row per variant x fraction x seed), ``summary.md`` and ``miou_vs_fraction.png``."""
    rows = [row for r in records for row in r["rows"]]
    files = {"csv": write_csv(rows, out / "results.csv")}
    table = summarise(rows)
    files["summary"] = write_summary(sweep, table, out / "summary.md")
    if rows:
        files["plot"] = plot_miou(table, out / "miou_vs_fraction.png")
    return rows, files


def write_csv(rows: Sequence[dict], path: Path) -> Path:
    """Flat CSV: the fixed columns, then ``iou_<class>`` for every class present in some row's truth."""
    import csv

    from fusionseg.export.writers import atomic_path

    classes = list(dict.fromkeys(c for r in rows for c in r.get("per_class_iou", {})))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*CSV_COLUMNS, *(f"iou_{c}" for c in classes)])
        for r in rows:
            iou = r.get("per_class_iou", {})
            w.writerow([_csv_cell(r.get(c)) for c in CSV_COLUMNS] + [_csv_cell(iou.get(c)) for c in classes])
    return path


def _csv_cell(value: Any) -> Any:
    return "" if value is None else value


@dataclass
class Cell:
    """Mean and sample standard deviation over seeds (std None with one value)."""

    values: list[float]

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def std(self) -> float | None:
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else None


def summarise(rows: Sequence[dict]) -> dict[float, dict[str, dict]]:
    """fraction -> variant -> {metric: Cell, "kind", "seeds", "paired"} with paired mIoU differences against
    the first model variant: ``paired`` = (per-seed differences, seeds won) (baselines: one value, every seed)."""
    table: dict[float, dict[str, dict]] = {}
    for r in rows:
        entry = table.setdefault(r["fraction"], {}).setdefault(
            r["variant"], {"kind": r["kind"], "seeds": {}, **{m: Cell([]) for m in METRICS}}
        )
        entry["seeds"][r["seed"]] = r["miou"]
        for m in METRICS:
            if r.get(m) is not None:
                entry[m].values.append(float(r[m]))
    for by_variant in table.values():
        models = [v for v, e in by_variant.items() if e["kind"] == "model"]
        if not models:
            continue
        ref = by_variant[models[0]]["seeds"]
        for e in by_variant.values():
            if e["kind"] == "baseline":
                diffs = [e["seeds"][None] - m for m in ref.values()]
            else:
                diffs = [e["seeds"][s] - ref[s] for s in ref if s in e["seeds"]]
            e["paired"] = (diffs, sum(d > 0 for d in diffs))
    return table


def _fmt(cell: Cell, digits: int, thousands: bool = False) -> str:
    if not cell.values:
        return "—"
    spec = f",.{digits}f" if thousands else f".{digits}f"
    text = format(cell.mean, spec)
    return text if cell.std is None else f"{text} ± {format(cell.std, spec)}"


DIGITS = {"miou": 3, "pixel_acc": 3, "modal_area_error_percent": 2, "train_seconds": 1, "infer_px_per_s": 0}
HEADERS = {"miou": "mIoU", "pixel_acc": "pixel acc.", "modal_area_error_percent": "modal-area error %",
           "train_seconds": "train s", "infer_px_per_s": "inference px/s"}  # fmt: skip


def fraction_table(by_variant: dict[str, dict]) -> list[str]:
    """Markdown rows of one EDS fraction: mean ± std per metric (bold: best mean), paired mIoU against the first."""
    models = [v for v, e in by_variant.items() if e["kind"] == "model"]
    ref = models[0] if models else None
    best = {}
    for m in METRICS:
        means = [e[m].mean for e in by_variant.values() if e[m].values]
        if means:
            best[m] = max(means) if HIGHER_IS_BETTER[m] else min(means)
    head = [HEADERS[m] for m in METRICS[:3]] + [f"Δ mIoU vs {ref}", "seeds won"] + [HEADERS[m] for m in METRICS[3:]]
    lines = ["| variant | " + " | ".join(head) + " |", "|" + " --- |" * (len(head) + 1)]
    for name, e in by_variant.items():
        cells = []
        for m in METRICS:
            text = _fmt(e[m], DIGITS[m], thousands=m == "infer_px_per_s")
            bold = e[m].values and math.isclose(round(e[m].mean, DIGITS[m]), round(best[m], DIGITS[m]))
            cells.append(f"**{text}**" if bold else text)
        diffs, wins = e.get("paired", ([], 0))
        if name == ref or not diffs:
            delta, won = "—", "—"
        else:
            spread = f" ± {Cell(diffs).std:.3f}" if len(diffs) > 1 else ""
            delta, won = f"{Cell(diffs).mean:+.3f}{spread}", f"{wins}/{len(diffs)}"
        label = f"{name} (baseline)" if e["kind"] == "baseline" else name
        lines.append(f"| {label} | " + " | ".join([*cells[:3], delta, won, *cells[3:]]) + " |")
    return lines


def write_summary(sweep: Sweep, table: dict[float, dict[str, dict]], path: Path) -> Path:
    """``summary.md``: the protocol in words, one table per EDS fraction, the plot, each variant's overrides."""
    from fusionseg.export.writers import atomic_path

    configs = sorted({c for v in sweep.variants for c in v.configs})
    plural = "" if sweep.budget == 1 else "s"
    budget = f"{sweep.budget} epoch{plural}" if sweep.budget is not None else "the config's trainer.max_epochs"
    seeds = ", ".join(str(s) for s in sweep.seeds)
    lines = [
        "# fusionseg compare",
        "",
        f"Config(s): {', '.join(configs)}. Each variant trained once per seed ({seeds}; seed_everything: weights and "
        f"batch order, the data splits stay fixed) for {budget} (trainer.max_time off), then scored on the config's "
        "held-out test split, the same fields at every EDS fraction. Cells: mean ± sample std over seeds; bold: best "
        "mean per column. Δ mIoU: paired by seed against the first variant (mean ± std of the differences); seeds "
        "won: seeds where the variant's mIoU is higher. Baselines are deterministic (one value, compared with every "
        "seed of the first variant). A difference smaller than its std is not a result.",
    ]
    for f in sorted(table):
        lines += ["", f"## EDS fraction {100 * f:g} %", "", *fraction_table(table[f])]
    if table:
        lines += ["", "![mIoU against EDS fraction](miou_vs_fraction.png)"]
    lines += ["", "Overrides per variant:", ""]
    lines += [f"- {v.name}: `{json.dumps(dict(v.overrides), sort_keys=True)}` on {', '.join(v.configs)}"
              for v in sweep.variants]  # fmt: skip
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return path


def plot_miou(table: dict[float, dict[str, dict]], path: Path) -> Path:
    """mIoU (mean, error bars: std over seeds) against the EDS fraction, one line per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fusionseg.export.writers import save_figure

    fractions = sorted(table)
    names = list(dict.fromkeys(v for f in fractions for v in table[f]))
    fig, ax = plt.subplots(figsize=(7, 4.2))
    order = [*range(0, 20, 2), *range(1, 20, 2)]  # tab20's ten strong colours, then their light shades
    colours = plt.get_cmap("tab20")([order[i % 20] for i in range(len(names))])
    for name, colour in zip(names, colours, strict=True):
        entries = [(100 * f, table[f][name]) for f in fractions if name in table[f]]
        xs = [x for x, _ in entries]
        ys = [e["miou"].mean for _, e in entries]
        err = [e["miou"].std or 0.0 for _, e in entries]
        baseline = entries[0][1]["kind"] == "baseline"
        ax.errorbar(xs, ys, yerr=err, fmt="--" if baseline else "-", marker="s" if baseline else "o", capsize=3,
                    label=f"{name} (baseline)" if baseline else name, color=colour)  # fmt: skip
    xs = [100 * f for f in fractions]
    ax.set(xscale="log", xlabel="EDS fraction of pixels (%)", ylabel="mIoU (test split)", ylim=(0, 1))
    ax.set_xticks(xs, [f"{x:g}" for x in xs])
    ax.minorticks_off()
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return save_figure(fig, path)
