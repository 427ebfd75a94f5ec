"""No silent surprises (issue 44, item 4): reruns over outputs of another checkpoint or settings, splits that
cannot follow the config, where `fit` wrote its checkpoints, abbreviated options, `compare`'s grid, one message per
path decision."""

from __future__ import annotations

import json
import shutil

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
