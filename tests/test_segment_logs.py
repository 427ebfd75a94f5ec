"""`segment`'s log: a line per epoch (no progress bar) when redirected, ``--quiet`` and ``--verbose``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fusionseg.sem.segment import segment_main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    from fusionseg.sem.data.synthetic import simulate_to_folder

    out = tmp_path_factory.mktemp("sim")
    simulate_to_folder("granite", 1, 48, out, seed=0, eds_fraction=0.05)
    return out


def test_per_field_log_redirected_to_a_file_is_short(folder, tmp_path):
    """Lightning's bar redraws with carriage returns (339 lines for one 96² field); a file gets <= a line per epoch."""
    log = tmp_path / "segment.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "fusionseg.cli", "segment", str(folder), "--per-field", "--threads", "1",
            "--time-budget", "20", "--out", str(tmp_path / "out")]  # fmt: skip
    with log.open("w") as fh:
        assert subprocess.run(args, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=tmp_path).returncode == 0
    text = log.read_text()
    lines = text.replace("\r", "\n").splitlines()
    assert "\r" not in text and len(lines) < 200, text[-2000:]
    epochs = [line for line in lines if line.startswith("per-field training, epoch")]
    assert 1 <= len(epochs) <= 25 and "Outputs written to" in lines[-1]


def test_quiet_prints_where_the_outputs_went_only(folder, tmp_path, capsys):
    assert segment_main([str(folder), "--method", "geodesic", "--quiet", "--out", str(tmp_path / "q")]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().splitlines() == [f"Outputs written to {tmp_path / 'q'}"] and not captured.err


def test_verbose_adds_progress_notes(folder, tmp_path, capsys):
    assert segment_main([str(folder), "--method", "geodesic", "--verbose", "--out", str(tmp_path / "v")]) == 0
    captured = capsys.readouterr()
    assert "memory budget" in captured.err and "map agrees with its measured points" in captured.out
    with pytest.raises(SystemExit, match="2"):  # argparse: one or the other
        segment_main([str(folder), "--quiet", "--verbose", "--out", str(tmp_path / "x")])
