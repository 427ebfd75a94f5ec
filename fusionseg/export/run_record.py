"""What made an output folder: the checkpoint (path and content hash) and the settings, kept beside the outputs.

``segment --resume`` and ``predict`` keep the field folders an earlier run published completely; before this
record they kept them whatever checkpoint or settings had made them ("wrote 0 fields (1 already there)" with the
old maps). Each field folder now holds ``.fusionseg-run.json``; a rerun whose checkpoint or settings differ is
refused with the fix (`RerunError`), or re-maps the field when ``--overwrite`` is given.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from fusionseg.errors import FusionSegError

RUN_RECORD = ".fusionseg-run.json"  # hidden like the manifest: not one of the files a user reads


class RerunError(FusionSegError):
    """An output folder holds fields made with another checkpoint or other settings."""


@lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def checkpoint_identity(path: str | Path | None) -> dict[str, Any] | None:
    """``{"path", "sha256"}`` of a checkpoint file (hash of its content: a retrained file at the same path
    differs); None without one."""
    if path is None:
        return None
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        return {"path": str(path), "sha256": None}
    stat = path.stat()
    return {"path": str(path), "sha256": _sha256(str(path), stat.st_size, stat.st_mtime_ns)}


def _plain(value: Any) -> Any:
    """``value`` as JSON would read it back (paths as strings, tuples as lists)."""
    return json.loads(json.dumps(value, default=str))


def make_record(checkpoint: str | Path | None, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The record of one run: its checkpoint's identity and the settings that shape the maps."""
    return {"checkpoint": checkpoint_identity(checkpoint), "settings": _plain(dict(settings))}


def write_record(folder: Path, record: Mapping[str, Any]) -> Path:
    path = Path(folder) / RUN_RECORD
    path.write_text(json.dumps(record, indent=1, sort_keys=True))
    return path


def read_record(folder: Path) -> dict[str, Any] | None:
    """The folder's record; None when it has none (written before records were kept) or it is unreadable."""
    try:
        return json.loads((Path(folder) / RUN_RECORD).read_text())
    except (OSError, ValueError):
        return None


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``"what: before -> now"`` for the checkpoint and each setting that differs."""
    lines = []
    before, now = old.get("checkpoint") or {}, new.get("checkpoint") or {}
    if before.get("sha256") != now.get("sha256") or before.get("path") != now.get("path"):
        lines.append(f"checkpoint {before.get('path')} -> {now.get('path')}"
                     + (" (same path, other content)" if before.get("path") == now.get("path") else ""))  # fmt: skip
    s_old, s_new = old.get("settings") or {}, new.get("settings") or {}
    for key in sorted(set(s_old) | set(s_new)):
        if s_old.get(key) != s_new.get(key):
            lines.append(f"{key} {s_old.get(key)!r} -> {s_new.get(key)!r}")
    return lines


def rerun_decision(
    folder: Path, record: Mapping[str, Any], overwrite: bool, flag: str = "--overwrite", elsewhere: str = "a new --out"
) -> bool:
    """Whether the complete field ``folder`` must be mapped again by a run with ``record``.

    False: it was made with the same checkpoint and settings (or holds no record: kept, as before records);
    True: it differs and ``overwrite`` is on. Raises `RerunError` when it differs and ``overwrite`` is off."""
    old = read_record(folder)
    if old is None:
        return False
    diff = differences(old, record)
    if not diff:
        return False
    if overwrite:
        return True
    raise RerunError(
        f"{folder} was mapped with another checkpoint or other settings ({'; '.join(diff[:4])}); pass {flag} to "
        f"map it again with these, or write to {elsewhere}."
    )


__all__ = ["RUN_RECORD", "RerunError", "checkpoint_identity", "differences", "make_record", "read_record",
           "rerun_decision", "write_record"]  # fmt: skip
