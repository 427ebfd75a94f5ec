"""The README's quick start runs (issue 44, item 6): every command of its bash blocks, as written, at small sizes.

The commands are read from README.md (the ``bash`` blocks under "## Quick start"), so a command added there without
an entry here fails `test_every_quick_start_command_is_run`, and one edited there no longer matches its entry. Each
runs through `fusionseg.cli.main` with the README's own arguments followed by `SMALL`'s (a later option wins, in
argparse and in LightningCLI): fewer, smaller fields and one epoch. ``sample.bcf`` ("your own file") is the real
30x30 Bruker test file.
"""

from __future__ import annotations

import re
import shlex
import time
from pathlib import Path

import pytest

from fusionseg.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BCF30 = ROOT.parent / "shared" / "data" / "real" / "bruker" / "30x30_instructively_packed_16bit_compressed.bcf"
PREFIX = ".venv/bin/fusionseg "

QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
TINY = ["--data.source_kwargs.size=32", "--data.train_fields=2", "--data.val_fields=1", "--data.test_fields=1",
        "--data.predict_fields=1", *QUIET]  # fmt: skip
LAST = "runs/lightning_logs/version_0/checkpoints/last.ckpt"
FOLDER = ["--data.train_fields=1", "--data.val_fields=1", "--data.test_fields=1", "--data.predict_fields=1",
          "--trainer.max_epochs=1", *QUIET]  # fmt: skip
# README command (as written, less the `.venv/bin/fusionseg` prefix) -> (arguments appended, a file it must leave)
SMALL = {
    "segment sample.bcf --eds-fraction 0.01 --out maps/sample": ([], "maps/sample/summary.json"),
    "segment sample.bcf --acquire adaptive --eds-budget 0.003 --batch 0.00025 --out maps/adaptive": (
        [], "maps/adaptive/acquisition.csv"),
    "simulate --rock granite --n 8 --size 512 --out data/granite": (["--n", "4", "--size", "48"],
                                                                    "data/granite/index.json"),
    "segment data/granite --out maps/granite": ([], "maps/granite"),
    "fit --config configs/default.yaml --trainer.max_epochs=20": ([*TINY, "--trainer.max_epochs=1"], LAST),
    f"test --config configs/default.yaml --ckpt_path {LAST}": (TINY, "runs/lightning_logs/version_1/metrics.csv"),
    "predict --config configs/default.yaml --ckpt_path ...": (TINY, "runs/predictions"),
    "fit --config configs/default.yaml --data.source=sample-folder --data.source_kwargs='{root: data/granite}' "
    "--data.train_source_kwargs=null": (FOLDER, "runs/lightning_logs/version_2/checkpoints/last.ckpt"),
    "compare --config configs/default.yaml --grid model.backbone=sage,gat --seeds 0 1 2 --out runs/cmp": (
        ["--seeds", "0", "--budget", "1", "--grid", "data.source_kwargs.size=32", "--grid", "data.train_fields=2",
         "--grid", "data.val_fields=1", "--grid", "data.test_fields=1"], "runs/cmp/summary.md"),
}  # fmt: skip


def quick_start_commands(text: str) -> list[str]:
    """The ``fusionseg`` commands of the bash blocks under "## Quick start": continuation lines joined, comments
    dropped, the ``.venv/bin/fusionseg`` prefix removed."""
    section = text.split("\n## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #", 1)[0].strip()  # a comment follows two spaces in these blocks
            if line.startswith(PREFIX):
                commands.append(" ".join(line[len(PREFIX) :].split()))
    return commands


def test_every_quick_start_command_is_run():
    """The README's commands and this file's are the same list, in the same order."""
    assert quick_start_commands(README.read_text()) == list(SMALL)


def test_the_quick_start_runs_at_small_sizes(tmp_path, monkeypatch, capsys):
    if not BCF30.is_file():
        pytest.skip(f"the real Bruker file standing for sample.bcf is absent ({BCF30})")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    timings = {}
    for command, (extra, leaves) in SMALL.items():
        argv = [a if a != "sample.bcf" else str(BCF30) for a in shlex.split(command)]
        argv = [a if a != "..." else LAST for a in argv]  # predict: the checkpoint fit just wrote
        start = time.perf_counter()
        code = main([*argv, *extra])
        timings[command.split()[0]] = timings.get(command.split()[0], 0) + time.perf_counter() - start
        assert code == 0, f"{command}: exit {code}\n{capsys.readouterr().err[-2000:]}"
        assert (tmp_path / leaves).exists(), f"{command}: {leaves} missing"
    assert len(list((tmp_path / "maps" / "granite").iterdir())) == 4  # one folder per simulated field
    print(timings)
