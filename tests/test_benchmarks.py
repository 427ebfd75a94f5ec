"""The benchmark suite runs on a tiny case and writes every method and fraction (numbers come from `make bench`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmarks import bench_accuracy, bench_inference
from benchmarks.report import render


@pytest.fixture(scope="module")
def tiny_accuracy() -> dict:
    return bench_accuracy.main(["--tiny"])


def test_accuracy_benchmark_reports_every_method_and_fraction(tiny_accuracy: dict) -> None:
    report = tiny_accuracy
    classic = {"nearest-point", "superpixel-vote", "random-walker", "geodesic", "fast-global-smoother"}
    expected = {"bse-only", "paper_gat-shipped", "default", "default-shipped", "ceiling-measured-phases",
                "oracle-dense-eds",
                *classic}  # fmt: skip
    assert set(report["classic"]) == classic
    assert set(report["methods"]) == expected
    guided, large = bench_accuracy.GUIDED, bench_accuracy.LARGE
    cases = ["synthetic", guided, large, *(["repka2025"] if bench_accuracy.REPKA.exists() else [])]
    assert list(report["results"]) == cases
    rows = {
        "synthetic": expected,
        guided: {"default", "default-shipped", *bench_accuracy.BASELINES},
        large: expected - {"oracle-dense-eds"},  # no dense oracle at microscope field sizes
        "repka2025": expected | {bench_accuracy.PER_FIELD},
    }
    for case in cases:
        assert set(report["results"][case]) == rows[case]
        assert set(report["identification_accuracy"][case]) == {"0.001", "0.005", "0.01", "0.05"}
        for per_fraction in report["results"][case].values():
            assert set(per_fraction) == {"0.001", "0.005", "0.01", "0.05"}
            for m in per_fraction.values():
                if "error" in m:  # only `segment` per field may refuse, with its message, when points are too few
                    assert "points" in m["error"]
                    continue
                assert 0 <= m["miou"] <= 1 and 0 <= m["pixel_acc"] <= 1 and m["modal_area_error_percent"] >= 0
                assert m["per_class_iou"]
    synthetic = report["results"]["synthetic"]
    # The dense-EDS ceiling identifies (almost) every pixel; one point per field (0.1 % of 32²) cannot.
    assert synthetic["oracle-dense-eds"]["0.01"]["pixel_acc"] > 0.9
    assert synthetic["nearest-point"]["0.05"]["pixel_acc"] > synthetic["nearest-point"]["0.001"]["pixel_acc"] + 0.1
    assert report["identification_accuracy"]["synthetic"]["0.05"] > 0.9
    # Every method that names phases from its spectra stays under the measured-phases ceiling, class by class.
    for case in cases:
        results = report["results"][case]
        for f, ceiling in results["ceiling-measured-phases"].items():
            for m, per_fraction in results.items():
                score = per_fraction[f]
                if m in ("oracle-dense-eds", "ceiling-measured-phases") or "error" in score:
                    continue
                assert score["pixel_acc"] <= ceiling["pixel_acc"] + 1e-6, (case, m, f)
                for name, iou in score["per_class_iou"].items():
                    assert iou <= ceiling["per_class_iou"][name] + 1e-6, (case, m, f, name)
    assert set(report["training"]) == expected - set(bench_accuracy.BASELINES)
    # Every row's cost is recorded per case (the full run's budget is stated from these).
    assert set(report["seconds_per_case"][large]) == rows[large] - {"ceiling-measured-phases"}
    assert report["protocol"]["large_size"] == bench_accuracy.TINY.large_size


def test_report_renders_tables_and_plots(tiny_accuracy: dict, tmp_path) -> None:
    (tmp_path / "accuracy.json").write_text(json.dumps({**tiny_accuracy, "machine": {"date": "today"}}))
    text = render(tmp_path).read_text()
    for method in tiny_accuracy["methods"]:
        assert f"| {method} |" in text
    assert (tmp_path / "accuracy_miou.png").stat().st_size > 1000


@pytest.mark.skipif(not bench_accuracy.REPKA.exists(), reason="../shared/data/real/repka2025 not present")
def test_repka_phases_get_minerals_in_the_real_bse_order() -> None:
    import tifffile
    from skimage import io

    from fusionseg.sem.minerals import get_mineral

    mapping, gain = bench_accuracy.repka_mapping()
    bse = io.imread(bench_accuracy.REPKA / "bse.png").astype(np.float64) / 65535
    phases = tifffile.imread(bench_accuracy.REPKA / "phases.tiff")
    assert set(mapping) == set(np.unique(phases).tolist()) and len(set(mapping.values())) == len(mapping)
    by_level = sorted(mapping, key=lambda k: bse[phases == k].mean())
    etas = [get_mineral(mapping[k]).eta for k in by_level]
    assert etas == sorted(etas) and 1.2 <= gain <= 2.4
    assert mapping[10] != mapping[39]  # the pair BSE cannot separate gets two minerals


def test_monotone_assignment_is_optimal_on_a_small_case() -> None:
    cost, picks = bench_accuracy._monotone_assignment(np.array([0.1, 0.5, 0.52]), np.array([0.0, 0.1, 0.3, 0.5, 0.9]))
    assert picks == [1, 2, 3]  # 0.1->0.1, 0.5->0.3, 0.52->0.5 beats 0.5->0.5, 0.52->0.9
    assert cost == pytest.approx((0.5 - 0.3) ** 2 + (0.52 - 0.5) ** 2)


def test_inference_benchmark_tiles_large_fields() -> None:
    report = bench_inference.main(["--configs", "default", "--sizes", "48", "96", "--tile", "64", "--overlap", "16",
                                   "--repeats", "1"])  # fmt: skip
    rows = report["configs"]["default"]["results"]
    assert [r["size"] for r in rows] == [48, 96] and all("error" not in r for r in rows)
    assert rows[0]["tiles"] == 1 and rows[1]["tiles"] == 4
    assert all(r["seconds_median"]["total"] > 0 and r["peak_rss_mib"] > 0 for r in rows)
    assert report["configs"]["default"]["growth_exponent"] is not None
    assert bench_inference.tiles(96, 64, 16) == [(0, 64, 0, 48), (32, 96, 48, 96)]


def test_validation_scores_the_shipped_model_at_both_noise_levels() -> None:
    import benchmarks.validate_model as validate_model
    from fusionseg.paths import DEFAULT_WEIGHTS

    report = validate_model.validate(DEFAULT_WEIGHTS, size=48, per_rock=1)
    assert len(report["results"]) == len(validate_model.NOISE_SCALES) * len(bench_accuracy.FRACTIONS)
    by_fraction = [report["results"][f"noise 0.2 / {f}"]["miou"] for f in bench_accuracy.FRACTIONS]
    assert by_fraction[-1] > by_fraction[0] > 0.1  # more spectra, better maps
    assert report["mean_miou"] == pytest.approx(np.mean([v["miou"] for v in report["results"].values()]), abs=1e-3)


def test_the_paper_protocol_scores_only_points_the_model_did_not_see() -> None:
    """A transductive step hides a quarter of the points and is scored on exactly their pixels."""
    from benchmarks.bench_paper_protocol import QUERY_SHARE, hide_and_score
    from fusionseg.registry import DATA_SOURCES
    from fusionseg.sample import IGNORE_INDEX

    sample = DATA_SOURCES.create("sem-synthetic", num_fields=1, size=64, rocks=["granite"], eds_fraction=0.1)[0]
    step = hide_and_score(sample, np.random.default_rng(0))
    scored = step.target != IGNORE_INDEX
    shown = np.rint(step.point_coords.numpy()).astype(int).clip(0, 63)
    assert not scored[shown[:, 0], shown[:, 1]].any()  # no shown point's pixel is scored
    hidden = len(sample.point_coords) - len(step.point_coords)
    assert int(scored.sum()) == hidden and abs(hidden / len(sample.point_coords) - QUERY_SHARE) < 0.1
    assert torch.equal(step.target[scored], sample.target[scored])  # given labels: the truth at the points
