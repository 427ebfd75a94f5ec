"""`fusionseg mosaic` and `fusionseg.export.mosaic`: stitching by confidence, the pyramidal TIFF, the command end
to end on overlapping crops of one simulated field, bad input (exit 2, nothing written) and resuming."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from fusionseg.cli import main
from fusionseg.data.io import load_sample, save_sample
from fusionseg.export.mosaic import (
    NOT_MEASURED,
    MosaicError,
    Stitcher,
    edge_distance,
    find_overlaps,
    mode_downsample,
    mosaic_shape,
    place_fields,
    read_label_tiff,
    read_positions,
    write_pyramid_tiff,
)

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "bruker"
SIZE, TILE = 176, 104  # the whole field, and 2x2 fields of it overlapping by 32 px
STEP = SIZE - TILE


# ----------------------------------------------------------------------------- stitching (no SEM)
def winners(placements, confidences, shape):
    """The field each mosaic pixel should come from: highest confidence, then deeper inside, then first."""
    best = np.full(shape, -np.inf)
    depth = np.full(shape, -1)
    owner = np.full(shape, -1)
    for i, (p, conf) in enumerate(zip(placements, confidences, strict=True)):
        win, d = p.window, edge_distance(p.height, p.width)
        take = (conf > best[win]) | ((conf == best[win]) & (d > depth[win]))
        best[win][take], depth[win][take], owner[win][take] = conf[take], d[take], i
    return owner


def test_stitching_gives_each_pixel_the_most_confident_field() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 6, (90, 100)).astype(np.uint16)
    shapes = {"a": (50, 60), "b": (50, 60), "c": (50, 60), "d": (50, 60)}
    placements = place_fields(shapes, {"a": (5, 3), "b": (5, 43), "c": (45, 3), "d": (45, 43)})  # origin shifted
    assert mosaic_shape(placements) == (90, 100) and [(p.row, p.col) for p in placements][-1] == (40, 40)
    confidences = [rng.random((50, 60)).astype(np.float32) for _ in placements]
    for conf in confidences[:2]:
        conf[:, 40:] = conf[:, :20] = 0.5  # a band of equal confidence: the tie rule decides there
    confidences[3][:10, :10] = np.nan  # not measured by d: the others' pixels win
    owner = winners(placements, [np.nan_to_num(c, nan=-np.inf) for c in confidences], (90, 100))
    stitcher = Stitcher((90, 100), placements)
    for i, p in enumerate(placements):  # each field is right only where it should win
        labels = truth[p.window].copy()
        wrong = owner[p.window] != i
        labels[wrong] = (labels[wrong] + 1 + i) % 6
        labels[np.isnan(confidences[i])] = NOT_MEASURED
        stitcher.add(i, labels, confidences[i])
    np.testing.assert_array_equal(stitcher.owner, owner)
    np.testing.assert_array_equal(stitcher.labels, truth)
    shared = np.add.reduce([np.pad(np.ones(s), ((p.row, 90 - p.row - s[0]), (p.col, 100 - p.col - s[1])))
                            for p, s in zip(placements, shapes.values(), strict=True)]) >= 2  # fmt: skip
    wins = stitcher.overlap_wins()
    assert sum(wins.values()) == shared.sum() and all(
        wins[p.name] == (owner[shared] == i).sum() for i, p in enumerate(placements)
    )
    report = stitcher.overlap_report(find_overlaps(placements))
    ab = next(r for r in report if r["fields"] == ["a", "b"])
    assert ab["labels_compared_px"] == 50 * 20 and 0 < ab["labels_differ_px"] <= 50 * 20


def test_mode_downsample_and_pyramidal_tiff(tmp_path: Path) -> None:
    block = np.array([[1, 1, 2, 3, 5], [2, 1, 3, 3, 5], [5, 6, 7, 7, 5]], dtype=np.uint16)
    np.testing.assert_array_equal(mode_downsample(block), [[1, 3, 5], [5, 7, 5]])  # majority; tie: top-left
    rng = np.random.default_rng(1)
    coarse = rng.integers(0, 9, (150, 170)).astype(np.uint16)
    coarse[:2, :2] = NOT_MEASURED
    labels = np.kron(coarse, np.ones((4, 4), dtype=np.uint16))[:597, :661]  # 4x4 blocks: every level is exact
    names = [f"phase-{k}" for k in range(9)]
    shapes = write_pyramid_tiff(tmp_path / "m.tif", labels, names, pixel_size_um=1.5)
    assert shapes == [(597, 661), (299, 331), (150, 166)]
    with tifffile.TiffFile(tmp_path / "m.tif") as tif:
        page, series = tif.pages[0], tif.series[0]
        assert page.is_tiled and (page.tilewidth, page.tilelength) == (256, 256) and page.compression == 8
        assert json.loads(page.description)["class_names"] == names
        assert page.resolution == pytest.approx((1e4 / 1.5, 1e4 / 1.5))
        assert [lvl.shape for lvl in series.levels] == shapes
        np.testing.assert_array_equal(series.levels[0].asarray(), labels)
        np.testing.assert_array_equal(series.levels[1].asarray(), labels[::2, ::2])
        np.testing.assert_array_equal(series.levels[2].asarray(), coarse[:, :166])
        assert series.levels[2].pages[0].resolution == pytest.approx((1e4 / 6, 1e4 / 6))


def test_positions_csv(tmp_path: Path) -> None:
    csv = tmp_path / "p.csv"
    csv.write_text("field,x_um,y_um\na,0,0\nb,151.2,-3.1\n")
    assert read_positions(csv, pixel_size_um=1.5) == {"a": (0, 0), "b": (-2, 101)}  # (row, col), rounded
    with pytest.raises(MosaicError, match="uncalibrated"):
        read_positions(csv, None)
    csv.write_text("field,x_px,y_px\na,0,0\na,3,4\n")
    with pytest.raises(MosaicError, match="'a' twice"):
        read_positions(csv)
    csv.write_text("field,x_px,y_px\na,0,nan\n")
    with pytest.raises(MosaicError, match="line 2"):
        read_positions(csv)


# ----------------------------------------------------------------------------- the command, end to end
def crop(sample, r: int, c: int, name: str):
    """The TILE x TILE window of ``sample`` at (r, c) px with the points inside it (same spectra)."""
    rc = sample.point_coords
    keep = (rc[:, 0] >= r) & (rc[:, 0] < r + TILE) & (rc[:, 1] >= c) & (rc[:, 1] < c + TILE)
    return replace(sample, image=sample.image[:, r : r + TILE, c : c + TILE],
                   point_coords=rc[keep] - torch.tensor([r, c], dtype=rc.dtype),
                   point_features=sample.point_features[keep], target=sample.target[r : r + TILE, c : c + TILE],
                   point_target=sample.point_target[keep], meta=replace(sample.meta, name=name))  # fmt: skip


def write_positions(path: Path, positions: dict[str, tuple[int, int]]) -> Path:
    path.write_text("field,x_px,y_px\n" + "".join(f"{n},{c},{r}\n" for n, (r, c) in positions.items()))
    return path


def mosaic(inputs: Path, positions: Path, out: Path, *extra: str) -> int:
    return main(["mosaic", str(inputs), "--positions", str(positions), "--out", str(out), "--method", "geodesic",
                 "--threads", "1", *extra])  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A simulated basalt field (1.5 % spectra), its 2x2 overlapping crops with their positions, the mosaic
    of the crops and the map of the whole field, both by geodesic fill."""
    from fusionseg.sem.data.synthetic import simulate_field

    root = tmp_path_factory.mktemp("mosaic")
    field = simulate_field("basalt", SIZE, seed=0)
    rng = np.random.default_rng(0)
    coords = np.unique(rng.integers(0, SIZE, (round(0.015 * SIZE**2), 2)), axis=0).astype(np.float64)
    whole = field.to_sample(coords, name="whole")
    save_sample(whole, root / "whole.npz")
    (root / "fields").mkdir()
    positions = {f"tile_{i}{j}": (i * STEP, j * STEP) for i in (0, 1) for j in (0, 1)}
    for name, (r, c) in positions.items():
        save_sample(crop(whole, r, c, name), root / "fields" / f"{name}.npz")
    csv = write_positions(root / "positions.csv", positions)
    assert mosaic(root / "fields", csv, root / "out") == 0
    assert main(["segment", str(root / "whole.npz"), "--out", str(root / "whole"), "--method", "geodesic"]) == 0
    return {"root": root, "positions": positions, "csv": csv, "out": root / "out"}


