"""Hostile-but-realistic input at every edge: a clear error (exit 2, field + value + fix), a warning
with a result, or a documented acceptance, never a traceback, a silent wrong map or lost data.

Outcome per case (the report counts them): ``error`` = the project's error type / exit 2 with a
message naming the problem; ``warn`` = runs and says why the result is weak; ``ok`` = accepted
as documented.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from fusionseg.cli import main
from fusionseg.errors import FusionSegError
from fusionseg.export.safe_io import MANIFEST_NAME, atomic_write, output_folder
from fusionseg.inference import predict_field
from fusionseg.registry import DATA_SOURCES
from fusionseg.sample import Sample, SampleError, SampleMeta
from fusionseg.sem.meta import EnergyAxis, SemMeta
from fusionseg.sem.segment import SegmentConfig, SegmentError, segment_field, segment_main

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- Sample and metadata
def make(**overrides):
    kwargs = dict(
        image=torch.rand(1, 12, 10),
        point_coords=torch.tensor([[0.0, 0.0], [7.0, 9.0]]),
        point_features=torch.rand(2, 16) * 10,
        meta=SampleMeta(class_names=("a", "b"), domain=SemMeta(energy_axis=EnergyAxis(size=16))),
        point_target=torch.tensor([0, 1]),
    )
    kwargs.update(overrides)
    return Sample(**kwargs)


def _feats(value: float, row: int = 0) -> torch.Tensor:
    f = torch.rand(2, 16) * 10
    f[row, 3] = value
    return f


SAMPLE_ERRORS = {  # case -> (make() overrides as a lambda, words the message must hold)
    "negative counts": (lambda: dict(point_features=_feats(-3.0)), "negative X-ray counts"),
    "NaN spectrum": (lambda: dict(point_features=_feats(float("nan"), 1)), "point_features of 1 points contain NaN"),
    "inf spectrum": (lambda: dict(point_features=_feats(float("inf"))), "NaN or inf"),
    "NaN coordinate": (lambda: dict(point_coords=torch.tensor([[float("nan"), 0.0], [1.0, 1.0]])), "point_coords"),
    "inf coordinate": (lambda: dict(point_coords=torch.tensor([[0.0, float("inf")], [1.0, 1.0]])), "NaN or inf"),
    "NaN pixel": (lambda: dict(image=torch.full((1, 12, 10), float("nan"))), "image contains 120 NaN or inf"),
    "complex image": (lambda: dict(image=torch.rand(1, 12, 10, dtype=torch.complex64)), "complex"),
    "channels-last RGB": (lambda: dict(image=torch.rand(12, 10, 3)), "channels-last"),
    "string image": (lambda: dict(image=np.array([["a"]])), "image"),
    "coords (N, 3)": (lambda: dict(point_coords=torch.zeros(2, 3)), "(N, 2)"),
    "rows differ": (lambda: dict(point_features=torch.rand(3, 16)), "N = 2 rows"),
    "point outside": (lambda: dict(point_coords=torch.tensor([[0.0, 0.0], [40.0, 1.0]])), "outside the 12x10"),
    "float class ids": (lambda: dict(point_target=torch.tensor([0.0, 1.5])), "non-integer class ids"),
    "float dense target": (lambda: dict(target=torch.full((12, 10), 0.3)), "non-integer class ids"),
    "class id out of range": (lambda: dict(point_target=torch.tensor([0, 7])), "outside 0..1"),
    "target wrong shape": (lambda: dict(target=torch.zeros(3, 3, dtype=torch.long)), "target must have shape"),
}

META_ERRORS = {
    "scale_ev NaN": (lambda: EnergyAxis(16, scale_ev=float("nan")), "scale_ev"),
    "scale_ev 0": (lambda: EnergyAxis(16, scale_ev=0.0), "scale_ev"),
    "scale_ev negative": (lambda: EnergyAxis(16, scale_ev=-10.0), "scale_ev"),
    "offset_ev inf": (lambda: EnergyAxis(16, offset_ev=float("inf")), "offset_ev"),
    "size 0": (lambda: EnergyAxis(0), "size"),
    "size 2.5": (lambda: EnergyAxis(2.5), "size"),
    "beam energy negative": (lambda: SemMeta(beam_energy_kev=-20.0), "beam_energy_kev"),
    "beam energy NaN": (lambda: SemMeta(beam_energy_kev=float("nan")), "beam_energy_kev"),
    "beam energy text": (lambda: SemMeta(beam_energy_kev="20 kV"), "beam_energy_kev"),
    "pixel size NaN": (lambda: SampleMeta(pixel_size_um=float("nan")), "pixel_size_um"),
    "pixel size 0": (lambda: SampleMeta(pixel_size_um=0.0), "pixel_size_um"),
    "duplicate class names": (lambda: SampleMeta(class_names=("quartz", "albite", "quartz")), "repeats ['quartz']"),
    "empty class name": (lambda: SampleMeta(class_names=("quartz", "")), "non-empty strings"),
}


@pytest.mark.parametrize("case", list(SAMPLE_ERRORS))
def test_sample_rejects(case):
    overrides, words = SAMPLE_ERRORS[case]
    with pytest.raises(SampleError, match=None) as info:
        make(**overrides())
    assert words in str(info.value)
    assert isinstance(info.value, FusionSegError)


@pytest.mark.parametrize("case", list(META_ERRORS))
def test_metadata_rejects(case):
    build, words = META_ERRORS[case]
    with pytest.raises(SampleError) as info:
        build()
    assert words in str(info.value)


def test_sample_accepts_documented_cases():
    """ok: uint8 images scale by 1/255 (as the readers do); whole-number float ids become int64; floats
    without class names stay floats (regression targets)."""
    s = make(image=torch.full((1, 12, 10), 255, dtype=torch.uint8))
    assert s.image.dtype == torch.float32 and float(s.image.max()) == 1.0
    assert make(point_target=torch.tensor([0.0, 1.0])).point_target.dtype == torch.int64
    reg = make(
        meta=SampleMeta(domain=SemMeta(energy_axis=EnergyAxis(size=16))), target=torch.rand(12, 10), point_target=None
    )
    assert reg.target.dtype == torch.float32
    enc = make(point_features=_feats(-3.0), meta=SampleMeta(class_names=("a", "b"), domain=SemMeta(encoded=True)))
    assert enc.point_features.min() < 0  # encoded features are not counts: negatives allowed


# ----------------------------------------------------------------------------- readers (folders)
@pytest.fixture(scope="module")
def field() -> Sample:
    return DATA_SOURCES.create("sem-synthetic", num_fields=1, size=32, eds_fraction=0.03, seed=3)[0]


def write_npz_folder(folder: Path, field: Sample, **changes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(folder / "bse.tif", (field.image[0].numpy() * 65535).astype(np.uint16))
    ax = field.meta.domain.energy_axis
    arrays = {"coords": field.point_coords.numpy(), "spectra": field.point_features.numpy(),
              "offset_ev": ax.offset_ev, "scale_ev": ax.scale_ev, "beam_energy_kev": 20.0}  # fmt: skip
    arrays.update(changes)
    np.savez(folder / "eds.npz", **{k: v for k, v in arrays.items() if v is not None})
    return folder


def write_csv_folder(folder: Path, lines: list[str], meta: str | None = '{"offset_ev": -470, "scale_ev": 10}') -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(folder / "bse.tif", np.random.default_rng(0).integers(0, 60000, (16, 16), dtype=np.uint16))
    (folder / "points.csv").write_text("\n".join(lines) + "\n")
    if meta is not None:
        (folder / "meta.json").write_text(meta)
    return folder


CSV_ERRORS = {
    "header only": (["x,y,c0,c1,c2"], "header but no data rows"),
    "non-numeric cell": (["x,y,c0,c1,c2", "1,2,3,4,5", "1,3,4,five,6"], "points.csv row 3"),
    "empty cell": (["x,y,c0,c1,c2", "1,2,3,,5"], "column 'c1'"),
    "no x column": (["col,z,c0", "1,2,3"], "columns x, y"),  # (row, col together are positions too)
    "empty file": ([""], "columns x, y"),
    "NaN position": (["x,y,c0,c1,c2", "nan,2,3,4,5"], "NaN or inf"),
    "negative counts": (["x,y,c0,c1,c2", "1,2,3,-4,5"], "negative counts"),
    "position outside": (["x,y,c0,c1,c2", "100,2,3,4,5"], "outside the 16x16 image"),
    "no spectrum columns": (["x,y,z", "1,2,3"], "neither a 'spectrum' column"),
}


@pytest.mark.parametrize("case", list(CSV_ERRORS))
def test_csv_folder_errors_exit_2_with_file_and_row(case, tmp_path, capsys):
    lines, words = CSV_ERRORS[case]
    folder = write_csv_folder(tmp_path / "f", lines)
    assert segment_main([str(folder), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


NPZ_ERRORS = {
    "NaN spectrum": (lambda f: {"spectra": _with(f.point_features.numpy(), np.nan)}, "NaN or inf"),
    "negative counts": (lambda f: {"spectra": _with(f.point_features.numpy(), -1.0)}, "negative counts"),
    "inf coords": (lambda f: {"coords": _with(f.point_coords.numpy(), np.inf)}, "positions hold NaN or inf"),
    "coords (N, 3)": (lambda f: {"coords": np.zeros((f.num_points, 3))}, "(N, 2)"),
    "complex spectra": (lambda f: {"spectra": f.point_features.numpy().astype(np.complex64)}, "real numbers"),
    "scale_ev NaN": (lambda f: {"scale_ev": np.nan}, "scale_ev"),
    "scale_ev 0": (lambda f: {"scale_ev": 0.0}, "scale_ev"),
    "beam energy -5": (lambda f: {"beam_energy_kev": -5.0}, "beam_energy_kev"),
    "no calibration": (lambda f: {"scale_ev": None, "offset_ev": None}, "no energy calibration"),
    "2-D spectra without coords": (lambda f: {"coords": None}, "no 'coords'"),
    "dense cube negative": (lambda f: {"coords": None, "spectra": -np.ones((32, 32, 8))}, "negative counts"),
    "dense cube wrong size": (lambda f: {"coords": None, "spectra": np.ones((16, 32, 8))}, "same pixel grid"),
}


def _with(arr: np.ndarray, value: float) -> np.ndarray:
    arr = arr.astype(np.float64).copy()
    arr[1, 1] = value
    return arr


@pytest.mark.parametrize("case", list(NPZ_ERRORS))
def test_npz_folder_errors(case, field, tmp_path, capsys):
    changes, words = NPZ_ERRORS[case]
    folder = write_npz_folder(tmp_path / "f", field, **changes(field))
    assert segment_main([str(folder), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err, err


DAMAGE = {"zero-length": lambda b: b"", "truncated": lambda b: b[: len(b) // 2], "not that format": lambda b: b"x" * 99}


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("name", ["eds.npz", "bse.tif", "bse.png"])
def test_damaged_folder_files_exit_2_naming_the_file(name, damage, field, tmp_path, capsys):
    folder = write_npz_folder(tmp_path / "f", field)
    if name == "bse.png":  # the same image as PNG
        from skimage import io

        io.imsave(folder / name, tifffile.imread(folder / "bse.tif"), check_contrast=False)
        (folder / "bse.tif").unlink()
    (folder / name).write_bytes(DAMAGE[damage]((folder / name).read_bytes()))
    assert segment_main([str(folder), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"cannot read {'image ' if name != 'eds.npz' else ''}{folder / name}" in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_image_errors_and_rgb(tmp_path, field, capsys):
    folder = write_npz_folder(tmp_path / "f", field)
    tifffile.imwrite(folder / "bse.tif", np.ones((32, 32), np.complex64))
    assert segment_main([str(folder), "--out", str(tmp_path / "o")]) == 2
    assert "real-valued" in capsys.readouterr().err
    from fusionseg.sem.data.readers import normalise_image

    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[..., 0] = 255
    assert normalise_image(rgb).shape == (32, 32)  # ok: channels-last RGB is averaged, not read as 32x3
    (folder / "meta.json").write_text("{not json")
    tifffile.imwrite(folder / "bse.tif", np.ones((32, 32), np.uint16))
    assert segment_main([str(folder), "--out", str(tmp_path / "o")]) == 2
    assert "meta.json is not valid JSON" in capsys.readouterr().err


# ----------------------------------------------------------------------------- command-line settings
SEGMENT_ARGS = {
    "--time-budget -1": (["--time-budget", "-1"], "must be > 0"),
    "--time-budget nan": (["--time-budget", "nan"], "not a finite number"),
    "--min-confidence 2": (["--min-confidence", "2"], "[0, 1)"),
    "--min-confidence -0.1": (["--min-confidence", "-0.1"], "[0, 1)"),
    "--tile 0": (["--tile", "0"], "below the minimum 96"),
    "--tile 8": (["--tile", "8"], "below the minimum 96"),
    "--eds-fraction 0": (["--eds-fraction", "0"], "(0, 1]"),
    "--eds-fraction 1.5": (["--eds-fraction", "1.5"], "(0, 1]"),
    "--eds-points 0": (["--eds-points", "0"], "below the minimum 1"),
    "--threads 0": (["--threads", "0"], "below the minimum 1"),
    "--n-clusters 1": (["--n-clusters", "1"], "below the minimum 2"),
    "--seed -1": (["--seed", "-1"], "below the minimum 0"),
    "--max-memory abc": (["--max-memory", "abc"], "not a memory size"),
    "--max-memory 0": (["--max-memory", "0GB"], "must be > 0"),
}


@pytest.mark.parametrize("case", list(SEGMENT_ARGS))
def test_segment_impossible_settings_fail_in_argparse(case, tmp_path, capsys):
    extra, words = SEGMENT_ARGS[case]
    with pytest.raises(SystemExit) as info:  # argparse: before any file is read
        segment_main([str(tmp_path / "does-not-exist"), "--out", str(tmp_path / "o"), *extra])
    assert info.value.code == 2
    assert words in capsys.readouterr().err


SIMULATE_ARGS = {
    "--n 0": (["--n", "0"], "below the minimum 1", True),
    "--size -5": (["--size", "-5"], "below the minimum 8", True),
    "--eds-fraction 2": (["--eds-fraction", "2"], "(0, 1]", True),
    "--rock marble-cake": (["--rock", "marble-cake"], "marble-cake", False),
}


@pytest.mark.parametrize("case", list(SIMULATE_ARGS))
def test_simulate_bad_arguments(case, tmp_path, capsys):
    extra, words, in_argparse = SIMULATE_ARGS[case]
    args = ["simulate", "--out", str(tmp_path / "sim"), *extra]
    if in_argparse:
        with pytest.raises(SystemExit) as info:
            main(args)
        assert info.value.code == 2
    else:
        assert main(args) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert not (tmp_path / "sim").exists()


FIT_ARGS = {
    "unknown kwarg": (["--model.no_such_key=1"], "unrecognized arguments"),
    "max_epochs=-5": (["--trainer.max_epochs=-5"], "max_epochs"),
    "batch_size=0": (["--data.batch_size=0"], "data.batch_size must be an integer >= 1"),
    "typo'd backbone": (["--model.backbone=saeg"], "Did you mean 'sage'"),
    "eds_fraction=0": (["--data.eds_fraction=0"], "eds_fraction must be in (0, 1]"),
    "random-bytes ckpt": (["--ckpt_path=RANDOM"], "is not a readable checkpoint"),
    "missing ckpt": (["--ckpt_path=nope.ckpt"], "does not exist"),
}


@pytest.mark.parametrize("case", list(FIT_ARGS))
def test_lightning_cli_errors_are_one_paragraph(case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "RANDOM").write_bytes(np.random.default_rng(0).bytes(4096))
    extra, words = FIT_ARGS[case]
    args = ["fit", "--config", str(ROOT / "configs" / "default.yaml"), "--data.source_kwargs.size=24",
            "--data.train_fields=1", "--data.val_fields=1", "--trainer.max_epochs=1", *extra]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and words in err[-1] and err[-1].startswith("fusionseg fit: error:"), err
    assert not any("Traceback" in line for line in err)
    assert not (tmp_path / "runs").exists()  # failed before training


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(SegmentError):
        segment_main([str(tmp_path / "missing.bcf"), "--out", str(tmp_path / "o"), "--debug"])


# ----------------------------------------------------------------------------- output folders
def test_overwrite_never_deletes_the_input_or_unknown_files(tmp_path, field, capsys):
    data = write_npz_folder(tmp_path / "d", field)
    (data / "notes.txt").write_text("mine")
    before = sorted(p.name for p in data.iterdir())
    assert segment_main([str(data), "--out", str(data), "--overwrite"]) == 2  # the input's own folder
    assert "holds the input" in capsys.readouterr().err
    assert segment_main([str(data / "eds.npz"), "--out", str(data), "--overwrite"]) == 2
    assert sorted(p.name for p in data.iterdir()) == before
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.docx").write_text("precious")
    assert segment_main([str(tmp_path / "nowhere"), "--out", str(out), "--overwrite"]) == 2  # before reading
    assert "thesis.docx" in capsys.readouterr().err and (out / "thesis.docx").read_text() == "precious"
    (tmp_path / "file").write_text("x")
    assert segment_main([str(data), "--out", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_output_folder_replaces_only_its_own_files(tmp_path):
    out = tmp_path / "o"
    with output_folder(out) as staging:
        (staging / "a.txt").write_text("1")
        (staging / "b.txt").write_text("1")
    assert json.loads((out / MANIFEST_NAME).read_text())["files"] == ["a.txt", "b.txt"]
    with pytest.raises(FusionSegError, match="not empty"):
        with output_folder(out):
            pass
    with output_folder(out, overwrite=True) as staging:
        (staging / "a.txt").write_text("2")
    assert (out / "a.txt").read_text() == "2" and not (out / "b.txt").exists()  # its own stale file removed
    with pytest.raises(RuntimeError), output_folder(out, overwrite=True) as staging:
        (staging / "a.txt").write_text("3")
        raise RuntimeError("crash while writing")
    assert (out / "a.txt").read_text() == "2"  # a failed run leaves the previous outputs
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".o.")]


def test_atomic_write_keeps_the_old_file_on_error(tmp_path):
    path = tmp_path / "x.json"
    with atomic_write(path) as fh:
        fh.write("old")
    with pytest.raises(ZeroDivisionError), atomic_write(path) as fh:
        fh.write("half")
        1 / 0  # noqa: B018
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["x.json"]


# ----------------------------------------------------------------------------- odd but legal: warn and map
def _labelled(field: Sample, coords, labels, names=("quartz", "albite")) -> Sample:
    n = len(coords)
    return replace(field, point_coords=torch.tensor(coords, dtype=torch.float32),
                   point_features=field.point_features[:n], point_target=torch.tensor(labels), target=None,
                   meta=replace(field.meta, class_names=names))  # fmt: skip


FIVE = [[5.0, 5.0], [20.0, 20.0], [9.0, 28.0], [25.0, 3.0], [3.0, 25.0]]
THREE = ("quartz", "albite", "calcite")
ODD = {
    "one point": ([[5.0, 5.0]], [0], "only 1 measured point"),
    "two points": ([[5.0, 5.0], [20.0, 20.0]], [0, 1], "only 2 measured point"),
    "all at one pixel": ([[7.0, 7.0]] * 6, [0, 0, 0, 1, 1, 1], "all 6 measured points lie at one pixel"),
    "a single class": ([[5.0, 5.0], [20.0, 20.0], [9.0, 28.0], [30.0, 2.0]], [1, 1, 1, 1], "single phase"),
    "one point per phase": ([[5.0, 5.0], [20.0, 20.0], [9.0, 28.0]], [0, 1, 2], "only 3 labelled points for 3"),
    "constant image": (FIVE, [0, 1, 2, 0, 1], "the image is constant"),
    "saturated image": (FIVE, [0, 1, 2, 0, 1], "the image is constant"),
}
IMAGES = {"constant image": 0.4, "saturated image": 1.0}  # the whole image at this value
QUIET = {  # odd geometry that needs no warning: a map from every point, as usual
    "points on one line": ([[10.0, c] for c in range(0, 32, 4)], [0, 0, 1, 1, 2, 2, 0, 1]),
    "points on the border": ([[0.0, c] for c in range(0, 32, 4)] + [[31.0, 5.0]], [0, 0, 1, 1, 2, 2, 0, 1, 2]),
}


@pytest.mark.parametrize("case", list(QUIET))
def test_points_on_a_line_or_the_border_map_every_pixel(case, field):
    coords, labels = QUIET[case]
    result = segment_field(_labelled(field, coords, labels, THREE), config=SegmentConfig(progress=False))
    assert result.labels.shape == (32, 32) and set(result.labels.unique().tolist()) <= set(labels)
    assert torch.isfinite(result.confidence).all() and (result.confidence > 0).all()


@pytest.mark.parametrize("case", list(ODD))
def test_odd_input_runs_with_a_warning(case, field):
    coords, labels, words = ODD[case]
    odd = _labelled(field, coords, labels, THREE)
    if case in IMAGES:
        odd = replace(odd, image=torch.full_like(field.image, IMAGES[case]))
    result = segment_field(odd, config=SegmentConfig(progress=False))
    assert any(words in note for note in result.info["notes"]), result.info["notes"]
    assert result.labels.shape == (32, 32) and set(result.labels.unique().tolist()) <= set(labels)
    assert torch.isfinite(result.confidence).all() and (result.confidence > 0).all()


def test_odd_input_warning_lands_in_summary(field, tmp_path):
    folder = write_npz_folder(tmp_path / "f", field, coords=np.array([[3.0, 3.0]] * 5),
                              spectra=field.point_features.numpy()[:1].repeat(5, 0))  # fmt: skip
    assert segment_main([str(folder), "--out", str(tmp_path / "o"), "--max-memory", "8GB"]) == 0
    notes = json.loads((tmp_path / "o" / "summary.json").read_text())["notes"]
    assert any("lie at one pixel" in n for n in notes) and any("single phase" in n for n in notes)


# ----------------------------------------------------------------------------- tiles
class _Constant:
    """A stand-in model: every pixel of a crop gets the number of points the crop holds (>= 1 required)."""

    def predict_samples(self, samples):
        s = samples[0]
        assert s.num_points >= 1, "a tile without points reached the model"
        full = torch.full((s.height, s.width), s.num_points)
        return [{"labels": full, "confidence": torch.ones(s.height, s.width)}]


@pytest.mark.parametrize("size,tile", [(300, 96), (97, 96), (250, 128), (64, 512)])
def test_tiles_fill_every_pixel_and_never_see_an_empty_tile(size, tile):
    img = torch.rand(1, size, size)
    s = Sample(image=img, point_coords=torch.tensor([[2.0, 3.0]]), point_features=torch.ones(1, 4))
    labels, conf = predict_field(_Constant(), s, tile_px=tile, overlap_px=32)
    assert (labels >= 1).all() and torch.isfinite(conf).all()


@pytest.mark.parametrize("size,tile", [(4096, 3744), (300, 96), (97, 96), (5000, 2112), (2048, 2048)])
def test_tile_windows_are_their_core_and_the_overlap(size, tile):
    """Cores partition the axis; each window is its core with ``overlap`` px of context each side (less at the field's
    edges), never more: a 4096² field in 3744-px tiles processes 4160² px, not the 7488² of tile-long windows."""
    from fusionseg.inference import tile_spans

    spans = tile_spans(size, tile, 32)
    assert [keep_lo for _, _, keep_lo, _ in spans] == [0] + [keep_hi for _, _, _, keep_hi in spans[:-1]]
    assert spans[-1][3] == size
    for lo, hi, keep_lo, keep_hi in spans:
        assert (lo, hi) == (max(0, keep_lo - 32), min(size, keep_hi + 32)) and hi - lo <= tile
    if size == 4096:
        assert sum(hi - lo for lo, hi, _, _ in spans) == 4160


def test_too_small_tile_is_refused_in_the_api():
    s = Sample(image=torch.rand(1, 200, 200), point_coords=torch.tensor([[2.0, 3.0]]), point_features=torch.ones(1, 4))
    with pytest.raises(SegmentError, match="use --tile >= 96"):
        predict_field(_Constant(), s, tile_px=8, overlap_px=32)


@pytest.mark.parametrize(
    "field_,value",
    [("min_confidence", 2.0), ("time_budget_s", -1.0), ("tile_px", 8), ("max_epochs", 0), ("min_confidence", np.nan)],
)
def test_segment_config_rejects_impossible_settings(field_, value):
    with pytest.raises(SegmentError, match=f"SegmentConfig.{field_}"):
        SegmentConfig(**{field_: value})


def test_a_request_that_cannot_fit_the_memory_budget_fails_before_work(field, tmp_path, capsys):
    folder = write_npz_folder(tmp_path / "f", field)
    assert segment_main([str(folder), "--out", str(tmp_path / "o"), "--max-memory", "300MB"]) == 2
    err = capsys.readouterr().err
    assert "needs about" in err and "memory budget is 0.30 GB" in err and "raise --max-memory" in err
    assert not (tmp_path / "o").exists()


def test_a_budget_too_small_is_refused_from_the_file_headers_before_the_read(field, tmp_path, capsys, monkeypatch):
    """The folder's image and eds.npz headers give the field's size: the spectra are never read (a large field's
    read alone can exceed the budget), and the estimate equals the read field's."""
    import fusionseg.sem.data.readers as readers
    from fusionseg.inference import field_size

    def peeked_is_read(folder: Path) -> bool:  # the headers' size is the read field's (the file's dtype aside)
        peeked = readers.peek_folder_size(folder)
        return replace(peeked, file_value_bytes=None) == field_size(readers.read_input(folder))

    folder = write_npz_folder(tmp_path / "f", field)
    assert peeked_is_read(folder)
    counts = field.point_features.numpy().astype(np.uint16)  # held as int16 counts
    assert peeked_is_read(write_npz_folder(tmp_path / "u", field, spectra=counts))
    dense = write_npz_folder(tmp_path / "d", field, coords=None, spectra=np.ones((32, 32, 16), np.uint16))
    assert peeked_is_read(dense)
    from skimage import io as skio

    rgb = write_npz_folder(tmp_path / "c", field)
    (rgb / "bse.tif").unlink()
    skio.imsave(rgb / "bse.png", np.zeros((32, 32, 3), np.uint8), check_contrast=False)  # colour PNG: grey read
    assert peeked_is_read(rgb)
    monkeypatch.setattr(readers.folders, "_read_npz", lambda path: pytest.fail("the spectra were read"))
    assert segment_main([str(folder), "--out", str(tmp_path / "o"), "--max-memory", "300MB"]) == 2
    assert "needs about" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_memory_budget_sets_the_tile():
    from fusionseg.inference import MAX_TILE_PX, tile_for_memory

    s = Sample(image=torch.rand(1, 4096, 4096), point_coords=torch.zeros(1, 2), point_features=torch.ones(1, 2048))
    small, large = tile_for_memory(2e9, s), tile_for_memory(8e9, s)
    assert 96 <= small < large and small % 32 == 0
    assert large == MAX_TILE_PX  # a larger tile would fit 8 GB but costs more per pixel


