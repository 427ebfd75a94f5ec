"""``fusionseg mosaic``: SEM fields with stage positions -> one phase map and one modal table of the sample.

    fusionseg mosaic INPUT [--positions offsets.csv] --out OUT [--eds-fraction F | --eds-points N]
                     [--sampler NAME] [--checkpoint CKPT] [--method NAME] [--max-memory 4GB] [--threads N] [--seed S]

INPUT names the fields as ``fusionseg segment`` reads them (a glob, a ``fusionseg simulate`` folder, a folder
of vendor files). Every check runs before any long work, and a failed one stops with one paragraph naming
the field, exit 2, nothing written: each field readable and mappable as ``segment`` would map it, one
position per field and one field per position, the same pixel size, detector, beam energy, energy
calibration and stage rotation (where the metadata has them), a mosaic that fits the memory budget, and
overlaps whose BSE images agree (`fusionseg.export.mosaic.check_overlaps`). Then each field is mapped by
``segment``'s own `segment_one` into ``OUT/fields/<field>/`` (a field folder published completely is kept:
a re-run resumes), and the maps are stitched into ``OUT/mosaic_phases.tif`` (tiled, pyramidal),
``OUT/mosaic_modal.csv``, ``OUT/mosaic.json`` and ``OUT/mosaic_overview.png``, published together.

Positions: ``--positions`` (CSV ``field,x_px,y_px`` or ``field,x_um,y_um``, `read_positions`), else the
stage X/Y of each file's metadata (Bruker ``.bcf``: ``original_metadata.Stage.X/Y``, µm), taken as image
column and row offsets (stage axes parallel to the scan, no sign flip: an assumption the BSE overlap check
tests wherever fields overlap).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fusionseg.argtypes import ArgumentParser, fraction, int_at_least, memory_size
from fusionseg.baselines import CLASSIC_METHODS
from fusionseg.errors import FusionSegError, SegmentError
from fusionseg.export.mosaic import (
    BYTES_PER_PIXEL,
    check_overlaps,
    counts_as_labels,
    find_overlaps,
    label_counts,
    mosaic_shape,
    place_fields,
    read_positions,
    stitch_files,
    write_overview_png,
    write_pyramid_tiff,
)

FIELDS = "fields"
SETTINGS = f"{FIELDS}/settings.json"
"""The map-making settings of the fields in ``OUT/fields`` (a re-run with others is refused)."""
MAP_SETTINGS = ("eds_fraction", "eds_points", "sampler", "checkpoint", "method", "seed")
STITCH_BYTES_PER_PIXEL = BYTES_PER_PIXEL + 3  # the stitcher, plus the pyramid's and the modal table's copies
TOLERANCES = {  # one acquisition: one detector's successive maps agree within these (label, kind, tolerance)
    "pixel_size_um": ("pixel size (µm)", "relative", 1e-4),  # 0.4 px over a 4096-px mosaic
    "beam_energy_kev": ("beam energy (keV)", "absolute", 0.5),
    "fwhm_mn_ka_ev": ("detector resolution at Mn Ka (eV)", "absolute", 10.0),
    "channels": ("EDS channels", "absolute", 0),
    "channel_width_ev": ("EDS channel width (eV)", "relative", 5e-3),  # two real Bruker maps: 0.02 % apart
    "zero_offset_channels": ("EDS zero offset (channels)", "absolute", 2.0),  # ... and 0.13 channel apart
    "stage_rotation_deg": ("stage rotation (°)", "absolute", 0.5),  # rotated fields: no stitching by translation
    "detector": ("EDS detector", "absolute", 0),
    "detector_serial": ("EDS detector serial number", "absolute", 0),
}


@dataclass
class FieldInfo:
    """What the checks need of one field: name (file/folder stem), size, acquisition, stage position, BSE."""

    name: str
    path: Path
    shape: tuple[int, int]
    acquisition: dict[str, Any]
    stage_um: tuple[float, float] | None  # stage (X, Y) µm from the file's metadata
    bse: np.ndarray = field(repr=False)  # (H, W) float16: 2 bytes per pixel while checking


# ----------------------------------------------------------------------------- command line
def parse_args(argv: list[str]) -> argparse.Namespace:
    p = ArgumentParser(prog="fusionseg mosaic", description="Map SEM fields and stitch them into one map.")
    p.add_argument("input", type=Path, help="the fields: a glob (quoted), a `fusionseg simulate` folder, a folder "
                   "of vendor files")  # fmt: skip
    p.add_argument("--positions", type=Path, help="CSV field,x_px,y_px (or x_um,y_um): each field's top-left corner "
                   "(x = column, y = row); default: the stage X/Y of the files' metadata")  # fmt: skip
    amount = p.add_mutually_exclusive_group()
    amount.add_argument("--eds-fraction", type=fraction, help="keep this fraction of a dense map's spectra (0..1]")
    amount.add_argument("--eds-points", type=int_at_least(1), help="keep this many spectra of each dense map")
    p.add_argument("--sampler", default="random", help="where kept spectra lie: random, grid, stratified, superpixel")
    p.add_argument("--checkpoint", type=Path, help="trained model (.ckpt); default: the shipped weights")
    p.add_argument("--method", default="model", choices=("model", *CLASSIC_METHODS),
                   help="model (default) or a classic propagation of the identified points")  # fmt: skip
    p.add_argument("--max-memory", type=memory_size, default=None,
                   help="memory budget of one field and of stitching, e.g. 4GB (default: available now)")  # fmt: skip
    p.add_argument("--threads", type=int_at_least(1), help="torch CPU threads (default: torch's choice)")
    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument("--out", type=Path, required=True, help="output folder (a re-run resumes in it)")
    return p.parse_args(argv)


def segment_namespace(a: argparse.Namespace) -> argparse.Namespace:
    """``fusionseg segment``'s arguments (its defaults) with the mosaic's options, for `segment_one`."""
    from fusionseg.sem.segment import parse_args as segment_args

    seg = segment_args([str(a.input), "--out", str(a.out)])
    for key in (*MAP_SETTINGS, "max_memory", "threads"):
        setattr(seg, key, getattr(a, key))
    seg.overwrite = True  # a field folder without summary.json (an interrupted write) holds only fusionseg's files
    return seg


# ----------------------------------------------------------------------------- reading and checking
def _path_value(tree: dict, *keys: str) -> Any:
    for key in keys:
        tree = tree.get(key) if isinstance(tree, dict) else None
    return tree


def acquisition_of(sample: Any) -> dict[str, Any]:
    """The settings fields of one mosaic must share (None: the metadata does not say)."""
    from fusionseg.sem.export.mineralogy import pixel_size_um
    from fusionseg.sem.meta import sem_meta

    sem = sem_meta(sample.meta)
    axis = sem.energy_axis
    rotation = _path_value(sem.original_metadata, "Stage", "Rotation")
    serial = _path_value(sem.original_metadata, "Detector", "Serial")
    detector = _path_value(sem.eds_metadata, "Acquisition_instrument", "SEM", "Detector", "EDS", "detector_type")
    return {
        "pixel_size_um": pixel_size_um(sample.meta),
        "beam_energy_kev": sem.beam_energy_kev,
        "fwhm_mn_ka_ev": sem.fwhm_mn_ka_ev,
        "channels": None if axis is None else axis.size,
        "channel_width_ev": None if axis is None else axis.scale_ev,
        "zero_offset_channels": None if axis is None else axis.offset_ev / axis.scale_ev,
        "stage_rotation_deg": None if rotation is None else float(rotation),
        "detector": None if detector is None else str(detector),
        "detector_serial": None if serial is None else str(serial),
    }


def stage_position(sample: Any) -> tuple[float, float] | None:
    """Stage (X, Y) in µm from a vendor file's metadata (Bruker: ``original_metadata.Stage``), else None."""
    from fusionseg.sem.meta import sem_meta

    stage = _path_value(sem_meta(sample.meta).original_metadata, "Stage")
    try:
        x, y = float(stage["X"]), float(stage["Y"])
    except (TypeError, KeyError, ValueError):
        return None
    return (x, y) if math.isfinite(x) and math.isfinite(y) else None