def field_map(out: Path, name: str, names: list[str]) -> np.ndarray:
    """A field's own phase map in the mosaic's class ids."""
    labels, own = read_label_tiff(out / "fields" / name / f"{name}_phases.tif")
    return np.array([names.index(n) for n in own] + [NOT_MEASURED] * (NOT_MEASURED + 1 - len(own)))[labels]


def test_mosaic_of_overlapping_crops_matches_the_fields_and_the_whole(run) -> None:
    out, positions = run["out"], run["positions"]
    labels, names = read_label_tiff(out / "mosaic_phases.tif")
    report = json.loads((out / "mosaic.json").read_text())
    assert labels.shape == (SIZE, SIZE) and report["mosaic"]["height"] == SIZE and report["class_names"] == names
    cover = np.zeros((SIZE, SIZE), dtype=int)
    for r, c in positions.values():
        cover[r : r + TILE, c : c + TILE] += 1
    depth = np.full((SIZE, SIZE), -1)
    expected = np.zeros((SIZE, SIZE), dtype=np.int64)
    for name, (r, c) in positions.items():  # a classic fill's confidence is 1: the deeper field wins, then the first
        own, win, d = field_map(out, name, names), np.s_[r : r + TILE, c : c + TILE], edge_distance(TILE, TILE)
        alone = cover[win] == 1
        np.testing.assert_array_equal(labels[win][alone], own[alone])  # outside the overlaps: the field's own map
        take = d > depth[win]
        expected[win][take], depth[win][take] = own[take], d[take]
    np.testing.assert_array_equal(labels, expected)  # inside them: pixel by pixel the tie rule
    whole, whole_names = read_label_tiff(run["root"] / "whole" / "whole_phases.tif")
    agree = np.array([names.index(n) if n in names else -1 for n in whole_names])[whole] == labels
    seams = cover >= 2
    # measured: 99.8 % of the overlap pixels and 99.9 % of the others agree with the map of the whole field
    assert agree[seams].mean() > 0.98 and agree[~seams].mean() > 0.98, (agree[seams].mean(), agree[~seams].mean())
    verdicts = [(tuple(r["box"][2:]), r["verdict"]) for r in report["overlap_checks"]]  # the crops agree there
    assert all(v == "ok" for box, v in verdicts if max(box) == TILE) and "mismatch" not in dict(verdicts).values()
    assert sum(f["won_overlap_px"] for f in report["fields"]) == seams.sum()
    modal = {row["phase"]: int(row["pixels"]) for row in report["modal"]}
    counts = np.bincount(labels.ravel(), minlength=len(names))[: len(names)]
    assert sum(modal.values()) == SIZE * SIZE and all(modal[n] == counts[k] for k, n in enumerate(names) if n in modal)
    assert (out / "mosaic_modal.csv").read_text().startswith("phase,pixels,area_percent,mass_percent")
    assert (out / "mosaic_overview.png").stat().st_size > 0


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    if not folder.exists():
        return {}
    return {p.relative_to(folder).as_posix(): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in folder.rglob("*") if p.is_file()}  # fmt: skip