def test_memory_budget_counts_the_read_of_the_spectra_before_any_map():
    """Reading holds the file's counts, a copy without zero-count spectra and the held dtype's copy when it differs
    (`FieldSize.read_value_bytes`), before any per-pixel map; mapping holds the spectra once (`FieldSize.value_bytes`,
    encoded for tiles and the check). A budget the map fits but the read does not is refused, naming the budget
    that would fit. int16 counts (`compact_counts`) count 2 bytes a value, float32 4."""
    from fusionseg.inference import BASE_BYTES, FieldSize, check_memory, field_bytes, min_tile_px, tile_for_memory

    s = Sample(image=torch.rand(1, 64, 64), point_coords=torch.zeros(2000, 2), point_features=torch.ones(2000, 2048))
    values = 2000 * 2048
    no_points = field_bytes(replace(s, point_features=torch.ones(2000, 0)))
    assert field_bytes(s) == 4 * values + no_points
    compact = replace(s, point_features=torch.ones(2000, 2048, dtype=torch.int16))
    assert field_bytes(compact) == 2 * values + no_points
    mapping_only = BASE_BYTES + field_bytes(s) + 400.0 * 64 * 64 + 1e6  # fits the map, not the read
    assert BASE_BYTES + 8 * values > mapping_only
    assert tile_for_memory(mapping_only, s) == min_tile_px(32)
    with pytest.raises(SegmentError, match="needs about 0.73 GB") as err:
        check_memory(mapping_only, s, 64)
    assert "memory budget is 0.72 GB" in str(err.value)
    check_memory(BASE_BYTES + 8 * values, s, 64)  # the read's peak fits: accepted
    check_memory(BASE_BYTES + 4 * values, compact, 64)  # int16 counts: half
    # from a file's header: a uint16 file viewed as int16 (no copy), float64 counts copied into float32
    assert FieldSize(64, 64, values, value_bytes=2, file_value_bytes=2).read_value_bytes() == 4
    assert FieldSize(64, 64, values, value_bytes=4, file_value_bytes=8).read_value_bytes() == 20


