"""The ``fusionseg`` command: LightningCLI (fit/validate/test/predict) plus ``simulate`` and ``demo``.

fusionseg fit --config configs/default.yaml [--trainer.max_epochs=5 ...]
fusionseg simulate --rock granite --n 4 --size 256 --out data/granite
fusionseg demo --out outputs/demo
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from lightning.pytorch.cli import LightningCLI

from fusionseg.data.datamodule import FusionSegDataModule
from fusionseg.models.module import ARCHITECTURE_KEYS, FusionSegModule

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"
EXTRA_COMMANDS = ("simulate", "demo", "segment")


class FusionSegCLI(LightningCLI):
    """LightningCLI whose model takes class names and calibration from the data."""

    def add_arguments_to_parser(self, parser) -> None:  # noqa: ANN001 (jsonargparse parser)
        for attr in ("class_names", "energy_axis", "beam_energy_kev", "image_channels", "point_channels"):
            parser.link_arguments(f"data.{attr}", f"model.{attr}", apply_on="instantiate")

    def _parse_ckpt_path(self) -> None:
        """LightningCLI rebuilds the model from ``--ckpt_path``'s hyper-parameters; say what that overrode."""
        sub = self.config.get("subcommand")
        before = _model_config(self.config, sub)
        super()._parse_ckpt_path()
        after = _model_config(self.config, sub)
        diffs = [
            f"  {key}: config {before[key]!r} -> checkpoint {after[key]!r}"
            for key in ARCHITECTURE_KEYS
            if key in before and key in after and before[key] != after[key]
        ]
        if diffs:
            warnings.warn(
                "The checkpoint was trained with a different model configuration; its values are used:\n"
                + "\n".join(diffs),
                CheckpointConfigWarning,
                stacklevel=2,
            )


class CheckpointConfigWarning(UserWarning):
    """The configured model differs from the checkpoint's; the checkpoint's architecture wins."""


def _model_config(config: Any, subcommand: str | None) -> dict[str, Any]:
    section = config.get(subcommand) if subcommand else config
    model = section.get("model") if section is not None else None
    return model.as_dict() if hasattr(model, "as_dict") else dict(model or {})


def make_cli(args: list[str] | None = None, run: bool = True) -> FusionSegCLI:
    """Build the LightningCLI (``run=False`` returns it with model, data and trainer instantiated)."""
    return FusionSegCLI(
        FusionSegModule,
        FusionSegDataModule,
        args=args,
        run=run,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={
            "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "runs"}},
            "accelerator": "auto",
        },
        parser_kwargs={"default_env": False},
    )


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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fusionseg`` console script."""
    os.environ.setdefault("WANDB_MODE", "offline")  # never phone home unless the user asks
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in EXTRA_COMMANDS:
        return {"simulate": _simulate, "demo": _demo, "segment": _segment}[args[0]](args[1:])
    make_cli(argv)  # None: LightningCLI reads sys.argv itself
    return 0


if __name__ == "__main__":
    sys.exit(main())
