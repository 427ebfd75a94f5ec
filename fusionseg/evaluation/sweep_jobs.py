"""Running one sweep job: train a variant for its epoch budget (or take a classic method), score it on the
held-out test split at each EDS fraction (`fusionseg.models.metrics.Scores`), write ``out/jobs/<id>.json``."""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fusionseg.build import Built, ConfigLike, build
from fusionseg.evaluation.sweep_plan import Job, SweepError, _key
from fusionseg.models.metrics import Scores
from fusionseg.sample import Sample

QUIET_TRAINER = {"trainer.logger": False, "trainer.enable_progress_bar": False, "trainer.enable_model_summary": False}


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
