"""The one base class of fusionseg's user errors.

Every error raised because of the user's input (a file, a config value, a command-line
argument) derives from `FusionSegError`; commands print its message as one paragraph and
exit with code 2, with no traceback unless ``--debug``. It subclasses `ValueError` so code
that caught the older per-module errors as ``ValueError`` keeps working.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


class FusionSegError(ValueError):
    """A user error; the message names the field, the value and the fix."""


USER_ERROR_EXIT = 2
"""Exit status of a command that stopped on a user error (argparse uses 2 as well)."""


class SegmentError(FusionSegError):
    """The field cannot be segmented as asked; the message names the problem and the fix."""


def user_error_message(err: BaseException) -> str | None:
    """One paragraph for an error the user can fix (bad input, config or argument); None for a bug.

    User errors: fusionseg's own (`FusionSegError`), Lightning's misconfiguration errors, files that
    cannot be found, and a failed instantiation of a configured class (an unknown or invalid keyword).
    """
    import argparse

    from lightning.fabric.utilities.exceptions import MisconfigurationException

    if isinstance(err, FusionSegError | MisconfigurationException | FileNotFoundError | NotADirectoryError):
        text = str(err)
    elif isinstance(err, argparse.ArgumentError):  # jsonargparse with exit_on_error=False
        text = f"{err}; see --help for the accepted options."
    elif isinstance(err, TypeError) and any(w in str(err) for w in ("unexpected keyword", "required positional")):
        text = f"{err}; check the keys of your config against `fusionseg fit --print_config`."
    else:
        return None
    return " ".join(text.split())


def run_command(command: str, func: Callable[[list[str]], Any], args: list[str]) -> int:
    """Run ``func(args)``; a user error prints one paragraph and returns 2 (traceback only with ``--debug``)."""
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    try:
        result = func(args)
    except Exception as err:
        message = user_error_message(err)
        if debug or message is None:
            raise
        print(f"fusionseg {command}: error: {message} (run with --debug for the traceback)", file=sys.stderr)
        return USER_ERROR_EXIT
    return result if isinstance(result, int) else 0


__all__ = ["USER_ERROR_EXIT", "FusionSegError", "run_command", "user_error_message"]
