"""`segment`'s run over the fields an input names: each field read, its points, the memory budget, the pipeline
(`fusionseg.sem.segment.pipeline`) and its outputs written into ``--out``; several fields, ``--resume`` and
torchrun/SLURM shares (`fusionseg.distributed`)."""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from pathlib import Path

from fusionseg.errors import SegmentError
from fusionseg.export.run_record import make_record, rerun_decision, write_record
from fusionseg.inference import available_memory
from fusionseg.logs import collected_warnings, merged
from fusionseg.sample import OddInputWarning, Sample
from fusionseg.sem.segment.acquire import acquire_field, check_acquisition_args
from fusionseg.sem.segment.checkpoint import mapped_size
from fusionseg.sem.segment.config import SegmentConfig, SegmentResult
from fusionseg.sem.segment.inputs import budget_tile, input_paths, prepare_points, read_field
from fusionseg.sem.segment.pipeline import segment_field
from fusionseg.sem.segment.timing import record

log = logging.getLogger(__name__)


def run_segment(a: argparse.Namespace) -> Path:
    """Segment every field ``a.input`` names: one field into ``--out``, several into ``--out/<field>/``.

    Several fields: with ``--resume`` fields already written completely are kept; under torchrun or SLURM
    each process maps its own share of the fields (`fusionseg.distributed`).
    """
    from fusionseg.distributed import process_rank, share_of
    from fusionseg.export.safe_io import check_output_folder, is_complete, remove_stale_staging

    rank, world_size = process_rank()
    # Under torchrun/SLURM the other processes may be publishing their fields already (a check that read them raced
    # them): each process checks --out without the others' fields. A plain run checks --out before the input.
    listed = input_paths(a.input) if world_size > 1 else None
    theirs = [] if listed is None else [p.stem for p in listed if p not in share_of(listed, rank, world_size)]
    if listed is not None and len(listed) == 1 and theirs:  # the one field is --out itself, mapped elsewhere
        return Path(a.out).expanduser().resolve()
    out = check_output_folder(a.out, (a.input, a.image, a.checkpoint), a.overwrite or a.resume, others=theirs)
    for what, path in (("input", a.input), ("--image", a.image), ("--checkpoint", a.checkpoint)):
        if path is not None and "*" not in str(path) and not Path(path).exists():
            raise SegmentError(f"{what} {path} does not exist; check the path.")
    if a.checkpoint is not None and not Path(a.checkpoint).is_file():
        raise SegmentError(f"--checkpoint {a.checkpoint} is not a file; give a .ckpt written by `fusionseg fit`.")
    check_acquisition_args(a)
    paths = listed or input_paths(a.input)
    mine = share_of(paths, rank, world_size)
    record = run_record(a)
    kept, todo = 0, []
    for path in mine:  # every kept field checked against this run's checkpoint and settings before any is mapped
        field_out = out if len(paths) == 1 else out / path.stem
        remove_stale_staging(field_out)  # a killed run's; no other process maps this field
        if a.resume and is_complete(field_out) and not rerun_decision(field_out, record, a.overwrite):
            kept += 1
            continue
        if a.resume and is_complete(field_out):
            print(f"{path.name}: mapped before with another checkpoint or other settings; mapping it again "
                  "(--overwrite)")  # fmt: skip
        todo.append((path, field_out))
    for path, field_out in todo:
        segment_one(path, a, field_out)
    if kept:
        print(f"kept {kept} field(s) already written in {out} with the same checkpoint and settings (--resume)")
    return out


# `segment`'s options that shape the maps (not where outputs go, how verbose, threads or memory and tiles)
SEGMENT_SETTINGS = ("image", "bse_title", "eds_fraction", "eds_points", "acquire", "eds_budget", "batch", "sampler",
                "per_field", "no_honour_points", "no_adapt", "extrapolate", "no_classic_floor", "method", "mode",
                "n_clusters", "min_confidence", "time_budget", "seed", "min_grain")  # fmt: skip


def run_record(a: argparse.Namespace) -> dict:
    """What a field folder records of this run (`fusionseg.export.run_record`): checkpoint and map settings."""
    checkpoint = shipped_or_given_checkpoint(a)[0] if a.method == "model" else a.checkpoint
    if a.acquire and checkpoint is None:  # --acquire --per-field: the shipped weights plan the acquisition
        from fusionseg.paths import DEFAULT_WEIGHTS

        checkpoint = DEFAULT_WEIGHTS
    return make_record(checkpoint, {k: getattr(a, k, None) for k in SEGMENT_SETTINGS})


