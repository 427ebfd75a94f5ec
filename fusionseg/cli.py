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
from pathlib import Path

from fusionseg.build import CheckpointConfigWarning, FusionSegCLI, make_cli  # noqa: F401 (the command's API)

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"
EXTRA_COMMANDS = ("simulate", "demo", "segment", "compare")


def _simulate(argv: list[str]) -> int:
    from fusionseg.data.synthetic import simulate_to_folder

    p = argparse.ArgumentParser(prog="fusionseg simulate", description="Write synthetic SEM fields to a folder.")
    p.add_argument("--rock", default="granite", help="rock type (granite, basalt, sulfide-ore, ...)")
    p.add_argument("--n", type=int, default=4, help="number of fields")
    p.add_argument("--size", type=int, default=256, help="field size in pixels (square)")
    p.add_argument("--eds-fraction", type=float, default=0.01, help="fraction of pixels with a spectrum")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    a = p.parse_args(argv)
    out = simulate_to_folder(a.rock, a.n, a.size, a.out, seed=a.seed, eds_fraction=a.eds_fraction)
    print(f"wrote {a.n} {a.rock} fields to {out}")
    return 0


def _demo(argv: list[str]) -> int:
    from fusionseg.demo import run_demo

    p = argparse.ArgumentParser(
        prog="fusionseg demo", description="Train on synthetic SEM data and map a held-out field."
    )
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="LightningCLI config to train")
    p.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output folder")
    p.add_argument("--max-epochs", type=int, default=None, help="override trainer.max_epochs")
    a = p.parse_args(argv)
    run_demo(a.config, a.out, max_epochs=a.max_epochs)
    return 0


def _segment(argv: list[str]) -> int:
    from fusionseg.segment import segment_main

    return segment_main(argv)


def _compare(argv: list[str]) -> int:
    from fusionseg.commands.compare import compare_main

    return compare_main(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fusionseg`` console script."""
    os.environ.setdefault("WANDB_MODE", "offline")  # never phone home unless the user asks
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in EXTRA_COMMANDS:
        return {"simulate": _simulate, "demo": _demo, "segment": _segment, "compare": _compare}[args[0]](args[1:])
    make_cli(argv)  # None: LightningCLI reads sys.argv itself
    return 0


if __name__ == "__main__":
    sys.exit(main())
