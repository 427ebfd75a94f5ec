"""``fusionseg segment``: a user's SEM field (image + EDS) -> phase map, uncertainty, modal table, report.

    fusionseg segment INPUT [--image IMG] [--eds-fraction F | --eds-points N] [--sampler NAME]
                      [--checkpoint CKPT] --out DIR

Two ways to map a field:

* ``--checkpoint`` (default: the shipped weights): inductive prediction with a trained `FusionSegModule`
  (spectra rebinned onto the checkpoint's energy axis when the file's calibration differs). Points are
  labelled by the mineral library; when it names too few of them (or ``--mode clusters``), by clustering
  their spectra, the network's classes mixed into the clusters (`FusionSegModule.in_field_classes`).
* ``--per-field``: the measured points are labelled (mineral library, else k-means clusters) and a
  small graph model is trained on this field alone. Each step hides a random part of the points
  (queries) and learns to predict their labels from the image and the remaining points (context),
  on crops around points; held-out points drive early stopping. Large fields are predicted in
  overlapping tiles within a pixel budget.

This module is the command line (its arguments and entry point); `fusionseg.sem.segment.run` runs it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from fusionseg.argtypes import ArgumentParser, fraction, int_at_least, memory_size, positive_float
from fusionseg.baselines import CLASSIC_METHODS
from fusionseg.inference import min_tile_px
from fusionseg.logs import add_verbosity_flags, console_logs
from fusionseg.sem.segment.config import SegmentConfig
from fusionseg.sem.segment.run import run_segment


def confidence(text: str) -> float:
    """argparse type: a posterior threshold in [0, 1); 1 or more would call every spectrum unknown."""
    value = float(text) if text.strip().lower() not in ("nan", "inf", "-inf", "+inf") else float("nan")
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be in [0, 1): at 1 or above every spectrum would be unknown")
    return value


def acquisition_amount(text: str) -> float:
    """A share of the pixels in (0, 1) or a whole number of points >= 1 (``--eds-budget``, ``--batch``)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (0 < value < 1 or (np.isfinite(value) and value >= 1 and value == int(value))):
        raise argparse.ArgumentTypeError(f"{text} must be a share of the pixels in (0, 1) (0.003 = 0.3 %) or a "
                                         "whole number of points >= 1")  # fmt: skip
    return value if value < 1 else int(value)


def grain_area(text: str) -> str:
    """argparse type of ``--min-grain``: pixels (> 0), or an area in µm² with a ``um2`` suffix ("12um2")."""
    value = text.strip().lower().replace("µ", "u")
    number = value[:-3] if value.endswith("um2") else value
    try:
        ok = float(number) > 0 and np.isfinite(float(number))
    except ValueError:
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError(f"{text} must be pixels > 0 (e.g. 5) or an area in µm² (e.g. 12um2)")
    return value


