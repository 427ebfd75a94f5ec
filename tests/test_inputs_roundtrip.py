"""Inputs (issue 44, item 5): `segment`'s own points.csv read back, an image given as the input file named as such,
the folder format of docs/guide/inputs.md as documented."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import tifffile

from fusionseg.cli import main

DOCS = Path(__file__).resolve().parents[1] / "docs" / "guide" / "inputs.md"


def _rows(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_segment_points_csv_reads_back_as_given_labels(tmp_path, capsys):
    """Before: a folder of an image and segment's points.csv (row,col,label) was refused: no x, y columns."""
    sim = tmp_path / "sim"
    assert main(["simulate", "--rock", "granite", "--n", "1", "--size", "48", "--out", str(sim)]) == 0
    first = tmp_path / "first"
    assert main(["segment", str(sim), "--out", str(first)]) == 0
    written = _rows(first / "points.csv")
    assert {"row", "col", "label"} <= set(written[0])
    field = tmp_path / "field"
    field.mkdir()
    tifffile.imwrite(field / "bse.tif", np.random.default_rng(0).random((48, 48)).astype(np.float32))
    (field / "points.csv").write_text((first / "points.csv").read_text())
    capsys.readouterr()
    assert main(["segment", str(field), "--out", str(tmp_path / "model")]) == 2  # the model needs spectra: says so
    err = capsys.readouterr().err
    assert "labels but no spectra" in err and "--method geodesic" in err and "Traceback" not in err
    again = tmp_path / "again"
    assert main(["segment", str(field), "--method", "nearest-point", "--out", str(again)]) == 0
    back = _rows(again / "points.csv")
    given = {(r["row"], r["col"]): r["label"] for r in written}
    assert len(back) == len(written) and {(r["row"], r["col"]): r["label"] for r in back} == given


def test_points_csv_with_row_col_and_channels(tmp_path):
    from fusionseg.sem.data.readers import read_input

    field = tmp_path / "f"
    field.mkdir()
    tifffile.imwrite(field / "bse.tif", np.zeros((8, 8), np.float32))
    (field / "meta.json").write_text('{"offset_ev": -470, "scale_ev": 10, "beam_energy_kev": 15}')
    (field / "points.csv").write_text("row,col,c0,c1,c2\n1,2,3,4,5\n6,7,0,1,0\n")
    s = read_input(field)
    assert s.point_coords.tolist() == [[1, 2], [6, 7]] and s.point_features.shape == (2, 3)
    assert s.point_target is None  # spectra: labels are identified, as for any measured point


def test_an_image_given_as_the_input_is_named_as_one(tmp_path, capsys):
    """Before: "unreadable or corrupt (TypeError: Delayed objects ...)"."""
    for name in ("bse.png", "bse.tif"):
        path = tmp_path / name
        if name.endswith(".png"):
            from PIL import Image

            Image.fromarray(np.zeros((8, 8), np.uint8)).save(path)
        else:
            tifffile.imwrite(path, np.zeros((8, 8), np.float32))
        assert main(["segment", str(path), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert f"{name} is an image: pass it with --image, with the points in points.csv or eds.npz" in err
        assert "corrupt" not in err and "Delayed" not in err and not (tmp_path / "out").exists()


def test_the_documented_example_folder_is_read_as_documented(tmp_path, monkeypatch):
    """The Python block of docs/guide/inputs.md writes a folder `segment` reads with the units the page gives."""
    from fusionseg.sem.data.readers import read_input
    from fusionseg.sem.meta import sem_meta

    text = DOCS.read_text()
    block = re.search(r"A minimal folder written from Python:\n\n```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_field").mkdir()
    exec(compile(block, str(DOCS), "exec"), {})  # noqa: S102 (the documentation's own example)
    s = read_input(tmp_path / "my_field")
    meta = sem_meta(s.meta)
    assert s.image.shape == (1, 128, 128) and s.num_points > 100 and s.point_features.shape[1] == 2048
    assert meta.energy_axis.scale_ev == 10.0 and meta.beam_energy_kev == 20.0
    for key in ("`row,col,label`", "`offset_ev`", "`scale_ev`", "`beam_energy_kev`", "meta.json", "`field`"):
        assert key in text, key
