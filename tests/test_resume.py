"""Faults: SIGKILL `fusionseg fit` mid-run, resume from last.ckpt, get the uninterrupted run's numbers and weights
(bit for bit; the shipped config, refiner on).

Also: same seed and config give identical metrics (two processes), and the killed run's CSV log
keeps every epoch that ran.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fusionseg.cli import main

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 3


def _args(save_dir: Path, epochs: int = EPOCHS) -> list[str]:
    return [
        "fit", "--config", str(ROOT / "configs" / "default.yaml"),
        "--data.source_kwargs.size=32", "--data.train_fields=8", "--data.val_fields=2", "--data.test_fields=1",
        "--data.predict_fields=1", "--data.batch_size=2", "--data.eds_fraction=0.05", "--data.train_eds_fraction=null",
        f"--trainer.max_epochs={epochs}", "--trainer.max_time=null", "--trainer.log_every_n_steps=1",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        f"--trainer.logger.init_args.save_dir={save_dir}",
    ]  # fmt: skip


def _main_one_thread(args: list[str]) -> int:
    """`fusionseg` here on one thread, as the subprocesses: sums split over threads differ in the last bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return main(args)
    finally:
        torch.set_num_threads(threads)


def _rows(version_dir: Path) -> list[dict]:
    with (version_dir / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def _val_by_epoch(rows: list[dict]) -> dict[int, tuple[str, str]]:
    """epoch -> (val/loss, val/miou) as logged (strings: exact comparison, no rounding)."""
    return {int(r["epoch"]): (r["val/loss"], r["val/miou"]) for r in rows if r.get("val/loss")}


def _train_by_step(rows: list[dict]) -> dict[int, str]:
    return {int(r["step"]): r["train/loss"] for r in rows if r.get("train/loss")}


def _ckpt_epoch(path: Path) -> int | None:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=False)["epoch"])
    except (FileNotFoundError, EOFError, RuntimeError):
        return None


def _state_dict(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


@pytest.mark.timeout(600)  # ~35 s on an idle 2-core machine; generous for a loaded one
def test_sigkill_mid_run_then_resume_equals_uninterrupted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert _main_one_thread(_args(tmp_path / "full")) == 0  # the uninterrupted run, in this process
    full = _rows(tmp_path / "full" / "lightning_logs" / "version_0")
    last_full = tmp_path / "full" / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    assert _ckpt_epoch(last_full) == EPOCHS - 1  # a true last.ckpt, not the best epoch's

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "fusionseg.cli", *_args(tmp_path / "killed", epochs=EPOCHS)],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    version = tmp_path / "killed" / "lightning_logs" / "version_0"
    last = version / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while _ckpt_epoch(last) is None and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # right after epoch 0's checkpoint: inside epoch 1
    proc.wait()
    killed_at = _ckpt_epoch(last)
    assert killed_at is not None and killed_at < EPOCHS - 1, "the run ended before it could be killed"
    killed = _rows(version)
    assert set(_val_by_epoch(killed)) >= set(range(killed_at + 1))  # the CSV keeps every epoch that ran
    # Same seed and config in another process: identical numbers for the epochs both ran.
    for epoch in range(killed_at + 1):
        assert _val_by_epoch(killed)[epoch] == _val_by_epoch(full)[epoch]

    assert _main_one_thread([*_args(tmp_path / "killed"), f"--ckpt_path={last}"]) == 0
    resumed = _rows(tmp_path / "killed" / "lightning_logs" / "version_1")
    after = {e: v for e, v in _val_by_epoch(full).items() if e > killed_at}
    assert after and {e: _val_by_epoch(resumed)[e] for e in after} == after
    steps = _train_by_step(resumed)
    assert steps and all(_train_by_step(full)[s] == loss for s, loss in steps.items())
    resumed_last = tmp_path / "killed" / "lightning_logs" / "version_1" / "checkpoints" / "last.ckpt"
    assert _ckpt_epoch(resumed_last) == EPOCHS - 1
    weights, resumed_weights = _state_dict(last_full), _state_dict(resumed_last)
    assert any("refiner" in k for k in weights), "the shipped config's refiner is on in this test"
    assert weights.keys() == resumed_weights.keys()
    assert all(torch.equal(weights[k], resumed_weights[k]) for k in weights), "resumed weights differ"
    print(f"killed after epoch {killed_at}; resumed val (loss, mIoU) {after} == uninterrupted")