def parse_args(argv: list[str]) -> argparse.Namespace:
    """``fusionseg segment``'s arguments (argparse exits 2 with a usage line on a bad one)."""
    p = ArgumentParser(prog="fusionseg segment", description="Segment a real SEM field (image + EDS).")
    p.add_argument("input", type=Path, help="EDS file (.bcf, .spd, .hspy, ...) or folder (image + eds.npz/points.csv)")
    p.add_argument("--image", type=Path, help="separate BSE image (TIFF/PNG) on the EDS map's pixel grid")
    p.add_argument("--bse-title", help="pick the file's image whose title contains this text")
    amount = p.add_mutually_exclusive_group()
    amount.add_argument("--eds-fraction", type=fraction, help="keep this fraction of a dense map's spectra (0..1]")
    amount.add_argument("--eds-points", type=int_at_least(1), help="keep this many spectra of a dense map")
    amount.add_argument("--acquire", metavar="STRATEGY",
                        help="simulate adaptive acquisition on a dense map: measure batch by batch where the "
                        "planner asks (adaptive = uncertainty; also random, grid, stratified, superpixel, "
                        "unmeasured-regions, hybrid); writes acquisition.csv/.png")  # fmt: skip
    p.add_argument(
        "--eds-budget",
        type=acquisition_amount,
        help="--acquire: spectra to measure, a share of the pixels (default 0.003 = 0.3 %%) or a count",
    )
    p.add_argument("--batch", type=acquisition_amount,
                   help="--acquire: spectra per batch, share or count (default: the budget in 12 batches); the "
                   "map is updated after each")  # fmt: skip
    p.add_argument(
        "--sampler", default="random", help="where kept spectra lie: random, grid, stratified, superpixel (by image)"
    )
    p.add_argument("--checkpoint", type=Path, help="trained model (.ckpt); default: the shipped weights")
    p.add_argument("--per-field", action="store_true", help="train a small model on this field instead of weights")
    p.add_argument("--no-honour-points", action="store_true", help="keep the model's label at measured pixels")
    p.add_argument("--no-adapt", action="store_true",
                   help="map with the weights as they are (default: their refiner is first fine-tuned on this "
                   "field's points when that lowers the held-out loss)")  # fmt: skip
    p.add_argument("--extrapolate", action="store_true", help="map pixels outside the EDS-acquired area too")
    p.add_argument("--no-classic-floor", action="store_true",
                   help="keep the model's map even when a classic fill beats it on the withheld points")  # fmt: skip
    p.add_argument("--method", default="model", choices=("model", *CLASSIC_METHODS),
                   help="model: fusionseg's learned fusion (default); or a classic propagation of the identified "
                   "points (no model, for comparison)")  # fmt: skip
    p.add_argument("--min-grain", type=grain_area,
                   help="smallest grain: pixels, or µm² with a um2 suffix (default 10 µm², at least 3 px; 3 px "
                   "uncalibrated); smaller components are specks, counted apart and left out of grain sizes, "
                   "association and liberation")  # fmt: skip
    p.add_argument("--mode", default="auto", choices=("auto", "library", "clusters"), help="point labelling")
    p.add_argument("--n-clusters", type=int_at_least(2), help="phases for clustering (default: by silhouette)")
    p.add_argument("--min-confidence", type=confidence, default=0.9,
                   help="library posterior below which a point is unknown, in [0, 1)")  # fmt: skip
    p.add_argument(
        "--time-budget",
        type=positive_float,
        default=None,
        help="per-field training: a wall-clock cap in seconds (> 0); default none: at most 25 "
        "epochs with early stopping, so a file and seed give the same map however busy the machine",
    )
    p.add_argument("--tile", type=int_at_least(min_tile_px(SegmentConfig.overlap_px)),
                   help="prediction tile size in pixels (default: the largest that fits --max-memory)")  # fmt: skip
    p.add_argument("--max-memory", type=memory_size, default=None,
                   help="memory budget, e.g. 4GB (default: the memory available now); sets the tile size")  # fmt: skip
    p.add_argument("--threads", type=int_at_least(1), help="torch CPU threads (default: torch's choice)")
    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument(
        "--overwrite", action="store_true", help="replace the files fusionseg wrote in --out before (nothing else)"
    )
    p.add_argument(
        "--resume", action="store_true", help="several fields: keep those already written in --out, map the rest"
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    add_verbosity_flags(p)
    return p.parse_args(argv)


def segment_main(argv: list[str]) -> int:
    """``fusionseg segment ...``; a user error prints one paragraph and returns 2 (traceback with ``--debug``)."""
    from fusionseg.errors import run_command

    def run(args: list[str]) -> int:
        a = parse_args(args)
        with console_logs(quiet=a.quiet, verbose=a.verbose):
            out = run_segment(a)
        print(f"Outputs written to {out}")
        return 0

    return run_command("segment", run, list(argv))


__all__ = ["acquisition_amount", "confidence", "grain_area", "parse_args", "segment_main"]
