"""Readers of real SEM data: Bruker .bcf through RosettaSciIO, folder layouts, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from fusionseg.registry import DATA_SOURCES
from fusionseg.sem.data.readers import ReaderError, read_input

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
BCF30 = REAL / "bruker" / "30x30_instructively_packed_16bit_compressed.bcf"
REPKA = REAL / "repka2025"
needs_bruker = pytest.mark.skipif(not BCF30.is_file(), reason=f"real Bruker test file absent ({BCF30})")
needs_repka = pytest.mark.skipif(not (REPKA / "bse.png").is_file(), reason=f"Repka field absent ({REPKA})")


@needs_bruker
def test_bruker_30x30_reads_with_calibration() -> None:
    s = read_input(BCF30)
    axis = s.meta.domain.energy_axis
    assert axis.size == 2048
    assert axis.scale_ev == pytest.approx(10.0, abs=0.01)
    assert axis.offset_ev == pytest.approx(-472.25, abs=0.1)
    assert s.meta.domain.beam_energy_kev == pytest.approx(20.0)
    assert s.meta.pixel_size_um == pytest.approx(1.667, abs=1e-3)
    assert s.image.shape == (1, 30, 30) and 0 <= float(s.image.min()) < float(s.image.max()) <= 1
    cube = s.meta.domain.dense_spectra
    assert cube.shape == (30, 30, 2048)
    assert s.meta.domain.measured_mask.all()
    assert 15_000 < cube.sum(-1).mean() < 25_000  # README: ~20k counts per pixel


@needs_bruker
def test_bruker_image_by_title_and_wrong_title() -> None:
    assert read_input(BCF30, bse_title="AsB").image.shape == (1, 30, 30)
    with pytest.raises(ReaderError, match="no image titled 'SE2'.*'AsB'"):
        read_input(BCF30, bse_title="SE2")


@needs_bruker
def test_separate_image_must_match_map(tmp_path: Path) -> None:
    img = tmp_path / "bse.tif"
    tifffile.imwrite(img, np.zeros((20, 20), np.uint16))
    with pytest.raises(ReaderError, match="EDS map is 30x30 pixels but the image is 20x20"):
        read_input(BCF30, image=img)


@needs_repka
def test_repka_folder_layout() -> None:
    s = read_input(REPKA)
    raw = np.asarray(__import__("skimage.io", fromlist=["imread"]).imread(REPKA / "bse.png"))
    assert raw.dtype == np.uint16
    assert s.image.shape == (1, 150, 150)
    np.testing.assert_allclose(s.image[0].numpy(), raw / 65535.0, atol=1e-6)
    assert s.target is not None and s.target.shape == (150, 150)
    assert len(np.unique(s.target.numpy())) == 14 and s.num_classes == 50
    assert s.num_points == 0 and s.meta.domain.has_eds is False
    assert len(DATA_SOURCES.create("sem-folder", paths=[REPKA])) == 1


def _folder(tmp_path: Path, h: int = 12, w: int = 12) -> Path:
    tifffile.imwrite(tmp_path / "bse.tif", (np.arange(h * w).reshape(h, w) * 100).astype(np.uint16))
    return tmp_path


def test_folder_points_csv_and_zero_count_points(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    rows = ["x,y,c0,c1,c2,c3", "1,2,5,0,3,1", "10,4,0,0,0,0", "3,11,1,1,1,1"]
    (folder / "points.csv").write_text("\n".join(rows) + "\n")
    (folder / "meta.json").write_text(json.dumps({"offset_ev": -100.0, "scale_ev": 20.0, "beam_energy_kev": 15}))
    s = read_input(folder)
    assert s.num_points == 2  # the zero-count spectrum was not measured
    np.testing.assert_allclose(s.point_coords.numpy(), [[2, 1], [11, 3]])
    assert s.meta.domain.energy_axis.scale_ev == 20.0 and s.meta.domain.beam_energy_kev == 15.0


def test_folder_points_as_emsa_files(tmp_path: Path) -> None:
    """One EMSA .msa spectrum per point (as point analyses are exported), listed in points.csv."""
    from rsciio.msa import file_writer

    folder = _folder(tmp_path)
    axis = {"name": "Energy", "size": 256, "offset": -0.2, "scale": 0.02, "units": "keV", "navigate": False}
    for i, level in enumerate((3.0, 7.0)):
        meta = {"General": {"title": f"p{i}"}, "Signal": {"signal_type": "EDS_SEM"}}
        signal = {"data": np.full(256, level), "axes": [axis], "metadata": meta, "original_metadata": {}}
        file_writer(str(folder / f"p{i}.msa"), signal)
    (folder / "points.csv").write_text("x,y,spectrum\n1,2,p0.msa\n5,6,p1.msa\n")
    s = read_input(folder)
    assert s.num_points == 2 and s.point_features.shape == (2, 256)
    np.testing.assert_allclose(s.point_coords.numpy(), [[2, 1], [6, 5]])
    np.testing.assert_allclose(s.point_features[:, 0].numpy(), [3.0, 7.0])
    assert s.meta.domain.energy_axis.scale_ev == pytest.approx(
        20.0
    ) and s.meta.domain.energy_axis.offset_ev == pytest.approx(-200.0)


def test_folder_dense_npz(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    cube = np.random.default_rng(0).poisson(3, (12, 12, 16))
    cube[:, 6:] = 0  # EDS acquired over half the field only
    np.savez(folder / "eds.npz", spectra=cube, offset_ev=0.0, scale_ev=10.0)
    s = read_input(folder)
    assert s.meta.domain.dense_spectra.shape == (12, 12, 16)
    assert s.meta.domain.measured_mask.sum() == 72


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing_calibration", "no energy calibration"),
        ("mismatched_shapes", "EDS map is 8x8 pixels but the image is 12x12"),
        ("no_signal", "zero counts"),
        ("no_image", "no image in"),
        ("outside", "fall outside the 12x12 image"),
    ],
)
def test_folder_bad_input(tmp_path: Path, setup: str, message: str) -> None:
    folder = tmp_path if setup == "no_image" else _folder(tmp_path)
    cube = np.ones((12, 12, 16))
    if setup == "missing_calibration":
        np.savez(folder / "eds.npz", spectra=cube)
    elif setup == "mismatched_shapes":
        np.savez(folder / "eds.npz", spectra=cube[:8, :8], offset_ev=0.0, scale_ev=10.0)
    elif setup == "no_signal":
        np.savez(folder / "eds.npz", spectra=cube * 0, offset_ev=0.0, scale_ev=10.0)
    elif setup == "outside":
        np.savez(folder / "eds.npz", spectra=cube[0], x=np.full(12, 20), y=np.zeros(12), offset_ev=0.0, scale_ev=10.0)
    with pytest.raises(ReaderError, match=message):
        read_input(folder)


def test_corrupt_and_unsupported_files(tmp_path: Path) -> None:
    bad = tmp_path / "broken.bcf"
    bad.write_bytes(b"not a bruker file" * 100)
    with pytest.raises(ReaderError, match="unreadable or corrupt"):
        read_input(bad)
    odd = tmp_path / "map.xyz"
    odd.write_text("1 2 3")
    with pytest.raises(ReaderError, match="no RosettaSciIO reader handles '.xyz'"):
        read_input(odd)
    with pytest.raises(ReaderError, match="does not exist"):
        read_input(tmp_path / "missing.bcf")


@needs_bruker
@pytest.mark.parametrize("damage", ["truncated to 10 %", "truncated to 60 %", "zeroed block mid-file"])
def test_damaged_bruker_copy_is_a_one_line_error_and_writes_nothing(damage: str, tmp_path: Path, capsys) -> None:
    """An interrupted copy fails inside the decompressor when the lazy cube is read: named as damaged, exit 2."""
    from fusionseg.cli import main

    data = bytearray(BCF30.read_bytes())
    if damage.startswith("truncated"):
        data = data[: len(data) * int(damage.split()[2]) // 100]
    else:
        data[len(data) // 2 : len(data) // 2 + 2000] = bytes(2000)
    bad = tmp_path / "copy.bcf"
    bad.write_bytes(bytes(data))
    with pytest.raises(ReaderError, match="copy.bcf: its data are damaged, truncated or corrupt"):
        read_input(bad)
    assert main(["segment", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "damaged, truncated or corrupt" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_large_cubes_are_read_lazily(monkeypatch):
    """Above LAZY_MIN_BYTES the cube stays a dask array; sparse acquisition reads the same spectra."""
    import fusionseg.sem.data.readers as readers
    from fusionseg.sem.segment import sparse_acquisition

    path = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "bruker"
    path = path / "30x30_instructively_packed_16bit_compressed.bcf"
    if not path.is_file():
        pytest.skip("real Bruker file absent")
    eager = readers.read_input(path)
    monkeypatch.setattr(readers.vendor, "LAZY_MIN_BYTES", 0)
    lazy = readers.read_input(path)
    assert hasattr(lazy.meta.domain.dense_spectra, "compute") and isinstance(
        eager.meta.domain.dense_spectra, np.ndarray
    )
    a, b = sparse_acquisition(eager, 0.1, seed=1), sparse_acquisition(lazy, 0.1, seed=1)
    assert torch.equal(a.point_coords, b.point_coords) and torch.equal(a.point_features, b.point_features)