def read_fields(paths: list[Path], seg: argparse.Namespace) -> list[FieldInfo]:
    """Read each field once and run ``segment``'s own early checks on it (memory budget, measured points);
    a failure names the field. Keeps each BSE image as float16 (2 bytes per pixel) for the overlap check."""
    from fusionseg.inference import available_memory, check_memory, tile_for_memory
    from fusionseg.sem.segment import prepare_points, read_field

    budget = seg.max_memory or available_memory()
    fields = []
    for path in paths:
        try:
            sample = read_field(path, seg)
            check_memory(budget, sample, tile_for_memory(budget, sample, training=True), training=True)
            prepare_points(sample, seg.eds_fraction, seg.eds_points, seg.sampler, seg.seed)
        except FusionSegError as err:
            raise SegmentError(f"field {path.stem} ({path}): {err}") from err
        bse = sample.image[0].numpy().astype(np.float16)
        fields.append(FieldInfo(path.stem, path, tuple(bse.shape), acquisition_of(sample), stage_position(sample), bse))
    return fields


def _differs(key: str, a: Any, b: Any) -> bool:
    """Whether two fields' values of an acquisition setting differ beyond `TOLERANCES` (unknown: no)."""
    if a is None or b is None:
        return key == "pixel_size_um" and (a is None) != (b is None)  # a calibrated and an uncalibrated field
    _, kind, tol = TOLERANCES[key]
    if isinstance(a, str) or isinstance(b, str):
        return a != b
    return abs(a - b) > tol * (abs(a) if kind == "relative" else 1.0)


