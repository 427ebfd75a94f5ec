"""`segment`'s inputs: the fields an input names, reading one, its measured points, the request's checks and the
memory budget's prediction tile."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from fusionseg.baselines import CLASSIC_METHODS
from fusionseg.errors import SegmentError
from fusionseg.inference import FieldSize, check_memory, tile_for_memory
from fusionseg.sample import Sample
from fusionseg.sem.data.acquisition import measured_points, sparse_acquisition
from fusionseg.sem.meta import hide_target, sem_meta
from fusionseg.sem.segment.config import SegmentConfig

VENDOR_SUFFIXES = (".bcf", ".spd", ".h5oina", ".hspy", ".emd", ".pts", ".msa", ".npz")


def input_paths(spec: Path) -> list[Path]:
    """The fields an input names: a glob pattern, a dataset folder written by ``fusionseg simulate``
    (``index.json`` + one ``.npz`` per field), a folder of vendor files, or one file or field folder."""
    import glob
    import json

    text = str(spec)
    if any(ch in text for ch in "*?["):
        paths = sorted(Path(p) for p in glob.glob(text))
        if not paths:
            raise SegmentError(f"no file matches {text!r}; check the pattern (quote it so the shell passes it on).")
        return paths
    if spec.is_dir() and (spec / "index.json").is_file():
        files = json.loads((spec / "index.json").read_text()).get("files", [])
        return [spec / f for f in files] or sorted(spec.glob("*.npz"))
    if spec.is_dir() and not (spec / "points.csv").is_file() and not (spec / "eds.npz").is_file():
        vendor = sorted(p for p in spec.iterdir() if p.suffix.lower() in VENDOR_SUFFIXES)
        if vendor:
            return vendor
    return [spec]


def read_field(path: Path, a: argparse.Namespace) -> Sample:
    """A field from a vendor file/folder (`read_input`) or a ``.npz`` sample (``fusionseg simulate``): its phase
    map is kept only to score the result (ARI in the report), its point labels are identified again."""
    from fusionseg.sem.data.readers import read_input

    if path.suffix.lower() == ".npz" and path.name != "eds.npz":
        from fusionseg.data.io import load_sample

        s = load_sample(path)
        return replace(hide_target(s, s.meta.name or path.stem), point_target=None)
    return read_input(path, image=a.image, bse_title=a.bse_title)


def budget_tile(budget: float, field: Sample | FieldSize, tile: int | None) -> int:
    """The prediction tile (px) for ``field`` under ``budget`` bytes (``tile``: the user's ``--tile``), refused with a
    `SegmentError` when the field does not fit; the budget holds a per-field training run (the shipped weights may
    fall back to one)."""
    tile = tile or tile_for_memory(budget, field, training=True)
    check_memory(budget, field, tile, training=True)
    return tile


def prepare_points(
    sample: Sample, eds_fraction: float | None, eds_points: int | None, sampler: str, seed: int
) -> Sample:
    """The field with measured points: simulated sparse acquisition from a dense map, or the file's points."""
    dense = sem_meta(sample.meta).dense_spectra is not None
    if eds_fraction is not None or eds_points is not None:
        return sparse_acquisition(sample, eds_fraction, eds_points, sampler, seed)
    if dense:
        return measured_points(sample)
    if sample.num_points == 0:
        raise SegmentError("the input holds no EDS spectra; give an EDS file, or a folder with eds.npz or points.csv.")
    return sample


def check_request(sample: Sample, checkpoint: Path | None, config: SegmentConfig) -> None:
    """Before any work: the field has points, the method is known, and a checkpoint comes with the model only."""
    if sample.num_points < 1:
        raise SegmentError("the field has no measured spectra; measure at least one point (ideally ~1 % of pixels).")
    if sample.point_features.shape[1] == 0 and sample.point_target is not None and config.method == "model":
        raise SegmentError(
            f"the field's {sample.num_points} points come with labels but no spectra (points.csv with row,col,label, "
            "as `segment` writes it): the model reads spectra. Map these labels with a classic fill, e.g. --method "
            "geodesic (or nearest-point, random-walker, ...), or give the spectra (eds.npz, or c0..cN columns)."
        )
    if config.method != "model" and config.method not in CLASSIC_METHODS:
        raise SegmentError(f"unknown --method {config.method!r}; choose model or one of {', '.join(CLASSIC_METHODS)}.")
    if checkpoint is not None and config.method != "model":
        raise SegmentError(f"--method {config.method} is a classic fill, not a model; drop --checkpoint or --method.")


__all__ = ["VENDOR_SUFFIXES", "budget_tile", "check_request", "input_paths", "prepare_points", "read_field"]
