"""Adaptive acquisition planner: the loop's contracts (no repeats, budget kept) and the strategies' behaviour."""

from __future__ import annotations

import numpy as np
import pytest

from fusionseg.acquisition import AcquisitionError, Planner, run_acquisition
from fusionseg.registry import ACQUISITION_STRATEGIES


def two_level_image(size: int = 64) -> np.ndarray:
    """A dark field with one bright 6x6 inclusion (rows/cols 40..45), light noise."""
    rng = np.random.default_rng(0)
    img = 0.3 + 0.01 * rng.standard_normal((size, size))
    img[40:46, 40:46] = 0.8
    return img.astype(np.float32)


def fake_segmenter(sample):
    """Labels by image level; confidence 0.2 on bright pixels until one bright pixel is measured."""
    img = sample.image[0].numpy()
    labels = (img > 0.55).astype(np.int64)
    rc = sample.point_coords.numpy().astype(int)
    seen_bright = bool((img[rc[:, 0], rc[:, 1]] > 0.55).any())
    conf = np.where(labels == 1, 1.0 if seen_bright else 0.2, 0.95).astype(np.float32)
    return labels, conf


@pytest.mark.parametrize("strategy", ["random", "grid", "stratified", "superpixel", "unmeasured-regions",
                                      "uncertainty", "hybrid"])  # fmt: skip
def test_never_twice_and_budget_kept(strategy: str) -> None:
    planner = Planner(two_level_image(), budget=40, batch_size=7, strategy=strategy, segmenter=fake_segmenter)
    states = run_acquisition(planner, lambda c: np.ones((len(c), 3)))
    flat = planner.coords[:, 0] * 64 + planner.coords[:, 1]
    assert len(np.unique(flat)) == len(flat) == 40  # every point distinct, budget spent exactly
    assert states[-1].stop and "budget" in states[-1].reason
    assert len(states) == 6  # 5 batches of 7 + one of 5
    assert planner.propose().shape == (0, 2)  # nothing beyond the budget


@pytest.mark.parametrize("strategy", ["unmeasured-regions", "uncertainty"])
def test_adaptive_strategies_find_the_inclusion_random_misses(strategy: str) -> None:
    def first_two_batches(name: str) -> np.ndarray:
        planner = Planner(two_level_image(), budget=16, batch_size=8, strategy=name, segmenter=fake_segmenter, seed=3)
        run_acquisition(planner, lambda c: np.ones((len(c), 3)))
        return planner.coords

    def hits(rc: np.ndarray) -> bool:
        return bool(((rc >= 40) & (rc < 46)).all(1).any())

    assert hits(first_two_batches(strategy))
    assert not hits(first_two_batches("random"))


def test_bad_requests_are_refused() -> None:
    planner = Planner(two_level_image(), budget=10, batch_size=5, strategy="random", segmenter=fake_segmenter)
    coords = planner.propose()
    planner.add(coords, np.ones((5, 3)))
    with pytest.raises(AcquisitionError, match="already measured"):
        planner.add(coords[:1], np.ones((1, 3)))
    with pytest.raises(AcquisitionError, match="over the budget"):
        free = np.array([[r, c] for r in range(64) for c in range(64) if not planner.taken[r, c]][:6])
        planner.add(free, np.ones((6, 3)))
    with pytest.raises(AcquisitionError, match="outside"):
        planner.add(np.array([[64, 0]]), np.ones((1, 3)))
    with pytest.raises(AcquisitionError, match="budget"):
        Planner(two_level_image(), budget=0, batch_size=1)
    with pytest.raises(AcquisitionError, match="segmenter"):
        p = Planner(two_level_image(), budget=4, batch_size=2, strategy="random")
        p.add(p.propose(), np.ones((2, 3)))
        p.update()


def test_confidence_target_stops_early() -> None:
    planner = Planner(two_level_image(), budget=200, batch_size=10, strategy="hybrid", segmenter=fake_segmenter,
                      confidence_target=0.9)  # fmt: skip
    states = run_acquisition(planner, lambda c: np.ones((len(c), 3)))
    assert states[-1].stop and "confidence" in states[-1].reason
    assert planner.measured < 200
    assert set(np.unique(planner.order()[:, 2])) == set(range(len(states)))  # step recorded per point


def test_strategies_are_registered() -> None:
    assert {"random", "grid", "stratified", "superpixel", "unmeasured-regions", "uncertainty", "hybrid"} <= set(
        ACQUISITION_STRATEGIES.names()
    )


def test_measurable_mask_is_respected() -> None:
    """Only pixels of the EDS-acquired area are proposed; shares are of that area."""
    mask = np.zeros((64, 64), dtype=bool)
    mask[:, :32] = True
    for strategy in ("grid", "superpixel", "uncertainty"):
        planner = Planner(two_level_image(), budget=0.01, batch_size=5, strategy=strategy, segmenter=fake_segmenter,
                          measurable=mask)  # fmt: skip
        run_acquisition(planner, lambda c: np.ones((len(c), 3)))
        assert planner.measured == round(0.01 * 64 * 32)
        assert mask[planner.coords[:, 0], planner.coords[:, 1]].all(), strategy
    with pytest.raises(AcquisitionError, match="measurable"):
        Planner(two_level_image(), budget=4, batch_size=2, measurable=np.zeros((64, 64), dtype=bool))


