"""Where the package keeps its files (a leaf module: commands and library code both read it)."""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
WEIGHTS_DIR = PACKAGE_DIR / "weights"
"""Shipped weights (package data): ``<config name>.ckpt`` plus its JSON record, each made by a committed command."""
DEFAULT_WEIGHTS = WEIGHTS_DIR / "default.ckpt"
"""The shipped default weights (package data, made by ``make pretrain``)."""
CONFIG_DIR = PACKAGE_DIR / "configs"
"""Shipped configs (package data); ``configs/`` at the repository root holds the same files for users to copy."""
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"