def bad_field(fields: Path, name: str, **meta) -> None:
    sample = load_sample(fields / f"{name}.npz")
    domain = {k: v for k, v in meta.items() if k != "pixel_size_um"}
    sample.meta = replace(sample.meta, pixel_size_um=meta.get("pixel_size_um", sample.meta.pixel_size_um),
                          domain=replace(sample.meta.domain, **domain))  # fmt: skip
    save_sample(sample, fields / f"{name}.npz")


BAD = {  # case -> (how the fields or positions are spoiled, the field the message must name)
    "field without a position": ("drop", "tile_11"),
    "position without a field": ("ghost", "ghost"),
    "different pixel size": ("pixel_size_um", "tile_01"),
    "different beam energy": ("beam_energy_kev", "tile_10"),
    "shifted position": ("shift", "tile_11"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_exits_2_naming_the_field_and_writes_nothing(case, run, tmp_path, capsys) -> None:
    how, name = BAD[case]
    fields = tmp_path / "fields"
    shutil.copytree(run["root"] / "fields", fields)
    positions = dict(run["positions"])
    if how == "drop":
        positions.pop(name)
    elif how == "ghost":
        positions[name] = (0, 300)
    elif how == "shift":
        positions[name] = (positions[name][0] + 16, positions[name][1])
    else:
        bad_field(fields, name, **{how: 2.0 if how == "pixel_size_um" else 15.0})
    csv = write_positions(tmp_path / "positions.csv", positions)
    before = snapshot(run["out"])
    capsys.readouterr()
    assert mosaic(fields, csv, tmp_path / "new") == 2
    assert mosaic(fields, csv, run["out"]) == 2  # an existing mosaic folder is left as it was
    err = capsys.readouterr().err
    assert "fusionseg mosaic: error:" in err and name in err and len(err.strip().splitlines()) == 2, err
    assert not (tmp_path / "new").exists() and snapshot(run["out"]) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fields", "positions.csv"]  # no staging left behind


def test_rerun_keeps_mapped_fields_and_refuses_other_settings(run, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    shutil.copytree(run["out"], out)
    before = snapshot(out)
    shutil.rmtree(out / "fields" / "tile_01")  # as if the first run had stopped before this field
    capsys.readouterr()
    assert mosaic(run["root"] / "fields", run["csv"], out) == 0
    printed = capsys.readouterr().out
    assert printed.count(": already mapped in") == 3 and "tile_01: mapping" in printed
    after = snapshot(out)
    kept = [f for f in before if f.startswith("fields/tile_") and not f.startswith("fields/tile_01/")]
    assert kept and all(after[f] == before[f] for f in kept)  # untouched
    assert any(after[f] != before[f] for f in after if f.startswith("fields/tile_01/"))  # mapped again
    np.testing.assert_array_equal(read_label_tiff(out / "mosaic_phases.tif")[0],
                                  read_label_tiff(run["out"] / "mosaic_phases.tif")[0])  # fmt: skip
    report = json.loads((out / "mosaic.json").read_text())
    assert [f["reused"] for f in report["fields"]] == [True, False, True, True]
    assert mosaic(run["root"] / "fields", run["csv"], out, "--seed", "3") == 2  # maps of another setting
    assert "other settings" in capsys.readouterr().err and snapshot(out) == after
    (out / "notes.txt").write_text("mine")
    assert mosaic(run["root"] / "fields", run["csv"], out) == 2  # a file fusionseg did not write
    assert "notes.txt" in capsys.readouterr().err


@pytest.mark.skipif(not REAL.is_dir(), reason=f"real Bruker files absent ({REAL})")
def test_real_bruker_stage_positions_are_read_and_unlike_fields_refused(tmp_path, capsys) -> None:
    from fusionseg.sem.data.readers import read_input
    from fusionseg.sem.mosaic import stage_position

    bcf = REAL / "30x30_instructively_packed_16bit_compressed.bcf"
    assert stage_position(read_input(bcf)) == pytest.approx((66940.81, 54233.16))  # µm, original_metadata.Stage
    capsys.readouterr()
    assert main(["mosaic", str(REAL / "*.bcf"), "--out", str(tmp_path / "out"), "--method", "nearest-point"]) == 2
    err = capsys.readouterr().err
    assert "30x30_instructively_packed_16bit_compressed has pixel size" in err and not (tmp_path / "out").exists()