def shipped_or_given_checkpoint(a: argparse.Namespace) -> tuple[Path | None, bool]:
    """``--checkpoint``, else the shipped weights unless ``--per-field`` asks for per-field training (with
    ``--mode clusters`` or ``--n-clusters`` the shipped weights map the spectrum clusters); (path, shipped?)."""
    from fusionseg.paths import DEFAULT_WEIGHTS

    if a.checkpoint is not None:
        return a.checkpoint, False
    if a.per_field:
        return None, False
    return DEFAULT_WEIGHTS, True


def segment_one(path: Path, a: argparse.Namespace, out: Path) -> SegmentResult:
    """Read, sample, segment one field and write its outputs into a staging folder renamed to ``out``.

    Every warning logged meanwhile is also one of the summary's warnings (``qc.warnings``: the report's WARNING
    lines), whatever stage logged it."""
    from fusionseg.export.safe_io import output_folder
    from fusionseg.sem.export.qc import qc_lines
    from fusionseg.sem.export.report import write_segment_outputs

    start = time.perf_counter()
    with collected_warnings() as logged, warnings.catch_warnings():
        warnings.simplefilter("ignore", OddInputWarning)  # `segment_field` logs the same (`odd_input_notes`)
        result = _map_one(path, a, start)
    result.qc["warnings"] = merged(result.qc.get("warnings", []), logged)
    written = time.perf_counter()
    with output_folder(out, (path, a.image, a.checkpoint), a.overwrite or a.resume) as staging:
        record(result.timings, "total_s", start)  # before writing: summary.json holds it
        write_segment_outputs(staging, result, input_path=path)
        write_record(staging, run_record(a))
    record(result.timings, "write_s", written)
    if not getattr(a, "quiet", False):
        print(f"{path.name}:")
        print("\n".join(f"  {line}" for line in qc_lines(result.qc)))
    return result


def _map_one(path: Path, a: argparse.Namespace, start: float) -> SegmentResult:
    """One field read (``start``: when reading began), its points chosen and mapped under the memory budget."""
    from fusionseg.sem.data.readers import peek_folder_size

    budget = a.max_memory or available_memory()
    size = peek_folder_size(path, a.image) if path.is_dir() else None  # from the files' headers
    if size is not None:  # a budget too small is refused before the read, which alone may exceed it
        budget_tile(budget, size, a.tile)
    sample = read_field(path, a)
    _check_min_grain(getattr(a, "min_grain", None), sample)
    read_s = time.perf_counter() - start
    tile = budget_tile(budget, sample, a.tile)
    checkpoint, shipped = shipped_or_given_checkpoint(a) if a.method == "model" else (a.checkpoint, False)
    acquisition = None
    if a.acquire:
        sample, acquisition = acquire_field(sample, a, tile)
    else:
        sample = prepare_points(sample, a.eds_fraction, a.eds_points, a.sampler, a.seed)
    tile = budget_tile(budget, mapped_size(sample, checkpoint), a.tile)  # the points known, and any rebinned copy
    mode = "clusters" if a.n_clusters is not None and a.mode == "auto" else a.mode  # a number of clusters: clusters
    config = SegmentConfig(mode=mode, method=a.method, n_clusters=a.n_clusters, min_confidence=a.min_confidence,
                           time_budget_s=a.time_budget, tile_px=tile, seed=a.seed, num_threads=a.threads,
                           honour_points=not a.no_honour_points, extrapolate=a.extrapolate,
                           fallback_per_field=shipped, adapt_refiner=not a.no_adapt,
                           classic_floor=not a.no_classic_floor, progress=not getattr(a, "quiet", False))  # fmt: skip
    log.info("memory budget %.2f GB: prediction tiles of %d px", budget / 1e9, tile)
    result = segment_field(sample, checkpoint, config)
    record(result.timings, "read_s", seconds=read_s)
    result.info.update(memory_budget_gb=round(budget / 1e9, 2), tile_px=tile)
    if getattr(a, "min_grain", None) is not None:
        result.info["min_grain"] = a.min_grain
    if acquisition is not None:
        result.info["acquisition"], result.acquisition_order = acquisition
    return result


def _check_min_grain(min_grain: str | None, sample: Sample) -> None:
    """``--min-grain`` in µm² needs a calibrated field: refused before the mapping, with the fix."""
    from fusionseg.sem.export.mineralogy import pixel_size_um

    if min_grain is not None and min_grain.endswith("um2") and not pixel_size_um(sample.meta):
        raise SegmentError(f"--min-grain {min_grain}: this field has no pixel size, so an area in µm² cannot be "
                           "converted; give the minimum grain in pixels (e.g. --min-grain 5)")  # fmt: skip


__all__ = ["SEGMENT_SETTINGS", "run_record", "run_segment", "segment_one", "shipped_or_given_checkpoint"]
