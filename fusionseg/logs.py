"""What long-running commands print: ``--quiet`` / ``--verbose``, and every warning kept for the summary.

fusionseg's modules log through ``logging.getLogger(__name__)``, children of the ``fusionseg`` logger. A command
shows their warnings on stderr (``--quiet``: errors only; ``--verbose``: progress notes too, and Lightning's), and
`collected_warnings` keeps each warning logged while a field is mapped so it reaches the field's summary.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

ROOT = "fusionseg"
LIBRARY_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.seed")


def add_verbosity_flags(parser: argparse.ArgumentParser) -> None:
    """``--quiet`` and ``--verbose`` (mutually exclusive) on a long-running command's parser."""
    group = parser.add_mutually_exclusive_group()
    quiet = "print errors and where the outputs went only (warnings still go to the summary)"
    group.add_argument("--quiet", action="store_true", help=quiet)
    verbose = "also print progress notes (memory budget, acquisition batches) and Lightning's"
    group.add_argument("--verbose", action="store_true", help=verbose)


def stdout_is_terminal() -> bool:
    """True when stdout is an interactive terminal (progress bars redraw there; a log file gets lines)."""
    return bool(getattr(sys.stdout, "isatty", lambda: False)())


@contextmanager
def console_logs(quiet: bool = False, verbose: bool = False) -> Iterator[None]:
    """fusionseg's log on stderr for the ``with`` block: warnings (``quiet``: errors only; ``verbose``: info too),
    one message per line; the loggers' previous levels come back afterwards."""
    level = logging.ERROR if quiet else logging.INFO if verbose else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger(ROOT)
    libraries = [logging.getLogger(name) for name in LIBRARY_LOGGERS] if verbose else []
    saved = [(lg, lg.level) for lg in (root, *libraries)]
    root.setLevel(min(level, logging.WARNING))  # warnings are always logged: `collected_warnings` keeps them
    for lg in libraries:
        lg.setLevel(logging.INFO)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        for lg, old in saved:
            lg.setLevel(old)


class _Collector(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message not in self.into:
            self.into.append(message)


@contextmanager
def collected_warnings() -> Iterator[list[str]]:
    """The distinct warnings (and errors) fusionseg logs during the ``with`` block, in order."""
    found: list[str] = []
    handler = _Collector(found)
    root = logging.getLogger(ROOT)
    root.addHandler(handler)
    try:
        yield found
    finally:
        root.removeHandler(handler)


def merged(first: list[str], more: list[str]) -> list[str]:
    """``first`` then the messages of ``more`` not in it (order kept, no repeats)."""
    out = list(first)
    out += [m for m in more if m not in out]
    return out


__all__ = ["add_verbosity_flags", "collected_warnings", "console_logs", "merged", "stdout_is_terminal"]
