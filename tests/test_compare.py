"""`fusionseg compare`: a tiny real sweep, its tables, resuming, interruption, and bad specifications."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from fusionseg.build import BuildError, build
from fusionseg.cli import CONFIG_DIR, main
from fusionseg.evaluation import sweep as sw

DEFAULT = str(CONFIG_DIR / "default.yaml")
TINY = ["--grid", "data.source_kwargs.size=32", "--grid", "data.train_fields=2", "--grid", "data.val_fields=1",
        "--grid", "data.test_fields=2"]  # fmt: skip
ARGS = ["compare", "--config", DEFAULT, "--grid", "model.backbone=sage,gcn", *TINY, "--fractions", "0.01", "0.05",
        "--seeds", "0", "1", "--budget", "1", "--baselines", "nearest-point", "--threads", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("compare")
    assert main([*ARGS, "--out", str(out)]) == 0
    return out


def _rows(out: Path) -> list[dict]:
    with open(out / "results.csv") as f:
        return list(csv.DictReader(f))


def _summary_cells(out: Path) -> dict[tuple[str, str], list[str]]:
    """(fraction heading, variant) -> the table cells of summary.md."""
    cells, heading = {}, None
    for line in (out / "summary.md").read_text().splitlines():
        if line.startswith("## EDS fraction"):
            heading = line.removeprefix("## EDS fraction ").strip()
        elif line.startswith("| ") and heading and not line.startswith("| variant") and "---" not in line:
            parts = [c.strip().strip("*") for c in line.strip("|").split("|")]
            cells[heading, parts[0]] = parts[1:]
    return cells


def test_sweep_writes_one_row_per_variant_fraction_and_seed(swept: Path) -> None:
    rows = _rows(swept)
    models = [r for r in rows if r["kind"] == "model"]
    keys = {(r["variant"], r["fraction"], r["seed"]) for r in models}
    assert len(models) == len(keys) == 2 * 2 * 2
    assert {r["variant"] for r in models} == {"backbone=sage", "backbone=gcn"}
    baselines = [r for r in rows if r["kind"] == "baseline"]
    assert [(r["variant"], r["fraction"], r["seed"]) for r in baselines] == [
        ("nearest-point", "0.01", ""), ("nearest-point", "0.05", "")]  # fmt: skip
    for r in rows:
        assert 0 <= float(r["miou"]) <= 1 and 0 <= float(r["pixel_acc"]) <= 1
        assert float(r["infer_px_per_s"]) > 0
        ious = [float(v) for k, v in r.items() if k.startswith("iou_") and v != ""]
        assert ious and all(0 <= v <= 1 for v in ious)
    for r in models:
        assert r["epochs"] == "1" and float(r["train_seconds"]) > 0
        assert json.loads(r["overrides"])["model.backbone"] == r["variant"].removeprefix("backbone=")
    # Nearest point has more points to follow at 5 % than at 1 %.
    assert float(baselines[1]["pixel_acc"]) > float(baselines[0]["pixel_acc"])
    assert (swept / "miou_vs_fraction.png").stat().st_size > 5000


SHOWN = 5e-4 + 1e-9  # the summary shows 3 decimals: half a unit of the last one, plus float noise


def test_summary_means_and_paired_wins_match_the_rows(swept: Path) -> None:
    rows, cells = _rows(swept), _summary_cells(swept)
    for fraction, heading in (("0.01", "1 %"), ("0.05", "5 %")):
        at = [r for r in rows if r["fraction"] == fraction]
        ref = {r["seed"]: float(r["miou"]) for r in at if r["variant"] == "backbone=sage"}
        for variant in ("backbone=sage", "backbone=gcn", "nearest-point"):
            own = [r for r in at if r["variant"] == variant]
            miou = [float(r["miou"]) for r in own]
            label = variant + (" (baseline)" if variant == "nearest-point" else "")
            row = cells[heading, label]
            shown = [float(x) for x in re.findall(r"[-+]?\d+\.\d+", row[0])]
            assert shown[0] == pytest.approx(np.mean(miou), abs=SHOWN)
            if len(miou) > 1:
                assert shown[1] == pytest.approx(np.std(miou, ddof=1), abs=SHOWN)
            pixel = float(row[1].split(" ± ")[0])
            assert pixel == pytest.approx(np.mean([float(r["pixel_acc"]) for r in own]), abs=SHOWN)
            if variant == "backbone=sage":
                assert row[3:5] == ["—", "—"]
                continue
            diffs = [m - ref[s] for s in ref for m in (miou if variant == "nearest-point" else
                     [float(r["miou"]) for r in own if r["seed"] == s])]  # fmt: skip
            assert float(row[3].split(" ± ")[0]) == pytest.approx(np.mean(diffs), abs=SHOWN)
            assert row[4] == f"{sum(d > 0 for d in diffs)}/{len(diffs)}"


def test_rerun_skips_finished_jobs_and_redoes_a_missing_one(swept: Path, capsys: pytest.CaptureFixture) -> None:
    jobs = sorted((swept / "jobs").glob("*.json"))
    assert len(jobs) == 5  # 2 variants x 2 seeds + 1 baseline
    before = {p: p.stat().st_mtime_ns for p in jobs}
    rows = _rows(swept)
    capsys.readouterr()
    assert main([*ARGS, "--out", str(swept)]) == 0
    assert "5 finished before (skipped), 0 to run" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in jobs} == before
    assert _rows(swept) == rows
    gone = next(p for p in jobs if p.name.startswith("backbone=gcn-s1-"))
    gone.unlink()
    assert main([*ARGS, "--out", str(swept)]) == 0
    assert "4 finished before (skipped), 1 to run" in capsys.readouterr().err
    assert gone.exists() and len(_rows(swept)) == len(rows)


def test_interrupt_keeps_finished_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C during the second job: the first job's rows are in results.csv; a re-run would run only the rest."""
    from fusionseg.export.writers import write_json

    calls = []

    def fake_run_job(job: sw.Job, out: Path) -> dict:
        calls.append(job.id)
        if len(calls) == 2:
            raise KeyboardInterrupt
        rows = [{"variant": job.name, "kind": "model", "config": DEFAULT, "overrides": "{}", "seed": job.seed,
                 "fraction": f, "miou": 0.5, "pixel_acc": 0.8, "modal_area_error_percent": 1.0,
                 "train_seconds": 1.0, "infer_px_per_s": 10.0, "per_class_iou": {"quartz": 0.5}}
                for f in job.fractions]  # fmt: skip
        record = {"id": job.id, "spec": job.spec(), "rows": rows, "seconds": 1.0}
        write_json(out / "jobs" / f"{job.id}.json", record)
        return record

    monkeypatch.setattr(sw, "run_job", fake_run_job)
    sweep = sw.Sweep(sw.expand([DEFAULT], [("model.backbone", ["sage", "gat"])]), seeds=[0], fractions=[0.01, 0.05])
    with pytest.raises(KeyboardInterrupt):
        sw.run_sweep(sweep, tmp_path, log=lambda m: None)
    rows = _rows(tmp_path)
    assert [(r["variant"], r["fraction"]) for r in rows] == [("backbone=sage", "0.01"), ("backbone=sage", "0.05")]
    assert len(list((tmp_path / "jobs").glob("*.json"))) == 1
    pending = [j for j in sweep.jobs() if not (tmp_path / "jobs" / f"{j.id}.json").exists()]
    assert [j.name for j in pending] == ["backbone=gat"]


