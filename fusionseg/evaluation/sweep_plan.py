"""Planning a sweep: configs x grid overrides x seeds as `Variant`s and `Job`s (`Sweep`), before anything runs.

Each *variant* is a base config plus one value per grid key; every (variant, seed) or (baseline, test split)
pair is one *job*, identified by a hash of its spec (`Job.id`: the name of its ``out/jobs/<id>.json``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class SweepError(ValueError):
    """A sweep specification that cannot run; the message names the problem and the fix."""


# ----------------------------------------------------------------------------- what to run
def parse_value(text: str) -> Any:
    """A grid value as YAML reads it: ``48`` -> 48, ``null`` -> None, ``[0.001, 0.05]`` -> list, ``gat`` -> 'gat'."""
    return yaml.safe_load(text) if text.strip() else text


def split_values(text: str) -> list[str]:
    """Split ``v1,v2,...`` on commas outside brackets and braces (``[1,2],[3,4]`` is two values)."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "[{"
        depth -= ch in "]}"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return [*parts, current]


def parse_grid(text: str) -> tuple[str, list[Any]]:
    """``"model.backbone=sage,gat"`` -> ``("model.backbone", ["sage", "gat"])``."""
    key, sep, values = text.partition("=")
    key = key.strip().removeprefix("--")
    if not sep or not key or not values.strip():
        raise SweepError(f"--grid {text!r} is not KEY=V1,V2,...; e.g. --grid model.backbone=sage,gat.")
    return key, [parse_value(v) for v in split_values(values)]


def show(value: Any) -> str:
    """A value as the command line spells it."""
    return value if isinstance(value, str) else json.dumps(value)


@dataclass(frozen=True)
class Variant:
    """A base config (or several, later ones winning) plus dotted-key overrides, and its display name."""

    name: str
    configs: tuple[str, ...]
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def spec(self) -> dict:
        return {"configs": [_config_fingerprint(c) for c in self.configs], "overrides": dict(self.overrides)}


def _config_fingerprint(config: str) -> dict:
    """Path and content hash of a config file, so an edited config is re-run, not resumed."""
    return {"path": config, "sha1": hashlib.sha1(Path(config).read_bytes()).hexdigest()}


def expand(configs: Sequence[str | Path], grid: Sequence[tuple[str, Sequence[Any]]]) -> list[Variant]:
    """The product of configs and grid values, named by what varies (``backbone=gat``, ``default/backbone=gat``)."""
    if not configs:
        raise SweepError("No config given; pass --config configs/default.yaml (one or more).")
    for c in configs:
        if not Path(c).is_file():
            raise SweepError(f"Config {c} does not exist; pass a YAML file such as configs/default.yaml.")
    keys = [k for k, _ in grid]
    if len(set(keys)) != len(keys):
        raise SweepError(f"A grid key is given twice ({', '.join(keys)}); put all its values in one --grid KEY=V1,V2.")
    for k, values in grid:
        if not values:
            raise SweepError(f"--grid {k}= has no values; give at least one.")
    varying = [k for k, values in grid if len(values) > 1]
    short = _short_names(varying)
    stems = [Path(c).stem for c in configs]
    variants = []
    for config, stem in zip(configs, stems, strict=True):
        for combo in itertools.product(*(values for _, values in grid)):
            overrides = dict(zip(keys, combo, strict=True))
            parts = [f"{short[k]}={show(overrides[k])}" for k in varying]
            name = "/".join(([stem] if len(configs) > 1 or not parts else []) + ([",".join(parts)] if parts else []))
            variants.append(Variant(name, (str(config),), overrides))
    if len({v.name for v in variants}) != len(variants):
        raise SweepError("Two variants get the same name (the same config given twice?); give each config once.")
    return variants


def _short_names(keys: Sequence[str]) -> dict[str, str]:
    """Last component of each dotted key, or the full key where two keys share their last component."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last, strict=True)}


@dataclass(frozen=True)
class Job:
    """One training (``method`` None: the variant at ``seed``) or one classic method on the variant's test split."""

    variant: Variant
    fractions: tuple[float, ...]
    seed: int | None = None
    budget: int | None = None
    method: str | None = None

    @property
    def name(self) -> str:
        return self.method if self.method else self.variant.name

    def spec(self) -> dict:
        if self.method:  # a baseline depends only on the test split: the configs and their data overrides
            data = {k: v for k, v in self.variant.overrides.items() if k.startswith("data.")}
            return {"method": self.method, "configs": self.variant.spec()["configs"], "data": data,
                    "fractions": list(self.fractions)}  # fmt: skip
        fractions = list(self.fractions)
        return {**self.variant.spec(), "seed": self.seed, "budget_epochs": self.budget, "fractions": fractions}

    @property
    def id(self) -> str:
        digest = hashlib.sha1(_key(self.spec()).encode()).hexdigest()[:10]
        slug = re.sub(r"[^A-Za-z0-9_.=-]+", "_", self.name)[:60]
        return f"{slug}-s{self.seed}-{digest}" if self.method is None else f"{slug}-{digest}"


def _key(spec: dict) -> str:
    return json.dumps(spec, sort_keys=True, default=str)


@dataclass
class Sweep:
    """What to run: the variants, the seeds, the EDS fractions, the epoch budget and the classic baselines."""

    variants: list[Variant]
    seeds: Sequence[int] = (0,)
    fractions: Sequence[float] = (0.01,)
    budget: int | None = None
    baselines: Sequence[str] = ()

    def __post_init__(self) -> None:
        from fusionseg.baselines import CLASSIC_METHODS

        if not self.variants:
            raise SweepError("The sweep has no variant; pass --config (and --grid KEY=V1,V2 to vary a key).")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise SweepError(f"--seeds must be distinct integers, got {list(self.seeds)}.")
        bad = [f for f in self.fractions if not 0 < f <= 1]
        if not self.fractions or bad:
            raise SweepError(f"--fractions must be in (0, 1] (0.01 = 1 % of pixels), got {list(self.fractions)}.")
        if self.budget is not None and self.budget < 1:
            raise SweepError(f"--budget is epochs per training and must be >= 1, got {self.budget}.")
        unknown = [m for m in self.baselines if m not in CLASSIC_METHODS]
        if unknown:
            raise SweepError(f"Unknown baseline(s) {unknown}; choose from {', '.join(CLASSIC_METHODS)}.")
        clash = [k for v in self.variants for k in v.overrides if k in ("trainer.max_epochs", "seed_everything")]
        if clash:
            raise SweepError(f"{clash[0]} is set by the sweep (--budget, --seeds); remove it from --grid.")

    def jobs(self) -> list[Job]:
        """Training jobs (seed-major, so every variant has a first seed early), then one job per baseline and split."""
        fractions = tuple(self.fractions)
        trained = [Job(v, fractions, s, self.budget) for s in self.seeds for v in self.variants]
        splits = {_key(Job(v, fractions, method="-").spec()): v for v in self.variants}  # one per distinct test split
        return trained + [Job(v, fractions, method=m) for m in self.baselines for v in splits.values()]