def test_memory_budget_counts_the_spectra_rebinned_onto_the_checkpoint(field, tmp_path):
    """Spectra on another calibration than the checkpoint's are rebinned (float32) and held beside the file's while
    the field is mapped: the memory model counts that copy, from the checkpoint's hyper-parameters."""
    from fusionseg.inference import field_bytes, field_size
    from fusionseg.paths import DEFAULT_WEIGHTS
    from fusionseg.sem.segment import checkpoint_axis, mapped_size

    shipped = checkpoint_axis(DEFAULT_WEIGHTS)
    assert shipped == EnergyAxis(2048, 10.0, -470.0)
    assert mapped_size(field, DEFAULT_WEIGHTS) == field_size(field)  # the simulator's calibration: no copy
    shifted = EnergyAxis(2048, 10.0, -480.0)  # another offset: rebinned
    other = replace(field, meta=replace(field.meta, domain=replace(field.meta.domain, energy_axis=shifted)))
    size = mapped_size(other, DEFAULT_WEIGHTS)
    assert size.copy_bytes == other.num_points * 2048 * 4
    assert field_bytes(size) == field_bytes(other) + size.copy_bytes
    assert mapped_size(other, None).copy_bytes == 0  # no checkpoint (per-field training, classic fills): no rebin
    (tmp_path / "broken.ckpt").write_text("not a checkpoint")
    assert checkpoint_axis(tmp_path / "broken.ckpt") is None  # loading the model names that problem


