"""The SEM domain's commands (``fusionseg simulate|demo|segment|mosaic``), registered in `COMMANDS` like a plugin's.

Each parses its arguments and calls library functions; the first docstring line is its ``fusionseg --help`` line.
"""

from __future__ import annotations

from pathlib import Path

from fusionseg.argtypes import ArgumentParser, fraction, int_at_least
from fusionseg.paths import DEFAULT_CONFIG
from fusionseg.registry import COMMANDS


@COMMANDS.register("segment")
def segment_command(argv: list[str]) -> int:
    """map your own SEM field (vendor EDS file, folder, glob, or `simulate` output): phases, QC, statistics"""
    from fusionseg.sem.segment import segment_main

    return segment_main(argv)


@COMMANDS.register("mosaic")
def mosaic_command(argv: list[str]) -> int:
    """map SEM fields with stage positions into one tiled phase map and modal table of the whole sample"""
    from fusionseg.sem.mosaic import mosaic_main

    return mosaic_main(argv)


@COMMANDS.register("demo")
def demo_command(argv: list[str]) -> int:
    """map a held-out synthetic field with the shipped weights (seconds; --train trains first)"""
    from fusionseg.sem.demo import run_demo

    p = ArgumentParser(
        prog="fusionseg demo", description="Map a held-out synthetic SEM field with the shipped weights (seconds)."
    )
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="LightningCLI config (data; model with --train)")
    p.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output folder")
    p.add_argument("--train", action="store_true", help="train the config from scratch instead of the shipped weights")
    p.add_argument("--weights", type=Path, default=None, help="weights to use instead of the shipped ones")
    p.add_argument("--max-epochs", type=int_at_least(1), default=None, help="trainer.max_epochs with --train")
    a = p.parse_args(argv)
    run_demo(a.config, a.out, max_epochs=a.max_epochs, train=a.train, weights=a.weights)
    return 0


@COMMANDS.register("simulate")
def simulate_command(argv: list[str]) -> int:
    """write synthetic SEM fields (BSE + EDS + true phases) to a folder"""
    from fusionseg.sem.data.synthetic import simulate_to_folder

    p = ArgumentParser(prog="fusionseg simulate", description="Write synthetic SEM fields to a folder.")
    p.add_argument("--rock", default="granite", help="rock type (granite, basalt, sulfide-ore, ...)")
    p.add_argument("--n", type=int_at_least(1), default=4, help="number of fields")
    p.add_argument("--size", type=int_at_least(8), default=256, help="field size in pixels (square)")
    p.add_argument("--eds-fraction", type=fraction, default=0.01, help="fraction of pixels with a spectrum (0..1]")
    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument("--out", type=Path, required=True, help="output folder (replaces only files fusionseg wrote)")
    a = p.parse_args(argv)
    from fusionseg.export.safe_io import output_folder
    from fusionseg.sem.data.synthetic.rocks import get_rock

    get_rock(a.rock)  # an unknown rock fails before the folder is touched
    with output_folder(a.out, overwrite=True) as staging:
        simulate_to_folder(a.rock, a.n, a.size, staging, seed=a.seed, eds_fraction=a.eds_fraction)
    print(f"wrote {a.n} {a.rock} fields to {a.out}")
    return 0
