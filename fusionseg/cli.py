"""The ``fusionseg`` command: LightningCLI (fit/validate/test/predict) plus simulate, demo, segment, compare.

fusionseg fit --config configs/default.yaml [--trainer.max_epochs=5 ...]
fusionseg simulate --rock granite --n 4 --size 256 --out data/granite
fusionseg demo --out outputs/demo
fusionseg compare --config configs/default.yaml --grid model.backbone=sage,gat --seeds 0 1 --out runs/compare
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from fusionseg.argtypes import fraction, int_at_least
from fusionseg.build import CheckpointConfigWarning, FusionSegCLI, make_cli  # noqa: F401 (the command's API)
from fusionseg.errors import run_command

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"
EXTRA_COMMANDS = ("simulate", "demo", "segment", "pretrain", "compare")
COMMANDS = {  # one line each for `fusionseg --help`
    "segment": "map your own SEM field (vendor EDS file, folder, glob, or `simulate` output): phases, QC, statistics",
    "demo": "map a held-out synthetic field with the shipped weights (seconds; --train trains first)",
    "simulate": "write synthetic SEM fields (BSE + EDS + true phases) to a folder",
    "pretrain": "train the shipped default weights on the simulator (what `make pretrain` runs)",
    "compare": "sweep configs x overrides x EDS fractions x seeds; results.csv, summary.md and a plot",
    "fit": "train a model from a config (LightningCLI: --config configs/X.yaml --section.key=value)",
    "validate": "evaluate a checkpoint on the validation split",
    "test": "evaluate a checkpoint on the held-out test split",
    "predict": "map the predict split with a checkpoint; writes each field as it finishes (runs/predictions)",
}
# Library messages that say nothing to a user of these commands (set FUSIONSEG_VERBOSE=1 to see them).
QUIET_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\).*",
    r".*overridden `transfer_batch_to_device`.*",
    r".*`validation_step` but have no `val_dataloader`.*",
    r".*does not have many workers.*",
    r".*LightningCLI's args parameter is intended to run from within Python.*",
)


def _simulate(argv: list[str]) -> int:
    from fusionseg.data.synthetic import simulate_to_folder

    p = argparse.ArgumentParser(prog="fusionseg simulate", description="Write synthetic SEM fields to a folder.")
    p.add_argument("--rock", default="granite", help="rock type (granite, basalt, sulfide-ore, ...)")
    p.add_argument("--n", type=int_at_least(1), default=4, help="number of fields")
    p.add_argument("--size", type=int_at_least(8), default=256, help="field size in pixels (square)")
    p.add_argument("--eds-fraction", type=fraction, default=0.01, help="fraction of pixels with a spectrum (0..1]")
    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument("--out", type=Path, required=True, help="output folder (replaces only files fusionseg wrote)")
    a = p.parse_args(argv)
    from fusionseg.data.synthetic.rocks import get_rock
    from fusionseg.export.safe_io import output_folder

    get_rock(a.rock)  # an unknown rock fails before the folder is touched
    with output_folder(a.out, overwrite=True) as staging:
        simulate_to_folder(a.rock, a.n, a.size, staging, seed=a.seed, eds_fraction=a.eds_fraction)
    print(f"wrote {a.n} {a.rock} fields to {a.out}")
    return 0


def _demo(argv: list[str]) -> int:
    from fusionseg.demo import run_demo

    p = argparse.ArgumentParser(
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


def _segment(argv: list[str]) -> int:
    from fusionseg.segment import segment_main

    return segment_main(argv)


def _compare(argv: list[str]) -> int:
    from fusionseg.commands.compare import compare_main

    return compare_main(argv)


def usage() -> str:
    """``fusionseg --help``: every subcommand with one line."""
    width = max(len(c) for c in COMMANDS)
    lines = ["usage: fusionseg COMMAND [options]   (fusionseg COMMAND --help for its options)", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
    return "\n".join(lines)


def quiet_libraries() -> None:
    """Hide library notices and deprecation chatter in normal runs (not with FUSIONSEG_VERBOSE=1)."""
    import logging

    if os.environ.get("FUSIONSEG_VERBOSE"):
        return
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.seed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # RosettaSciIO warns at import that numba is absent; a reader that needs it says so when used
    logging.getLogger("rsciio.utils._decorator").addFilter(lambda record: "numba" not in record.getMessage())


def _pretrain(argv: list[str]) -> int:
    from fusionseg.pretrain import main as pretrain_main

    return pretrain_main(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fusionseg`` console script."""
    os.environ.setdefault("WANDB_MODE", "offline")  # never phone home unless the user asks
    args = list(sys.argv[1:] if argv is None else argv)
    quiet_libraries()
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if args[0] in EXTRA_COMMANDS:
        commands = {
            "simulate": _simulate,
            "demo": _demo,
            "segment": _segment,
            "pretrain": _pretrain,
            "compare": _compare,
        }
        return run_command(args[0], commands[args[0]], args[1:])
    command = next((a for a in args if not a.startswith("-")), "fusionseg")
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")  # argv minus --debug is passed on
    return run_command(command, lambda rest: make_cli(rest), args)


if __name__ == "__main__":
    sys.exit(main())