def check_acquisition(fields: list[FieldInfo]) -> None:
    """Raise `SegmentError` naming the first field whose acquisition differs from the first field's."""
    first = fields[0]
    for f in fields[1:]:
        for key, (label, _, _) in TOLERANCES.items():
            a, b = first.acquisition[key], f.acquisition[key]
            if _differs(key, a, b):
                shown = ["uncalibrated" if v is None else f"{v:g}" if isinstance(v, float) else v for v in (b, a)]
                raise SegmentError(
                    f"field {f.name} has {label} {shown[0]} but field {first.name} has {shown[1]}: one mosaic needs "
                    "fields of one acquisition (pixel size, detector, beam energy, energy calibration, stage "
                    f"rotation). Map {f.name} apart with `fusionseg segment`, or make one mosaic per setting."
                )


def field_positions(fields: list[FieldInfo], positions: Path | None) -> tuple[dict[str, tuple[int, int]], str]:
    """Field -> (row, col) px from ``--positions``, else from the stage metadata; and where they came from."""
    px = fields[0].acquisition["pixel_size_um"]
    if positions is not None:
        return read_positions(positions, px), f"--positions {positions}"
    lacking = [f.name for f in fields if f.stage_um is None]
    if lacking:
        raise SegmentError(
            f"field(s) {', '.join(lacking)} carry no stage position in their metadata; give --positions with a "
            "CSV field,x_px,y_px (or x_um,y_um): each field's top-left corner in the mosaic."
        )
    if not px:
        raise SegmentError("the fields are uncalibrated, so their stage positions (µm) cannot be turned into "
                           "pixels; give --positions with a CSV field,x_px,y_px.")  # fmt: skip
    pos = {f.name: (round(f.stage_um[1] / px), round(f.stage_um[0] / px)) for f in fields}
    return pos, "stage X/Y of the files' metadata (µm / pixel size; X = columns, Y = rows)"


def check_memory_of_mosaic(shape: tuple[int, int], budget: int) -> None:
    need = STITCH_BYTES_PER_PIXEL * shape[0] * shape[1]
    if need > budget:
        raise SegmentError(
            f"the positions make a mosaic of {shape[0]}x{shape[1]} px, which needs about {need / 1e9:.2f} GB to "
            f"stitch ({STITCH_BYTES_PER_PIXEL} bytes per pixel) but the memory budget is {budget / 1e9:.2f} GB; "
            "check the positions' units (px or µm), or raise --max-memory."
        )