# ----------------------------------------------------------------------------- fusionseg segment --acquire
@pytest.fixture(scope="module")
def dense_folder(tmp_path_factory: pytest.TempPathFactory):
    """A 48^2 simulated field as a user's dense EDS folder (bse.tif + eds.npz), EDS over the left 40 columns."""
    import tifffile

    from fusionseg.sem.data.synthetic.field import simulate_field

    folder = tmp_path_factory.mktemp("dense")
    fld = simulate_field("granite", 48, seed=5)
    cube = fld.dense_spectra().astype(np.float32)
    cube[:, 40:] = 0  # not acquired
    tifffile.imwrite(folder / "bse.tif", (fld.bse * 65535).astype(np.uint16))
    ax = fld.spectra.axis
    np.savez(folder / "eds.npz", spectra=cube, offset_ev=ax.offset_ev, scale_ev=ax.scale_ev, beam_energy_kev=20.0)
    return folder


def test_segment_acquire_writes_order_and_picture(dense_folder, tmp_path) -> None:
    import csv
    import json

    from fusionseg.sem.segment import segment_main

    out = tmp_path / "out"
    rc = segment_main([str(dense_folder), "--acquire", "adaptive", "--eds-budget", "24", "--batch", "6",
                       "--threads", "1", "--out", str(out)])  # fmt: skip
    assert rc == 0
    rows = list(csv.DictReader((out / "acquisition.csv").open()))
    order = np.array([[int(r["row"]), int(r["col"]), int(r["step"])] for r in rows])
    assert len(order) == 24 and sorted(set(order[:, 2])) == [0, 1, 2, 3]  # four batches of six
    assert (order[:, 1] < 40).all()  # never where the map has no spectrum
    assert len(np.unique(order[:, 0] * 48 + order[:, 1])) == 24
    assert (out / "acquisition.png").stat().st_size > 1000
    summary = json.loads((out / "summary.json").read_text())
    assert summary["points"] == 24 and summary["acquisition"]["measured"] == 24
    assert [b["measured"] for b in summary["acquisition"]["batches"]] == [6, 12, 18, 24]
    points = list(csv.DictReader((out / "points.csv").open()))
    assert len(points) == 24  # the final map is made from exactly the acquired spectra


@pytest.mark.parametrize(
    "args, message",
    [
        (["--eds-budget", "0.01"], "add --acquire"),
        (["--acquire", "uncertanty"], "Did you mean 'uncertainty'"),
        (["--acquire", "adaptive", "--eds-budget", "5000"], "exceeds"),
    ],
)
def test_segment_acquire_bad_requests(dense_folder, tmp_path, capsys, args, message) -> None:
    from fusionseg.sem.segment import segment_main

    out = tmp_path / "out"
    assert segment_main([str(dense_folder), *args, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())  # nothing half-written


def test_segment_acquire_needs_a_dense_map(dense_folder, tmp_path, capsys) -> None:
    """A folder of point spectra cannot be re-measured: refused with the fix, nothing written."""
    import shutil

    from fusionseg.sem.segment import segment_main

    points = tmp_path / "points"
    shutil.copytree(dense_folder, points)
    with np.load(dense_folder / "eds.npz") as npz:
        arrays = dict(npz)
    arrays["coords"] = np.array([[3.0, 4.0], [20.0, 30.0]])
    arrays["spectra"] = arrays["spectra"][[3, 20], [4, 30]]
    np.savez(points / "eds.npz", **arrays)
    out = tmp_path / "out"
    assert segment_main([str(points), "--acquire", "adaptive", "--out", str(out)]) == 2
    assert "dense EDS map" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


def test_acquisition_amount_rejects_nonsense() -> None:
    import argparse

    from fusionseg.sem.segment import acquisition_amount

    assert acquisition_amount("0.003") == 0.003 and acquisition_amount("40") == 40
    for bad in ("0", "-1", "1.5", "inf", "nan", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            acquisition_amount(bad)


def test_default_batch_spends_the_budget_in_default_batches() -> None:
    from fusionseg.acquisition import DEFAULT_BATCHES

    planner = Planner(two_level_image(), budget=48, strategy="random", segmenter=fake_segmenter)
    states = run_acquisition(planner, lambda c: np.ones((len(c), 3)))
    assert len(states) == DEFAULT_BATCHES and planner.measured == 48


def test_benchmark_scores_strategies_and_reports(tmp_path, capsys) -> None:
    """benchmarks/bench_acquisition.py on two tiny fields: one row per strategy, the table and the plot."""
    import argparse
    import json

    from benchmarks import bench_acquisition as bench
    from fusionseg.pretrain import load_weights, shipped_weights_path
    from fusionseg.sem.data.synthetic.field import simulate_field

    model = load_weights(shipped_weights_path("default"))
    fields = [simulate_field(rock, 48, seed=1) for rock in ("granite", "basalt")]
    rows = [{"case": "synthetic", "split": "validation", **bench.score(fields, s, 0.01, model)}
            for s in ("random", "uncertainty")]  # fmt: skip
    for row in rows:
        assert row["points_per_field"] == 23 and 0 < row["miou"] <= 1 and 0 < row["ceiling_miou"] <= 1
    results = tmp_path / "acq.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    bench.report(argparse.Namespace(results=str(results), plot=str(tmp_path / "curves.png")))
    table = capsys.readouterr().out
    assert "| 1 % |" in table and "uncertainty" in table and (tmp_path / "curves.png").is_file()
