"""``fusionseg predict`` writes every field as it finishes (segment's writers, atomically, resumable);
``fusionseg segment`` takes a folder written by ``fusionseg simulate``."""

from __future__ import annotations

import json

from fusionseg.cli import main
from fusionseg.pretrain import DEFAULT_CONFIG, DEFAULT_WEIGHTS


def test_predict_writes_each_field_and_skips_written_ones(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["predict", "--config", str(DEFAULT_CONFIG), "--ckpt_path", str(DEFAULT_WEIGHTS), "--data.predict_fields=2",
            "--data.source_kwargs.size=48", "--trainer.enable_progress_bar=false"]  # fmt: skip
    assert main(args) == 0
    folders = sorted((tmp_path / "runs" / "predictions").iterdir())
    assert len(folders) == 2
    for folder in folders:
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["qc"]["agreement"]["share"] == 1.0 and "held_out" in summary["qc"]
        assert (folder / "report.html").is_file() and (folder / f"{folder.name}_phases.tif").is_file()
        assert "ari_vs_target" in summary  # the simulated field's phase map scores the result
    assert "wrote 2 fields" in capsys.readouterr().out
    before = {f: (f / "summary.json").stat().st_mtime_ns for f in folders}
    assert main(args) == 0
    assert "wrote 0 fields to runs/predictions (2 already there)" in capsys.readouterr().out
    assert {f: (f / "summary.json").stat().st_mtime_ns for f in folders} == before  # untouched
    assert not [p for p in (tmp_path / "runs" / "predictions").iterdir() if p.name.startswith(".")]  # no staging left


def test_segment_reads_a_simulated_dataset_folder(tmp_path):
    sim = tmp_path / "sim"
    assert main(["simulate", "--rock", "basalt", "--n", "2", "--size", "48", "--out", str(sim)]) == 0
    out = tmp_path / "maps"
    assert main(["segment", str(sim), "--out", str(out)]) == 0
    fields = sorted(p.name for p in out.iterdir())
    assert len(fields) == 2
    summary = json.loads((out / fields[0] / "summary.json").read_text())
    assert summary["mode"] == "shipped weights" and summary["mineralogy"]["pixel_size_um"] > 0
    assert 0.0 <= summary["ari_vs_target"] <= 1.0
    assert main(["segment", str(tmp_path / "nothing*.bcf"), "--out", str(tmp_path / "o2")]) == 2


def test_help_lists_every_subcommand(capsys):
    from fusionseg.cli import command_lines

    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for name in ("segment", "simulate", "demo", "pretrain", "fit", "validate", "test", "predict"):
        assert f"\n  {name} " in text and name in command_lines()


def test_missing_optional_reader_is_named_with_its_extra(tmp_path, capsys):
    import importlib.util

    if importlib.util.find_spec("numba") is not None:
        import pytest

        pytest.skip("numba is installed: the JEOL reader has what it needs")
    pts = tmp_path / "map.pts"
    pts.write_bytes(b"\x00garbage" * 64)
    assert main(["segment", str(pts), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "needs the optional package 'numba'" in err and "pip install 'fusionseg[jeol]'" in err
    assert "corrupt" not in err and "Traceback" not in err


def test_predict_memory_budget_tiles_large_fields_and_refuses_what_cannot_fit(tmp_path, monkeypatch, capsys):
    """``--max_memory`` sets tiles: the tiled map of a 240² field matches the whole-field map almost everywhere;
    a budget that cannot hold the smallest tile fails before any field is written, naming the flag."""
    import numpy as np
    import tifffile

    from fusionseg.inference import BASE_BYTES, TILE_BYTES_PER_PIXEL

    monkeypatch.chdir(tmp_path)
    base = ["predict", "--config", str(DEFAULT_CONFIG), "--ckpt_path", str(DEFAULT_WEIGHTS), "--data.predict_fields=1",
            "--data.source_kwargs.size=240", "--trainer.enable_progress_bar=false"]  # fmt: skip
    maps = {}
    # 25 MB for the field's spectra and maps (inference.field_bytes: ~576 spectra x 2048 x 4 B + 240² x 96 B, 10 MB)
    tiled = BASE_BYTES + 25e6 + TILE_BYTES_PER_PIXEL * 128**2
    for name, budget in (("whole", 8e9), ("tiled", tiled)):
        assert main([*base, f"--max_memory={int(budget)}", f"--trainer.logger.init_args.save_dir={name}"]) == 0
        (tif,) = (tmp_path / name / "predictions").glob("*/*_phases.tif")
        maps[name] = tifffile.imread(tif)
        assert ("predict tiles" in capsys.readouterr().err) == (name == "tiled")
    assert maps["whole"].shape == maps["tiled"].shape == (240, 240)
    assert np.mean(maps["whole"] == maps["tiled"]) > 0.9  # tiles see less context near their borders
    assert main([*base, "--max_memory=300MB", "--trainer.logger.init_args.save_dir=small"]) == 2
    err = capsys.readouterr().err
    assert "needs about" in err and "raise --max_memory" in err and "Traceback" not in err
    assert not (tmp_path / "small" / "predictions").exists()
    assert main([*base, "--max_memory=3XB"]) == 2
    assert "'3XB' is not a memory size; write e.g. 4GB" in capsys.readouterr().err
