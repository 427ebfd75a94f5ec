"""The ``fusionseg`` command: LightningCLI (fit/validate/test/predict), pretrain, compare, and domain commands.

Domain commands (the SEM domain's simulate, demo, segment) come from `fusionseg.registry.COMMANDS`.

fusionseg fit --config configs/default.yaml [--trainer.max_epochs=5 ...]
fusionseg simulate --rock granite --n 4 --size 256 --out data/granite
fusionseg demo --out outputs/demo
fusionseg compare --config configs/default.yaml --grid model.backbone=sage,gat --seeds 0 1 --out runs/compare
"""

from __future__ import annotations

import os
import sys
import warnings

from fusionseg.build import CheckpointConfigWarning, FusionSegCLI, make_cli  # noqa: F401 (the command's API)
from fusionseg.errors import run_command
from fusionseg.paths import CONFIG_DIR, DEFAULT_CONFIG  # noqa: F401 (the command's API)
from fusionseg.registry import COMMANDS

CORE_COMMANDS = {  # one line each for `fusionseg --help`; domains add theirs to fusionseg.registry.COMMANDS
    "pretrain": "train the shipped default weights on the simulator (what `make pretrain` runs)",
    "compare": "sweep configs x overrides x EDS fractions x seeds; results.csv, summary.md and a plot",
    "fit": "train a model from a config (LightningCLI: --config configs/X.yaml --section.key=value)",
    "validate": "evaluate a checkpoint on the validation split",
    "test": "evaluate a checkpoint on the held-out test split",
    "predict": "map the predict split with a checkpoint; writes each field as it finishes (runs/predictions)",
}
LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
# Library messages that say nothing to a user of these commands (set FUSIONSEG_VERBOSE=1 to see them).
QUIET_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\).*",
    r".*overridden `transfer_batch_to_device`.*",
    r".*`validation_step` but have no `val_dataloader`.*",
    r".*does not have many workers.*",
    r".*LightningCLI's args parameter is intended to run from within Python.*",
)


def _compare(argv: list[str]) -> int:
    from fusionseg.commands.compare import compare_main

    return compare_main(argv)


def command_lines() -> dict[str, str]:
    """Every command with its help line: the domains' (`COMMANDS`, first docstring line) and the core's."""
    domain = {name: (COMMANDS.get(name).__doc__ or "").strip().splitlines()[0] for name in COMMANDS.names()}
    return domain | CORE_COMMANDS


def usage() -> str:
    """``fusionseg --help``: every subcommand with one line."""
    lines_ = command_lines()
    width = max(len(c) for c in lines_)
    lines = ["usage: fusionseg COMMAND [options]   (fusionseg COMMAND --help for its options)", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in lines_.items()]
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
    core = {"pretrain": _pretrain, "compare": _compare}
    if args[0] in core:
        return run_command(args[0], core[args[0]], args[1:])
    if args[0] not in LIGHTNING_COMMANDS and args[0] in COMMANDS:
        return run_command(args[0], COMMANDS.get(args[0]), args[1:])
    command = next((a for a in args if not a.startswith("-")), "fusionseg")
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")  # argv minus --debug is passed on
    return run_command(command, lambda rest: make_cli(rest), args)


if __name__ == "__main__":
    sys.exit(main())
