"""Data-parallel runs on CPU (gloo), two processes: the issue-26 contract.

- ``fusionseg fit --trainer.strategy=ddp --trainer.devices=2`` is the same computation as one process with
  twice the batch size: equal synchronised validation metrics, equal training losses, weights equal to float
  round-off; every validation field is scored once (an odd count too).
- Validating the shipped model (refiner on) on two processes gives one process's metrics.
- ``fusionseg predict`` with two processes writes each field exactly once, the labels one process writes,
  and a re-run after a stop maps only what is missing.
- ``segment`` over several fields under torchrun: each field mapped by one process; ``--resume`` goes on.
"""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from fusionseg.cli import main
from fusionseg.paths import DEFAULT_CONFIG, DEFAULT_WEIGHTS

SIZE = 48  # px: tiny fields, the contract does not depend on size
CLI = [sys.executable, "-m", "fusionseg.cli"]
DDP = ["--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu"]


def run(args: list[str], cwd: Path) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def lightning(command: str, root: Path, *extra: str) -> list[str]:
    return [*CLI, command, "--config", str(DEFAULT_CONFIG), f"--data.source_kwargs.size={SIZE}",
            "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={root}",
            f"--trainer.logger.init_args.save_dir={root}", *extra]  # fmt: skip


def logged(root: Path) -> list[dict[str, str]]:
    (metrics,) = root.glob("lightning_logs/version_0/metrics.csv")
    return list(csv.DictReader(metrics.open()))


def column(rows: list[dict[str, str]], key: str) -> list[float]:
    return [float(r[key]) for r in rows if r.get(key)]


def last_weights(root: Path) -> dict[str, torch.Tensor]:
    (ckpt,) = root.glob("lightning_logs/version_0/checkpoints/last.ckpt")
    return torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]


def test_ddp_fit_is_one_process_with_twice_the_batch(tmp_path: Path) -> None:
    """2 processes x batch 1 == 1 process x batch 2 (refiner off: its random pixel share is drawn per process)."""
    common = ["--trainer.max_epochs=2", "--data.train_fields=4", "--data.val_fields=3", "--model.prior_refiner=null",
              "--trainer.log_every_n_steps=1", "--trainer.accelerator=cpu"]  # fmt: skip
    run(lightning("fit", tmp_path / "ddp", *common, *DDP, "--data.batch_size=1"), tmp_path)
    run(lightning("fit", tmp_path / "one", *common, "--data.batch_size=2"), tmp_path)
    ddp, one = logged(tmp_path / "ddp"), logged(tmp_path / "one")
    for key in ("val/miou", "val/pixel_acc", "val/loss", "val/pixels"):
        assert len(column(ddp, key)) == 2, key
        np.testing.assert_allclose(column(ddp, key), column(one, key), rtol=1e-5, err_msg=key)
    assert column(ddp, "val/pixels") == [3 * SIZE * SIZE] * 2  # 3 fields on 2 processes: each scored once
    assert len(column(ddp, "train/loss")) == 4  # 4 fields / (2 x 1) per step x 2 epochs
    np.testing.assert_allclose(column(ddp, "train/loss"), column(one, "train/loss"), rtol=1e-4)
    a, b = last_weights(tmp_path / "ddp"), last_weights(tmp_path / "one")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-3, atol=1e-3, msg=key)


def test_ddp_validation_of_the_shipped_model_equals_one_process(tmp_path: Path) -> None:
    """Refiner on, 3 fields on 2 processes: the synchronised metrics are the single process's, every field once."""
    args = ["--data.val_fields=3", "--data.batch_size=1", f"--ckpt_path={DEFAULT_WEIGHTS}"]
    run(lightning("validate", tmp_path / "ddp", *args, *DDP), tmp_path)
    run(lightning("validate", tmp_path / "one", *args, "--trainer.accelerator=cpu"), tmp_path)
    ddp, one = logged(tmp_path / "ddp"), logged(tmp_path / "one")
    keys = [k for k in one[0] if k.startswith("val/") and one[0][k]]
    assert {"val/miou", "val/pixel_acc", "val/loss", "val/pixels"} <= set(keys)
    assert column(ddp, "val/pixels") == [3 * SIZE * SIZE]
    for key in keys:
        np.testing.assert_allclose(column(ddp, key), column(one, key), rtol=1e-6, err_msg=key)


def written_counts(output: str) -> tuple[int, int]:
    """Sums over processes of ``wrote N fields to ... (M already there)``."""
    found = re.findall(r"wrote (\d+) fields to .* \((\d+) already there\)", output)
    return sum(int(w) for w, _ in found), sum(int(s) for _, s in found)