def test_registry_names_the_keywords_a_part_takes():
    from fusionseg.registry import GRAPH_BUILDERS, RegistryArgumentError

    with pytest.raises(RegistryArgumentError, match=r"graph builder 'grid' takes no argument\(s\) \['bogus'\]"):
        GRAPH_BUILDERS.create("grid", bogus=1)


# ----------------------------------------------------------------------------- odd fields through the shipped model
def _shipped_field_variant(field: Sample, case: str) -> Sample:
    from fusionseg.sem.identify import with_identified_point_labels

    s = with_identified_point_labels(field)
    n, coords = s.num_points, s.point_coords
    changes = {
        "all points at one pixel": {"point_coords": torch.full_like(coords, 7.0)},
        "points on one line": {"point_coords": torch.stack([torch.full((n,), 10.0), torch.linspace(0, 31, n)], 1)},
        "points on the border": {"point_coords": torch.stack([torch.zeros(n), torch.linspace(0, 31, n)], 1)},
        "constant image": {"image": torch.full_like(s.image, 0.4)},
        "saturated image": {"image": torch.ones_like(s.image)},
        "one phase": {
            "point_features": s.point_features[:1].repeat(n, 1),
            "point_target": s.point_target[:1].repeat(n),
        },
        "4x5 field": {
            "image": s.image[:, :4, :5],
            "target": s.target[:4, :5],
            "point_coords": coords[:3] % 4,
            "point_features": s.point_features[:3],
            "point_target": s.point_target[:3],
        },
    }[case]
    return replace(s, **changes)