def test_same_seed_same_data_graphs_and_order():
    """Two independent builds with one seed: identical fields, graphs and training order; another seed differs."""
    from fusionseg.data.datamodule import EpochShuffleSampler, FusionSegDataModule
    from fusionseg.registry import GRAPH_BUILDERS

    def build(seed: int):
        dm = FusionSegDataModule("sem-synthetic", source_kwargs={"size": 24}, train_fields=3, val_fields=1, seed=seed)
        sample = dm.dataset("train")[2]
        graph = GRAPH_BUILDERS.create("superpixel", cross_k=4)(sample)
        return sample, graph

    (a, ga), (b, gb), (c, _) = build(5), build(5), build(6)
    assert torch.equal(a.image, b.image) and torch.equal(a.point_features, b.point_features)
    for key in ga.edge_types:
        assert torch.equal(ga[key].edge_index, gb[key].edge_index)
    assert not torch.equal(a.point_coords, c.point_coords) or not torch.equal(a.image, c.image)
    s1, s2 = EpochShuffleSampler(10, seed=1), EpochShuffleSampler(10, seed=1)
    s1.set_epoch(3)
    s2.set_epoch(3)
    assert list(s1) == list(s2) and sorted(s1) == list(range(10))
    s2.set_epoch(4)
    assert list(s1) != list(s2)


def _state_dict(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


@pytest.mark.timeout(600)  # ~35 s on an idle 2-core machine; generous for a loaded one
def test_interrupt_keeps_last_and_writes_interrupted(tmp_path):
    """Ctrl-C (SIGINT) mid-run: last.ckpt stays the last completed epoch, interrupted.ckpt holds the rest."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # Far more epochs than can finish, and 16 training steps per epoch: the signal lands mid-training on any machine.
    args = [*_args(tmp_path / "run", epochs=1000), "--data.train_fields=32"]
    log = (tmp_path / "stderr.txt").open("w")
    # SIGINT at its default: a test run started in the background of a non-interactive shell inherits it ignored
    # (as `nohup` and `cmd &` leave it), and Python then never raises KeyboardInterrupt.
    proc = subprocess.Popen([sys.executable, "-m", "fusionseg.cli", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=log,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    ckpts = tmp_path / "run" / "lightning_logs" / "version_0" / "checkpoints"
    deadline = time.monotonic() + 300
    while _ckpt_epoch(ckpts / "last.ckpt") is None and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # into the next epoch
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("fusionseg fit ignored SIGINT; its stderr ends:\n" + (tmp_path / "stderr.txt").read_text()[-3000:])
    log.close()
    assert code != 0, (tmp_path / "stderr.txt").read_text()[-3000:]
    done = _ckpt_epoch(ckpts / "last.ckpt")
    interrupted = torch.load(ckpts / "interrupted.ckpt", map_location="cpu", weights_only=False)
    assert done is not None and done < 999
    assert interrupted["global_step"] > torch.load(ckpts / "last.ckpt", weights_only=False)["global_step"]


def test_checkpointing_can_still_be_switched_off(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = _args(tmp_path / "off", epochs=1)
    args[args.index("--config") + 1] = str(ROOT / "configs" / "grid_late_sage.yaml")  # no callbacks of its own
    assert main([*args, "--trainer.enable_checkpointing=false", "--data.train_fields=2"]) == 0
    assert not list((tmp_path / "off").rglob("*.ckpt"))
