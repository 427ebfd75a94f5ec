"""`fusionseg segment`: sparse acquisition, point labelling, per-field training, outputs, bad input."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from fusionseg.baselines import nearest_point_map
from fusionseg.sample import IGNORE_INDEX
from fusionseg.sem.export.report import adjusted_rand_index
from fusionseg.sem.identify import (
    LOW_COUNT_NAME,
    cluster_points,
    label_points,
    library_references,
    void_class,
    void_points,
)
from fusionseg.sem.meta import EnergyAxis
from fusionseg.sem.segment import (
    SegmentConfig,
    SegmentError,
    cluster_class_map,
    rebin_spectra,
    segment_field,
    segment_main,
    sparse_acquisition,
)

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
BCF30 = REAL / "bruker" / "30x30_instructively_packed_16bit_compressed.bcf"
BCF16 = REAL / "bruker" / "16x16_12bit_packed_8bit.bcf"
needs_bruker = pytest.mark.skipif(not BCF30.is_file(), reason=f"real Bruker test file absent ({BCF30})")


@pytest.fixture(scope="module")
def bruker():
    from fusionseg.sem.data.readers import read_input

    return read_input(BCF30)


def test_adjusted_rand_index_known_values() -> None:
    a = np.array([0, 0, 1, 1, 2, 2])
    assert adjusted_rand_index(a, a) == pytest.approx(1.0)
    assert adjusted_rand_index(a, np.array([5, 5, 7, 7, 9, 9])) == pytest.approx(1.0)  # label-space free
    # scikit-learn's documented example: adjusted_rand_score([0, 0, 1, 1], [0, 0, 1, 2]) == 0.571...
    assert adjusted_rand_index(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 2])) == pytest.approx(4 / 7)


def test_rebin_conserves_counts() -> None:
    src, dst = EnergyAxis(2048, 10.0, -470.0), EnergyAxis(1030, 20.0, -480.0)  # dst covers src
    x = torch.poisson(torch.full((3, 2048), 4.0))
    y = rebin_spectra(x, src, dst)
    assert y.shape == (3, 1030)
    np.testing.assert_allclose(y.sum(1).numpy(), x.sum(1).numpy(), rtol=1e-5)


def test_rebin_in_chunks_of_int16_counts_equals_one_pass(monkeypatch) -> None:
    """Rebinned a few spectra at a time (no float64 copy of every spectrum), from int16 counts: bit-identical."""
    import fusionseg.sem.spectrum as spectrum

    src, dst = EnergyAxis(4096, 5.0, -480.0), EnergyAxis(2048, 10.0, -470.0)
    x = torch.poisson(torch.full((10, 4096), 3.0))
    whole = rebin_spectra(x, src, dst)
    monkeypatch.setattr(spectrum, "REBIN_CHUNK", 3)  # 4 chunks, the last one short
    assert torch.equal(rebin_spectra(x.to(torch.int16), src, dst), whole)


@needs_bruker
def test_sparse_acquisition_skips_unmeasured_pixels(bruker) -> None:
    cube = bruker.meta.domain.dense_spectra.copy()
    cube[:, 15:] = 0  # EDS acquired over the left half only
    domain = replace(bruker.meta.domain, dense_spectra=cube, measured_mask=cube.sum(-1) > 0)
    partial = replace(bruker, meta=replace(bruker.meta, domain=domain))
    for sampler in ("random", "grid", "stratified"):
        s = sparse_acquisition(partial, fraction=0.1, sampler=sampler, seed=1)
        assert s.num_points == 45 and (s.point_coords[:, 1] < 15).all()
        assert (s.point_features.sum(1) > 0).all()
    with pytest.raises(SegmentError, match="cannot keep 500 spectra: the map has 450 measured pixels"):
        sparse_acquisition(partial, n_points=500)


def test_library_identification_and_unknown() -> None:
    axis = EnergyAxis()
    names = ("quartz", "calcite", "pyrite")
    refs, _ = library_references(names, axis, 20.0)
    gen = torch.Generator().manual_seed(0)
    x = torch.poisson((refs / refs.sum(1, keepdim=True)).repeat(20, 1) * 2000, generator=gen)
    pl = label_points(x, axis, 20.0, class_names=names)
    assert pl.mode == "library" and set(pl.names) == set(names)
    assert [pl.names[k] for k in pl.labels[:3].tolist()] == list(names)
    flat = torch.poisson(torch.full((5, axis.size), 1.0), generator=gen)  # no mineral looks like this
    pl = label_points(torch.cat([x, flat]), axis, 20.0, class_names=names)
    assert (pl.labels[-5:] == -1).all() and pl.counts()["unknown"] == 5


def test_points_without_x_rays_are_pores() -> None:
    axis = EnergyAxis()
    names = ("quartz", "calcite", "pore")
    refs, usable = library_references(names, axis, 20.0)
    assert usable.tolist() == [True, True, False] and void_class(names) == 2 and void_class(("quartz",)) is None
    gen = torch.Generator().manual_seed(0)
    x = torch.poisson((refs[:2] / refs[:2].sum(1, keepdim=True)).repeat(20, 1) * 2000, generator=gen)
    holes = torch.poisson(torch.full((4, axis.size), 30 / axis.size), generator=gen)  # ~30 counts of background
    spectra = torch.cat([x, holes])
    assert void_points(spectra).tolist() == [False] * 40 + [True] * 4
    pl = label_points(spectra, axis, 20.0, class_names=names)
    assert [pl.names[k] for k in pl.labels[-4:].tolist()] == ["pore"] * 4
    assert pl.counts() == {"quartz": 20, "calcite": 20, "pore": 4}


@needs_bruker
def test_real_spectra_fall_back_to_clusters(bruker) -> None:
    s = sparse_acquisition(bruker, fraction=0.2, seed=0)
    pl = label_points(s.point_features, s.meta.domain.energy_axis, s.meta.domain.beam_energy_kev, n_clusters=3)
    assert pl.mode == "clusters" and pl.names == ("cluster-0", "cluster-1", "cluster-2")


def test_clustering_keeps_low_count_spectra_out_and_reports_its_choice() -> None:
    axis = EnergyAxis()
    refs, _ = library_references(("quartz", "calcite"), axis, 20.0)
    gen = torch.Generator().manual_seed(0)
    x = torch.poisson((refs / refs.sum(1, keepdim=True)).repeat(20, 1) * 2000, generator=gen)
    holes = torch.poisson(torch.full((4, axis.size), 30 / axis.size), generator=gen)  # a pore: ~30 counts
    pl = label_points(torch.cat([x, holes]), axis, 20.0, mode="clusters")
    assert pl.names == ("cluster-0", "cluster-1", LOW_COUNT_NAME)
    assert (pl.labels[-4:] == 2).all() and set(pl.labels[:40].tolist()) == {0, 1}
    assert len(set(pl.labels[0:40:2].tolist())) == 1  # every quartz spectrum in one cluster
    report = pl.clustering
    assert report["clusters"] == 2 and report["low_count_spectra"] == 4
    assert report["chosen_by"] == "best mean silhouette width"
    scores = report["silhouette_by_k"]
    assert list(scores) == [str(k) for k in range(2, 11)] and max(scores, key=scores.get) == "2"
    assert label_points(x, axis, 20.0, mode="clusters", n_clusters=3).clustering["silhouette_by_k"] == {}


def test_cluster_class_map_is_a_distribution_per_model_class() -> None:
    model = torch.tensor([0, 0, 0, 2, 2, IGNORE_INDEX])
    field = torch.tensor([1, 1, 0, 0, 0, 1])
    q = cluster_class_map(model, field, n_model=3, n_field=2)
    torch.testing.assert_close(q.sum(1), torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(q[0], torch.tensor([1.5 / 4, 2.5 / 4], dtype=torch.float64))  # 1 + 2 points, + prior
    torch.testing.assert_close(q[1], torch.tensor([0.5, 0.5], dtype=torch.float64))  # no point: uniform
    assert q[2, 0] > 0.8


@needs_bruker
def test_shipped_weights_map_real_clusters_reproducibly(bruker) -> None:
    """A real hypermap the library cannot name: the shipped weights map its spectrum clusters (the refiner
    adapted to them), ahead of the nearest kept spectrum against the dense clustering; a rerun gives the same map."""
    from fusionseg.paths import DEFAULT_WEIGHTS

    cube = bruker.meta.domain.dense_spectra
    h, w, _ = cube.shape
    ref = cluster_points(torch.from_numpy(cube.reshape(h * w, -1).astype(np.float32))).labels.view(h, w).numpy()
    config = SegmentConfig(progress=False, num_threads=1, fallback_per_field=True)
    fused, nearest = [], []
    for seed in range(3):
        s = sparse_acquisition(bruker, fraction=0.1, seed=seed)
        s = replace(s, meta=replace(s.meta, class_names=()))
        result = segment_field(s, DEFAULT_WEIGHTS, replace(config, seed=seed))
        assert result.mode == "shipped weights on spectrum clusters", result.mode
        named = result.point_labels  # clusters named by their summed spectra: a mineral or "unknown (elements)"
        assert named.clustering and not any(n.startswith("cluster-") for n in result.class_names)
        assert set(named.phases) == {n for n in named.names if n != "low counts (pore?)"}
        fused.append(adjusted_rand_index(result.labels.numpy(), ref))
        y = result.sample.point_target.numpy()
        nearest.append(adjusted_rand_index(nearest_point_map(s.point_coords.numpy(), y, (h, w)), ref))
        if seed == 0:
            again = segment_field(s, DEFAULT_WEIGHTS, config)
            assert torch.equal(again.labels, result.labels)
            assert not any("no substantial cluster structure" in n for n in result.info["notes"])
    print(f"ARI vs dense clustering: shipped weights on clusters {np.round(fused, 3)}, nearest {np.round(nearest, 3)}")
    assert np.mean(fused) > np.mean(nearest) + 0.05


@pytest.mark.skipif(not BCF16.is_file(), reason=f"real Bruker test file absent ({BCF16})")
def test_noise_clusters_are_flagged() -> None:
    """80-count spectra clustered (``mode="clusters"``: on this file the simulator's references name most points
    since its lines became proportional to atoms): the best silhouette is far under 0.25, and a QC warning (not a
    note) says the clusters are tentative."""
    from fusionseg.paths import DEFAULT_WEIGHTS
    from fusionseg.sem.data.readers import read_input

    s = sparse_acquisition(read_input(BCF16), fraction=0.3, seed=0)
    s = replace(s, meta=replace(s.meta, class_names=()))
    config = SegmentConfig(progress=False, num_threads=1, fallback_per_field=True, mode="clusters")
    result = segment_field(s, DEFAULT_WEIGHTS, config)
    assert max(result.point_labels.clustering["silhouette_by_k"].values()) < 0.25
    assert any("no substantial cluster structure" in w for w in result.qc["warnings"])
    assert not any("no substantial cluster structure" in n for n in result.info["notes"])


@needs_bruker
def test_fused_map_beats_nearest_point_on_real_bruker(bruker) -> None:
    """10 % of the spectra; reference = k-means (k=4) of the full dense map; ARI averaged over 3 seeds."""
    cube = bruker.meta.domain.dense_spectra
    h, w, _ = cube.shape
    cube = torch.from_numpy(cube.reshape(h * w, -1).astype(np.float64))
    ref = cluster_points(cube, n_clusters=4).labels.view(h, w)
    fused, nearest = [], []
    for seed in range(3):
        s = sparse_acquisition(bruker, fraction=0.1, seed=seed)
        rc = s.point_coords.long()
        y = ref[rc[:, 0], rc[:, 1]]  # point labels from the same clustering (unsupervised mode)
        s = replace(s, point_target=y, meta=replace(s.meta, class_names=tuple(f"cluster-{k}" for k in range(4))))
        config = SegmentConfig(seed=seed, progress=False, num_threads=1, max_epochs=20, batches_per_epoch=4)
        result = segment_field(s, config=config)
        fused.append(adjusted_rand_index(result.labels.numpy(), ref.numpy()))
        nearest.append(adjusted_rand_index(nearest_point_map(s.point_coords.numpy(), y.numpy(), (h, w)), ref.numpy()))
    print(f"ARI vs dense clustering: fused {np.mean(fused):.3f} {np.round(fused, 3)}, "
          f"nearest point {np.mean(nearest):.3f} {np.round(nearest, 3)}")  # fmt: skip
    assert np.mean(fused) > np.mean(nearest)


@needs_bruker
def test_per_field_path_is_reproducible_under_load(bruker) -> None:
    """No wall-clock cap by default: the same field and seed give the same map, even when a busy machine makes
    each epoch slow (simulated: a sleep in every training step; a time cap would cut training short)."""
    import time

    from fusionseg.models.module import FusionSegModule

    s = replace(sparse_acquisition(bruker, fraction=0.3, seed=0), meta=replace(bruker.meta))
    config = SegmentConfig(seed=1, progress=False, num_threads=1, max_epochs=4, batches_per_epoch=3, mode="clusters",
                           n_clusters=3)  # fmt: skip
    assert config.time_budget_s is None
    first = segment_field(s, config=config)
    slow = FusionSegModule.training_step

    def busy_step(self, *args, **kwargs):
        time.sleep(0.05)
        return slow(self, *args, **kwargs)

    FusionSegModule.training_step = busy_step
    try:
        second = segment_field(s, config=config)
        capped = segment_field(s, config=replace(config, time_budget_s=0.3))  # what a wall-clock cap does
    finally:
        FusionSegModule.training_step = slow
    assert torch.equal(first.labels, second.labels) and torch.equal(first.confidence, second.confidence)
    assert first.info["epochs"] == second.info["epochs"]
    assert capped.info["epochs"] < first.info["epochs"]  # the cap, not the data, decided when training stopped


@needs_bruker
def test_fewer_points_than_classes(bruker) -> None:
    s = sparse_acquisition(bruker, n_points=3, seed=0)
    s = replace(s, point_target=torch.tensor([0, 1, 2]), meta=replace(s.meta, class_names=("a", "b", "c", "d")))
    result = segment_field(s, config=SegmentConfig(progress=False))  # too few to train: nearest point, with a note
    assert any("only 3 labelled points for 4 phases" in n for n in result.info["notes"])
    assert set(result.labels.unique().tolist()) <= {0, 1, 2}


def test_cli_bad_input_exits_2_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "broken.bcf"
    bad.write_bytes(b"\x00garbage" * 50)
    out = tmp_path / "out"
    assert segment_main([str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "unreadable or corrupt" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".out.*"))  # nothing partial left
    folder = tmp_path / "field"
    folder.mkdir()
    tifffile.imwrite(folder / "bse.tif", np.zeros((8, 8), np.uint16))
    assert segment_main([str(folder), "--out", str(out)]) == 2
    assert "holds no EDS spectra" in capsys.readouterr().err


@needs_bruker
def test_cli_writes_all_outputs(tmp_path: Path) -> None:
    out = tmp_path / "maps"
    args = [str(BCF30), "--eds-fraction", "0.2", "--mode", "clusters", "--n-clusters", "3", "--threads", "1"]
    assert segment_main([*args, "--time-budget", "15", "--out", str(out)]) == 0
    stem = BCF30.stem
    for suffix in ("_phases.tif", "_uncertainty.tif", "_overlay.png", "_uncertainty.png", "_modal.csv"):
        assert (out / f"{stem}{suffix}").is_file(), suffix
    labels = tifffile.imread(out / f"{stem}_phases.tif")
    assert labels.shape == (30, 30) and set(np.unique(labels)) <= {0, 1, 2}
    report = (out / "report.md").read_text()
    assert "Phases identified by composition" in report and "measured spectra: 180" in report  # clusters named
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "shipped weights on spectrum clusters"
    assert summary["clustering"]["clusters"] == 3 and summary["clustering"]["chosen_by"] == "given (--n-clusters)"
    assert segment_main([*args, "--out", str(out)]) == 2  # refuses to overwrite without --overwrite