@pytest.mark.parametrize("case", ["all points at one pixel", "points on one line", "points on the border",
                                  "constant image", "saturated image", "one phase", "4x5 field"])  # fmt: skip
def test_shipped_model_predicts_odd_fields(case, field):
    """The refiner, its classic features and the per-field adaptation (`predict`) on odd but legal fields."""
    from fusionseg.paths import DEFAULT_WEIGHTS
    from fusionseg.pretrain import load_weights

    s = _shipped_field_variant(field, case)
    with torch.inference_mode():
        out = load_weights(DEFAULT_WEIGHTS).predict_samples([s])[0]
    assert out["labels"].shape == s.image.shape[1:] and (out["labels"] >= 0).all()
    assert torch.isfinite(out["confidence"]).all() and (out["confidence"] > 0).all()
    if case == "one phase":
        assert (out["labels"] == s.point_target[0]).all()


# ----------------------------------------------------------------------------- front door (issue 43)
def test_out_under_a_file_is_a_one_line_error(tmp_path, field, capsys):
    data = write_npz_folder(tmp_path / "d", field)
    (tmp_path / "A").write_text("a file, not a folder")
    assert segment_main([str(data), "--out", str(tmp_path / "A" / "x")]) == 2
    err = capsys.readouterr().err
    assert "lies under" in err and "which is a file" in err and "A_maps" in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert (tmp_path / "A").read_text() == "a file, not a folder"