def check_out(out: Path, inputs: list[Path | None]) -> Path:
    """``out`` resolved: new or empty, or a mosaic folder holding only fusionseg's files (a re-run resumes it)."""
    from fusionseg.export.safe_io import check_output_folder

    return check_output_folder(out, inputs, overwrite=True, also_ours={SETTINGS})


def check_settings(out: Path, a: argparse.Namespace) -> dict[str, Any]:
    """The map-making settings; `SegmentError` when ``OUT/fields`` holds maps made with others."""
    settings = {k: str(v) if isinstance(v, Path) else v for k in MAP_SETTINGS if (v := getattr(a, k)) is not None}
    path = out / SETTINGS
    if path.is_file():
        before = json.loads(path.read_text())
        if before != settings:
            raise SegmentError(
                f"{out / FIELDS} holds field maps made with other settings ({before}, now {settings}); a mosaic "
                "joins maps of one setting: choose a new --out, or run with the same settings to resume."
            )
    return settings


# ----------------------------------------------------------------------------- the run
def run_mosaic(a: argparse.Namespace) -> Path:
    """Check everything, map each field (resuming), stitch and publish the mosaic; returns ``OUT``."""
    from fusionseg.export.safe_io import atomic_write
    from fusionseg.inference import available_memory
    from fusionseg.sem.segment import input_paths

    start = time.perf_counter()
    for what, path in (("input", a.input), ("--positions", a.positions), ("--checkpoint", a.checkpoint)):
        if path is not None and not any(ch in str(path) for ch in "*?[") and not Path(path).exists():
            raise SegmentError(f"{what} {path} does not exist; check the path.")
    paths = input_paths(a.input)
    names = [p.stem for p in paths]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise SegmentError(f"several fields are named {', '.join(twice)}; a mosaic needs one name per field "
                           "(its file or folder name): rename them.")  # fmt: skip
    out = check_out(a.out, [*paths, a.positions, a.checkpoint])
    settings = check_settings(out, a)
    seg = segment_namespace(a)
    fields = read_fields(paths, seg)
    check_acquisition(fields)
    positions, source = field_positions(fields, a.positions)
    placements = place_fields({f.name: f.shape for f in fields}, positions)
    shape = mosaic_shape(placements)
    check_memory_of_mosaic(shape, a.max_memory or available_memory())
    overlaps = find_overlaps(placements)
    verdicts = check_overlaps(placements, overlaps, [f.bse for f in fields])
    acquisition = fields[0].acquisition
    del fields  # the BSE images: checks done
    checked_s = time.perf_counter() - start
    with atomic_write(out / SETTINGS) as fh:
        json.dump(settings, fh, indent=1)
    records = map_fields(paths, seg, out)
    report = {"format": "fusionseg-mosaic", "version": 1, "positions": source, "settings": settings,
              "overlap_checks": verdicts, "timings": {"checks_s": round(checked_s, 2)}}  # fmt: skip
    write_mosaic(out, placements, overlaps, records, acquisition["pixel_size_um"], report, start)
    done = sum(not r["reused"] for r in records)
    print(f"mosaic {shape[0]}x{shape[1]} px of {len(records)} fields ({done} mapped now, {len(records) - done} "
          f"already mapped) in {report['timings']['total_s']:.1f} s")  # fmt: skip
    return out


