"""No silent surprises (issue 44, item 4): reruns over outputs of another checkpoint or settings, splits that
cannot follow the config, where `fit` wrote its checkpoints, abbreviated options, `compare`'s grid, one message per
path decision."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest

from fusionseg.cli import main
from fusionseg.export.run_record import RUN_RECORD
from fusionseg.pretrain import DEFAULT_CONFIG, DEFAULT_WEIGHTS


def test_predict_rerun_with_another_checkpoint_refuses_or_remaps_with_overwrite(tmp_path, monkeypatch, capsys):
    """Before: "wrote 0 fields (1 already there)" and the old maps kept whatever checkpoint made them."""
    monkeypatch.chdir(tmp_path)
    other = tmp_path / "other.ckpt"
    shutil.copy(DEFAULT_WEIGHTS, other)
    with open(other, "ab") as fh:  # same weights, other file content: another checkpoint as far as a record can tell
        fh.write(b"\0")
    base = ["predict", "--config", str(DEFAULT_CONFIG), "--data.predict_fields=1", "--data.source_kwargs.size=40",
            "--trainer.enable_progress_bar=false"]  # fmt: skip
    assert main([*base, "--ckpt_path", str(DEFAULT_WEIGHTS)]) == 0
    (folder,) = (tmp_path / "runs" / "predictions").iterdir()
    record = json.loads((folder / RUN_RECORD).read_text())
    assert record["checkpoint"]["path"] == str(DEFAULT_WEIGHTS.resolve()) and record["checkpoint"]["sha256"]
    capsys.readouterr()
    assert main([*base, "--ckpt_path", str(DEFAULT_WEIGHTS)]) == 0  # same checkpoint and settings: kept
    assert "wrote 0 fields" in capsys.readouterr().out
    before = (folder / "summary.json").stat().st_mtime_ns
    assert main([*base, "--ckpt_path", str(other)]) == 2
    err = capsys.readouterr().err
    assert "another checkpoint or other settings" in err and "other.ckpt" in err and "--overwrite" in err
    assert (folder / "summary.json").stat().st_mtime_ns == before  # untouched
    assert main([*base, "--ckpt_path", str(DEFAULT_WEIGHTS), "--data.eds_fraction=0.05"]) == 2  # a data setting
    assert "data.eds_fraction" in capsys.readouterr().err
    assert main([*base, "--ckpt_path", str(other), "--overwrite=true"]) == 0
    assert "wrote 1 fields to runs/predictions, 1 of them again (--overwrite)" in capsys.readouterr().out
    assert json.loads((folder / RUN_RECORD).read_text())["checkpoint"]["path"] == str(other.resolve())


def test_segment_resume_over_another_checkpoint_refuses_or_remaps(tmp_path, capsys):
    sim = tmp_path / "sim"
    assert main(["simulate", "--rock", "basalt", "--n", "2", "--size", "40", "--out", str(sim)]) == 0
    out = tmp_path / "maps"
    assert main(["segment", str(sim), "--out", str(out)]) == 0
    other = tmp_path / "other.ckpt"
    shutil.copy(DEFAULT_WEIGHTS, other)
    capsys.readouterr()
    assert main(["segment", str(sim), "--out", str(out), "--resume"]) == 0
    assert "kept 2 field(s)" in capsys.readouterr().out
    stamps = {p: (p / "summary.json").stat().st_mtime_ns for p in out.iterdir()}
    assert main(["segment", str(sim), "--out", str(out), "--resume", "--eds-fraction", "0.05"]) == 2
    err = capsys.readouterr().err
    assert "eds_fraction None -> 0.05" in err and "--overwrite" in err and "new --out" in err
    assert {p: (p / "summary.json").stat().st_mtime_ns for p in out.iterdir()} == stamps
    assert main(["segment", str(sim), "--out", str(out), "--resume", "--checkpoint", str(other), "--overwrite"]) == 0
    text = capsys.readouterr().out
    assert text.count("mapping it again (--overwrite)") == 2 and "kept" not in text
    for p in out.iterdir():
        assert json.loads((p / RUN_RECORD).read_text())["checkpoint"]["path"] == str(other.resolve())


def test_split_that_cannot_follow_the_config_counts_says_so(tmp_path):
    """Before: a folder of 8 files was split 4/1/2/1 while the config asked 48/6/12/2, without a word."""
    from fusionseg.data.datamodule import FusionSegDataModule, SplitCountWarning

    sim = tmp_path / "sim"
    assert main(["simulate", "--rock", "basalt", "--n", "8", "--size", "24", "--out", str(sim)]) == 0
    dm = FusionSegDataModule(source="sample-folder", source_kwargs={"root": str(sim)}, train_fields=48, val_fields=6,
                             test_fields=12, predict_fields=2)  # fmt: skip
    with pytest.warns(SplitCountWarning) as caught:
        assert len(dm.dataset("train")) == 4
        assert len(dm.dataset("val")) == 1  # each split says so when it is built (the others are not built)
    messages = [str(w.message) for w in caught if issubclass(w.category, SplitCountWarning)]
    assert len(messages) == 2 and "serves 4 train fields where data.train_fields asks 48" in messages[0]
    assert "serves 1 val fields where data.val_fields asks 6" in messages[1]
    quiet = FusionSegDataModule(source="sample-folder", source_kwargs={"root": str(sim)}, train_fields=4,
                                val_fields=1, test_fields=2, predict_fields=1)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error", SplitCountWarning)
        quiet.dataset("train")  # counts that fit: no warning


def test_fit_says_where_its_checkpoints_are_and_predict_makes_no_log_folder(tmp_path, monkeypatch, capsys):
    """Before: `fit` ended without naming its checkpoints; every `predict` made a new, empty version_N."""
    monkeypatch.chdir(tmp_path)
    small = ["--config", str(DEFAULT_CONFIG), "--data.source_kwargs.size=32", "--trainer.enable_progress_bar=false"]
    assert main(["fit", *small, "--trainer.max_epochs=1", "--data.train_fields=2", "--data.val_fields=1"]) == 0
    out = capsys.readouterr().out
    last = "runs/lightning_logs/version_0/checkpoints/last.ckpt"
    assert "checkpoints written" in out and f"last: {last}" in out and "best (val/miou " in out
    best = out.split("best (val/miou ")[1].split(": ", 1)[1].split()[0]
    assert (tmp_path / best).is_file() and (tmp_path / last).is_file()
    assert main(["predict", *small, "--ckpt_path", last, "--data.predict_fields=1"]) == 0
    assert main(["predict", *small, "--ckpt_path", last, "--data.predict_fields=1"]) == 0
    assert sorted(p.name for p in (tmp_path / "runs" / "lightning_logs").iterdir()) == ["version_0"]
    assert (tmp_path / "runs" / "predictions").is_dir() and not (tmp_path / "config.yaml").exists()
    capsys.readouterr()
    assert main(["test", *small, "--ckpt_path", last, "--data.test_fields=1"]) == 0  # logs metrics: says where
    assert "test metrics logged to runs/lightning_logs/version_1" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "meant"),
    [
        (["fit", "--config", str(DEFAULT_CONFIG), "--trainer.max_epoch=1"], "--trainer.max_epochs"),
        (["predict", "--config", str(DEFAULT_CONFIG), "--ckpt_pat", str(DEFAULT_WEIGHTS)], "--ckpt_path"),
        (["segment", "in", "--eds-frac", "0.1", "--out", "o"], "--eds-fraction"),
        (["mosaic", "in", "--posit", "p.csv", "--out", "o"], "--positions"),
        (["simulate", "--rock", "granite", "--siz", "32", "--out", "o"], "--size"),
        (["compare", "--config", str(DEFAULT_CONFIG), "--seed", "0", "--out", "o"], "--seeds"),
        (["demo", "--ou", "o"], "--out"),
    ],
)
def test_abbreviated_options_are_refused_naming_the_option(argv, meant, tmp_path, monkeypatch, capsys):
    """Before: argparse and jsonargparse took any unique prefix (`--trainer.max_epoch=1` ran as max_epochs)."""
    monkeypatch.chdir(tmp_path)
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own error exit
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments" in err and f"(did you mean {meant})" in err
    assert not list(tmp_path.iterdir())  # nothing ran


def test_compare_checks_its_grid_before_writing_anything(tmp_path, capsys):
    """Before: a misspelled grid key failed every job, then left an empty results.csv and summary.md."""
    out = tmp_path / "cmp"
    argv = ["compare", "--config", str(DEFAULT_CONFIG), "--grid", "model.backbon=sage,gat", "--seeds", "0", "--out"]
    assert main([*argv, str(out)]) == 2
    err = capsys.readouterr().err
    assert "--model.backbon" in err and "did you mean --model.backbone" in err
    assert not out.exists()


REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
BCF30 = REAL / "bruker" / "30x30_instructively_packed_16bit_compressed.bcf"


@pytest.mark.skipif(not BCF30.is_file(), reason=f"real Bruker test file absent ({BCF30})")
def test_segment_acquire_on_a_real_file_says_one_thing_per_path_decision(tmp_path, capsys):
    """Before: "trained a model on this field instead", then "too few to train ... nearest measured point"."""
    out = tmp_path / "acq"
    argv = ["segment", str(BCF30), "--acquire", "adaptive", "--eds-budget", "0.003", "--batch", "0.00025"]
    assert main([*argv, "--out", str(out)]) == 0
    text = capsys.readouterr()
    said = text.out + text.err
    assert "trained a model on this field instead" not in said
    decision = [line for line in said.splitlines() if "too few to name the phases" in line and "WARNING" not in line]
    assert len(decision) == 1 and "the weights are not used" in decision[0] and "nearest measured point" in decision[0]
    summary = json.loads((out / "summary.json").read_text())
    notes = [n for n in summary["notes"] if "too few to train" in n]
    assert len(notes) == 1 and notes[0] == decision[0].strip()