def test_sample_with_all_points_at_one_pixel_warns():
    from fusionseg.sample import OddInputWarning

    with pytest.warns(OddInputWarning, match=r"all 10 measured points lie at one pixel \(row 3, col 4\)"):
        make(point_coords=torch.tensor([[3.0, 4.0]] * 10), point_features=torch.rand(10, 16) * 10,
             point_target=torch.tensor([0, 1] * 5))  # fmt: skip


def test_one_pixel_warning_is_one_of_the_summary_warnings(field, tmp_path):
    """Printed while running, so also a WARNING line of the summary (and of report.md)."""
    folder = write_npz_folder(tmp_path / "f", field, coords=np.array([[3.0, 3.0]] * 6),
                              spectra=field.point_features.numpy()[:6])  # fmt: skip
    assert segment_main([str(folder), "--out", str(tmp_path / "o"), "--max-memory", "8GB"]) == 0
    warnings = json.loads((tmp_path / "o" / "summary.json").read_text())["qc"]["warnings"]
    assert any("all 6 measured points lie at one pixel" in w for w in warnings), warnings
    assert "WARNING: all 6 measured points lie at one pixel" in (tmp_path / "o" / "report.md").read_text()


def test_data_source_override_drops_the_configs_source_kwargs(tmp_path):
    """``--data.source`` naming another source: the config's simulator kwargs (size, rocks, bse_noise_scale) are
    dropped, the command line's kept; the same source keeps them (jsonargparse's class_path/init_args rule)."""
    from fusionseg.build import make_cli
    from fusionseg.sem.data.synthetic import simulate_to_folder

    simulate_to_folder("granite", 6, 24, tmp_path / "sim", seed=0, eds_fraction=0.05)
    base = ["--config", str(ROOT / "configs" / "default.yaml"), "--data.train_fields=1", "--data.val_fields=1",
            "--data.test_fields=1", "--data.predict_fields=1", "--trainer.logger=false"]  # fmt: skip
    cli = make_cli([*base, "--data.source", "sample-folder", f"--data.source_kwargs.root={tmp_path / 'sim'}"],
                   run=False)  # fmt: skip
    hp = cli.datamodule.hparams
    assert hp.source == "sample-folder" and hp.source_kwargs == {"root": str(tmp_path / "sim")}
    assert hp.train_source_kwargs is None and len(cli.datamodule.dataset("train")) == 1
    same = make_cli([*base, "--data.source=sem-synthetic", "--data.source_kwargs.size=24"], run=False)
    assert same.datamodule.hparams.source_kwargs["size"] == 24 and "rocks" in same.datamodule.hparams.source_kwargs
