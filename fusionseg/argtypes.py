"""argparse ``type=`` converters that reject impossible values before any work starts.

Each raises ``argparse.ArgumentTypeError`` with the value and the allowed range, so argparse
prints ``fusionseg <cmd>: error: argument --x: ...`` and exits with code 2.
"""

from __future__ import annotations

import argparse
import math
import re

_UNITS = {"": 1, "B": 1, "K": 1e3, "KB": 1e3, "M": 1e6, "MB": 1e6, "G": 1e9, "GB": 1e9, "T": 1e12, "TB": 1e12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}  # fmt: skip


def _number(text: str, kind: type) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def int_at_least(low: int):  # noqa: ANN201 (an argparse type callable)
    """``type=int_at_least(1)``: an integer >= ``low``."""

    def convert(text: str) -> int:
        value = _number(text, int)
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below the minimum {low}")
        return value

    convert.__name__ = f"integer >= {low}"
    return convert


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be > 0")
    return value


def fraction(text: str) -> float:
    """A fraction in (0, 1]."""
    value = _number(text, float)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{value} must be in (0, 1]; 0.01 means 1 %")
    return value


def probability(text: str) -> float:
    """A probability in [0, 1]."""
    value = _number(text, float)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{value} must be in [0, 1]")
    return value


def memory_size(text: str | int) -> int:
    """Bytes from a size such as ``4GB``, ``512MB``, ``1.5GiB`` or a plain number of bytes; > 0."""
    if isinstance(text, int) and not isinstance(text, bool):  # already converted (config parsers re-check values)
        text = str(text)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    unit = m.group(2).upper() if m else None
    if m is None or unit not in _UNITS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a memory size; write e.g. 4GB, 512MB or 2GiB")
    value = float(m.group(1)) * _UNITS[unit]
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return int(value)


class MemorySize(int):
    """A memory budget in bytes, parsed by `memory_size` (a type config parsers name in their help)."""

    def __new__(cls, text: str | int) -> MemorySize:
        try:
            return super().__new__(cls, memory_size(text))
        except argparse.ArgumentTypeError as err:  # config parsers report ValueError as a bad value
            raise ValueError(str(err)) from None


def nearest_options(message: str, options: list[str]) -> str:
    """``message`` (argparse's "unrecognized arguments: ...") with the option each unknown one was likely meant
    to be: abbreviations and typos are refused, never guessed (``--trainer.max_epoch=1`` is not
    ``--trainer.max_epochs``), but the error names the option."""
    import difflib

    if "unrecognized arguments:" not in message:
        return message
    unknown = [a.split("=")[0] for a in message.split("unrecognized arguments:", 1)[1].split() if a.startswith("--")]
    hints = []
    for arg in unknown:
        near = [o for o in options if o.startswith(arg) and o != arg] or difflib.get_close_matches(arg, options, 1, 0.8)
        if near:
            hints.append(f"{arg} is not an option (did you mean {near[0]})")
    return message + ("; " + "; ".join(hints) if hints else "")


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser without abbreviations (``--eds-frac`` is not taken for ``--eds-fraction``: an option
    name is written in full, so a later option cannot silently change what an old command line means); an
    unknown option's error names the nearest known one."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 (argparse's signature)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # noqa: ANN201 (argparse: never returns)
        super().error(nearest_options(message, list(self._option_string_actions)))


__all__ = [
    "ArgumentParser",
    "MemorySize",
    "nearest_options",
    "fraction",
    "int_at_least",
    "memory_size",
    "positive_float",
    "probability",
]