def map_fields(paths: list[Path], seg: argparse.Namespace, out: Path) -> list[dict[str, Any]]:
    """Map each field into ``OUT/fields/<field>/`` with `segment_one`, keeping folders already complete."""
    from fusionseg.export.safe_io import remove_stale_staging
    from fusionseg.sem.export.prediction import is_written
    from fusionseg.sem.segment import segment_one

    records = []
    for i, path in enumerate(paths, start=1):
        folder = out / FIELDS / path.stem
        started = time.perf_counter()
        reused = is_written(folder)
        if reused:
            print(f"[{i}/{len(paths)}] {path.stem}: already mapped in {folder}, kept")
        else:
            print(f"[{i}/{len(paths)}] {path.stem}: mapping")
            remove_stale_staging(folder)  # an interrupted run's
            try:
                segment_one(path, seg, folder)
            except FusionSegError as err:
                raise SegmentError(
                    f"field {path.stem} ({path}): {err} The fields mapped before it are kept in {out / FIELDS}: "
                    "fix this one and run the same command again to resume."
                ) from err
        files = json.loads((folder / "summary.json").read_text())["files"]
        records.append({"name": path.stem, "input": str(path), "folder": f"{FIELDS}/{path.stem}", "reused": reused,
                        "phases": folder / files["phases_tiff"], "uncertainty": folder / files["uncertainty_tiff"],
                        "seconds": round(time.perf_counter() - started, 2)})  # fmt: skip
    return records


def write_mosaic(
    out: Path, placements: list, overlaps: list, records: list[dict[str, Any]], px_um: float | None,
    report: dict[str, Any], start: float,
) -> None:  # fmt: skip
    """Stitch the fields' maps and publish ``mosaic_phases.tif``, ``mosaic_modal.csv``, ``mosaic.json`` and
    ``mosaic_overview.png`` into ``out`` together (a staging folder beside it, then `publish`); ``start``: the
    run's `time.perf_counter` at its start (``timings.total_s``)."""
    from fusionseg.export.safe_io import publish
    from fusionseg.export.writers import write_json
    from fusionseg.sem.export.mineralogy import modal_mineralogy
    from fusionseg.sem.export.report import write_rows_csv

    started = time.perf_counter()
    stitcher, names = stitch_files(placements, [(r["phases"], r["uncertainty"]) for r in records])
    report["timings"]["stitch_s"] = round(time.perf_counter() - started, 2)
    wins = stitcher.overlap_wins()
    fields = [{"name": r["name"], "input": r["input"], "folder": r["folder"], "row": p.row, "col": p.col,
               "height": p.height, "width": p.width, "reused": r["reused"], "seconds": r["seconds"],
               "won_overlap_px": wins[p.name]} for r, p in zip(records, placements, strict=True)]  # fmt: skip
    modal = modal_mineralogy(counts_as_labels(label_counts(stitcher.labels, len(names))), tuple(names), px_um)
    report |= {
        "mosaic": {"height": stitcher.labels.shape[0], "width": stitcher.labels.shape[1], "pixel_size_um": px_um,
                   "stitcher_bytes_per_pixel": BYTES_PER_PIXEL},
        "class_names": names,
        "fields": fields,
        "overlaps": stitcher.overlap_report(overlaps),
        "overlap_rule": "higher confidence (1 - the field's uncertainty) wins; not measured loses to measured; "
                        "equal confidence: the pixel farther from its field's edge; then the field listed first",
        "modal": modal,
        "files": {"phases": "mosaic_phases.tif", "modal": "mosaic_modal.csv", "overview": "mosaic_overview.png"},
    }  # fmt: skip
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging.", dir=out.parent))
    try:
        levels = write_pyramid_tiff(staging / "mosaic_phases.tif", stitcher.labels, names, px_um)
        report["mosaic"]["levels"] = [list(s) for s in levels]
        write_rows_csv(staging / "mosaic_modal.csv", modal)
        write_overview_png(staging / "mosaic_overview.png", stitcher.labels, len(names))
        report["timings"]["write_s"] = round(time.perf_counter() - started - report["timings"]["stitch_s"], 2)
        report["timings"]["fields_s"] = round(sum(r["seconds"] for r in records), 2)
        report["timings"]["total_s"] = round(time.perf_counter() - start, 2)
        write_json(staging / "mosaic.json", report)
        publish(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def mosaic_main(argv: list[str]) -> int:
    """``fusionseg mosaic ...``; a user error prints one paragraph and returns 2 (traceback with ``--debug``)."""
    from fusionseg.errors import run_command

    def run(args: list[str]) -> int:
        out = run_mosaic(parse_args(args))
        print(f"Outputs written to {out}")
        return 0

    return run_command("mosaic", run, list(argv))


__all__ = ["mosaic_main", "run_mosaic"]