def test_grid_values_and_variant_names() -> None:
    key, values = sw.parse_grid("data.train_eds_fraction=[0.001,0.05],null")
    assert (key, values) == ("data.train_eds_fraction", [[0.001, 0.05], None])
    assert sw.parse_grid("--model.hidden_channels=16,32") == ("model.hidden_channels", [16, 32])
    variants = sw.expand([DEFAULT, str(CONFIG_DIR / "paper_gat.yaml")],
                         [("model.backbone", ["sage", "gat"]), ("data.train_fields", [4])])  # fmt: skip
    assert [v.name for v in variants] == ["default/backbone=sage", "default/backbone=gat",
                                          "paper_gat/backbone=sage", "paper_gat/backbone=gat"]  # fmt: skip
    assert variants[1].overrides == {"model.backbone": "gat", "data.train_fields": 4}
    # Baselines depend on the test split only: one job per method and distinct (config, data overrides).
    jobs = sw.Sweep(variants, seeds=[0, 1], baselines=["nearest-point"]).jobs()
    assert len(jobs) == 4 * 2 + 2 and [j.seed for j in jobs[:4]] == [0, 0, 0, 0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--grid", "model.backbone"], "KEY=V1,V2"),
        (["--grid", "trainer.max_epochs=3"], "--budget"),
        (["--baselines", "voronoi"], "Unknown baseline"),
        (["--fractions", "2"], "--fractions"),
        (["--budget", "0"], "--budget"),
        (["--grid", "model.backbone=sage", "--grid", "model.backbone=gat"], "given twice"),
    ],
)
def test_bad_specifications_are_refused_with_the_fix(argv, message, tmp_path, capsys) -> None:  # noqa: ANN001
    assert main(["compare", "--config", DEFAULT, "--out", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err


def test_build_takes_overrides_and_names_a_bad_key() -> None:
    built = build(DEFAULT, {"model.backbone": "gcn", "data.source_kwargs.size": 32, "trainer.max_time": None,
                            "trainer.logger": False})  # fmt: skip
    assert built.model.hparams.backbone == "gcn" and built.config["trainer"]["max_time"] is None
    assert built.datamodule.dataset("train")[0].image.shape[-1] == 32
    with pytest.raises(BuildError, match="model.backbon"):
        build(DEFAULT, {"model.backbon": "gat"})
    with pytest.raises(BuildError, match="does not exist"):
        build("configs/nope.yaml")