def phases(folder: Path) -> dict[str, np.ndarray]:
    return {d.name: tifffile.imread(d / f"{d.name}_phases.tif") for d in sorted(folder.iterdir()) if d.is_dir()}


def test_ddp_predict_writes_each_field_once_and_resumes(tmp_path: Path) -> None:
    args = ["--data.predict_fields=3", "--data.batch_size=1", f"--ckpt_path={DEFAULT_WEIGHTS}"]
    ddp_out = run(lightning("predict", tmp_path / "ddp", *args, *DDP), tmp_path)
    assert written_counts(ddp_out) == (3, 0)
    run(lightning("predict", tmp_path / "one", *args, "--trainer.accelerator=cpu"), tmp_path)
    two, one = phases(tmp_path / "ddp" / "predictions"), phases(tmp_path / "one" / "predictions")
    assert len(two) == 3 and two.keys() == one.keys()
    for name in one:
        np.testing.assert_array_equal(two[name], one[name], err_msg=name)
    # A stop while a field was being published: a listed file is missing. Only that field is mapped again.
    stopped = tmp_path / "ddp" / "predictions" / sorted(two)[1]
    (stopped / "summary.json").unlink()
    assert written_counts(run(lightning("predict", tmp_path / "ddp", *args, *DDP), tmp_path)) == (1, 2)
    assert (stopped / "summary.json").is_file()


@pytest.fixture(scope="module")
def three_fields(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fields")
    run([*CLI, "simulate", "--n", "3", "--size", str(SIZE), "--out", str(root / "data")], root)
    return root / "data"


def test_segment_under_torchrun_maps_each_field_once_and_resumes(three_fields: Path, tmp_path: Path) -> None:
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
                "fusionseg.cli", "segment", str(three_fields), "--method", "geodesic", "--out"]  # fmt: skip
    torchrun.append(str(tmp_path / "out"))
    output = run(torchrun, tmp_path)
    mapped = re.findall(r"^(\S+)\.npz:$", output, flags=re.M)
    assert sorted(mapped) == sorted(p.stem for p in three_fields.glob("*.npz"))  # each once, by one process
    fields = sorted((tmp_path / "out").iterdir())
    assert len(fields) == 3
    (fields[1] / "summary.json").unlink()  # stopped while publishing this one
    (tmp_path / "out" / f".{fields[0].name}.staging.x").mkdir()  # and a killed run's staging folder
    again = run([*torchrun, "--resume"], tmp_path)
    assert re.findall(r"^(\S+)\.npz:$", again, flags=re.M) == [fields[1].name]
    assert (fields[1] / "summary.json").is_file()
    assert not list((tmp_path / "out").glob(".*staging*"))


def test_a_segment_process_checks_the_output_folder_without_the_other_processes_fields(
    three_fields: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Each torchrun process checks --out before it maps; by then another may have published a field or be staging
    one (a race that failed the torchrun test above once): the check skips the others' fields, not the user's."""
    import fusionseg.distributed as distributed
    from fusionseg.sem.segment import input_paths

    first, mine, third = input_paths(three_fields)
    out = tmp_path / "out"
    (out / first.stem).mkdir(parents=True)
    (out / first.stem / "summary.json").write_text("{}")  # published by process 0
    (out / f".{third.stem}.staging.x").mkdir()
    (out / f".{third.stem}.staging.x" / "phases.tif").write_text("")  # being written by process 0
    monkeypatch.setattr(distributed, "process_rank", lambda: (1, 2))
    cmd = ["segment", str(three_fields), "--method", "nearest-point", "--out", str(out)]
    assert main(cmd) == 0
    assert (out / mine.stem / "summary.json").is_file()
    shutil.rmtree(out / mine.stem)
    (out / "mine.txt").write_text("the user's")  # not another process's field: refused as before
    assert main(cmd) == 2 and "not empty" in capsys.readouterr().err


def test_segment_over_several_fields_overwrites_its_own_outputs(
    three_fields: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A second run with --overwrite replaces the field folders fusionseg wrote (it refused them before)."""
    out = tmp_path / "out"
    cmd = ["segment", str(three_fields), "--method", "nearest-point", "--out", str(out)]
    assert main(cmd) == 0
    assert main(cmd) == 2 and "--resume" in capsys.readouterr().err
    assert main([*cmd, "--overwrite"]) == 0
    (next(out.iterdir()) / "mine.txt").write_text("the user's")  # not fusionseg's: --overwrite must refuse
    assert main([*cmd, "--overwrite"]) == 2 and "mine.txt" in capsys.readouterr().err
