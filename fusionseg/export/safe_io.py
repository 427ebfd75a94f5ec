"""Safe writing: atomic files and output folders that never lose what the user had.

* `atomic_write(path, mode)`: a file object on a temporary file beside ``path``, renamed over
  ``path`` (``os.replace``) only when the block ends without an error; `atomic_path(path)` does the
  same for writers that want a file name (tifffile, matplotlib, RosettaSciIO, torch.save).
* `output_folder(out, inputs, overwrite)`: a staging folder whose files are moved into ``out`` one
  by one (each move atomic) when the block succeeds. ``out`` holds a manifest
  (``.fusionseg-manifest.json``) of the files fusionseg wrote there; ``overwrite`` replaces only
  those. A folder holding the input or files fusionseg did not write is refused before any work
  (`check_output_folder`), so nothing the user had is ever deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from fusionseg.errors import FusionSegError

MANIFEST_NAME = ".fusionseg-manifest.json"


class OutputFolderError(FusionSegError):
    """The output folder cannot be written without destroying something; the message says what to do."""


def _publish_mode(path: Path) -> None:
    """Give a temp file/folder the permissions a plain create would (mkstemp/mkdtemp make them private)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        _publish_mode(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **open_kwargs: Any) -> Iterator[IO]:
    """``with atomic_write(p, "w") as f: f.write(...)``: ``p`` appears complete or not at all (fsynced)."""
    if mode not in ("w", "wb", "wt"):
        raise ValueError(f"atomic_write writes whole files; mode must be 'w' or 'wb', got {mode!r}.")
    with atomic_path(path) as tmp, open(tmp, mode, **open_kwargs) as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


# ----------------------------------------------------------------------------- manifest
def read_manifest(folder: str | os.PathLike) -> set[str]:
    """Relative paths (POSIX) of the files fusionseg wrote into ``folder``; empty without a manifest."""
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        return set()
    try:
        data = json.loads(path.read_text())
        return {str(f) for f in data["files"]}
    except (ValueError, KeyError, TypeError) as err:
        raise OutputFolderError(
            f"the manifest {path} is unreadable ({err}); fusionseg cannot tell its own files from yours there, "
            "so choose another --out."
        ) from err


def write_manifest(folder: str | os.PathLike, files: Iterable[str]) -> Path:
    """Record ``files`` (relative paths) as written by fusionseg into ``folder``, atomically."""
    path = Path(folder) / MANIFEST_NAME
    with atomic_write(path) as fh:
        json.dump({"format": "fusionseg-manifest", "version": 1, "files": sorted(set(files))}, fh, indent=1)
    return path


def owned_files(folder: Path) -> set[str]:
    """Files fusionseg wrote under ``folder``: its manifest's, and each sub-folder manifest's (the field folders
    of a multi-field run) with that manifest itself."""
    owned = read_manifest(folder)
    for manifest in folder.rglob(MANIFEST_NAME):
        if manifest.parent != folder:
            rel = manifest.parent.relative_to(folder).as_posix()
            owned |= {f"{rel}/{f}" for f in read_manifest(manifest.parent)} | {f"{rel}/{MANIFEST_NAME}"}
    return owned


def is_complete(folder: str | os.PathLike) -> bool:
    """True when ``folder`` was published completely: a manifest whose every file is present (`publish`
    lists the new files before moving them, so a run stopped while moving leaves a missing one)."""
    folder = Path(folder)
    files = read_manifest(folder) if (folder / MANIFEST_NAME).is_file() else set()
    return bool(files) and all((folder / f).is_file() for f in files)


def remove_stale_staging(out: str | os.PathLike) -> None:
    """Delete staging folders a killed run left beside ``out`` (``.<name>.staging.*``, made by `output_folder`)."""
    out = Path(out)
    for stale in out.parent.glob(f".{out.name}.staging.*"):
        shutil.rmtree(stale, ignore_errors=True)


def _files_under(folder: Path) -> list[str]:
    """Files under ``folder`` (relative POSIX paths). ``os.walk`` skips a subfolder deleted while it walks (another
    process of a torchrun job removing its stale staging folder), where ``Path.rglob`` raised FileNotFoundError."""
    return sorted((Path(root) / name).relative_to(folder).as_posix()
                  for root, _, names in os.walk(folder) for name in names)  # fmt: skip


def foreign_files(folder: Path, also_ours: Iterable[str] = ()) -> list[str]:
    """Files under ``folder`` that fusionseg did not write: neither in its manifests (`owned_files`) nor in
    ``also_ours``, nor hidden (a name starting with a dot: manifests, a stopped run's staging folders and
    temporary files; never deleted, so counting a user's hidden file as ours loses nothing)."""
    ours = owned_files(folder) | set(also_ours)
    present = (f for f in _files_under(folder) if f not in ours)
    return [f for f in present if not any(part.startswith(".") for part in f.split("/"))]


def _written_by(relative: str, folders: tuple[str, ...]) -> bool:
    """True when ``relative`` (a path under an output folder) lies in one of ``folders`` or their staging folders."""
    top = relative.split("/", 1)[0]
    return any(top == name or top.startswith(f".{name}.staging.") for name in folders)


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def check_output_folder(
    out: str | os.PathLike,
    inputs: Iterable[str | os.PathLike | None] = (),
    overwrite: bool = False,
    also_ours: Iterable[str] = (),
    others: Iterable[str] = (),
) -> Path:
    """Raise `OutputFolderError` unless writing into ``out`` can only replace fusionseg's own files.

    Refused: ``out`` is a file or lies under one; ``out`` is, or lies above, one of ``inputs``; ``out`` holds files and
    ``overwrite`` is off; ``out`` holds `foreign_files` (``also_ours``: relative paths a command writes
    outside manifests). ``others``: folders of ``out`` that other processes of the same job are writing now
    (their fields, with the staging folders beside them): not read here, their own process checks them first.
    Returns ``out`` resolved.
    """
    out = Path(out).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise OutputFolderError(f"--out {out} is a file, not a folder; give a folder path for the outputs.")
    above = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if above is not None:  # mkdir would fail with FileExistsError
        raise OutputFolderError(f"--out {out} lies under {above}, which is a file, not a folder; give an --out "
                                f"outside it, e.g. --out {above.parent / (above.name + '_maps')}.")  # fmt: skip
    for inp in inputs:
        if inp is not None and _inside(Path(inp), out):
            raise OutputFolderError(
                f"--out {out} holds the input {inp}; writing there could replace it. Write the outputs to a new "
                "folder, e.g. --out <input folder>/maps."
            )
    if not out.is_dir():
        return out
    theirs = tuple(others)
    present = [f for f in _files_under(out) if f != MANIFEST_NAME and not _written_by(f, theirs)]
    if not present:
        return out
    if not overwrite:
        raise OutputFolderError(
            f"output folder {out} exists and is not empty; choose another --out, or pass --overwrite to replace "
            "the files fusionseg wrote there before (nothing else is touched), or --resume to keep the fields a "
            "stopped multi-field `segment` already wrote."
        )
    unknown = [f for f in foreign_files(out, also_ours) if not _written_by(f, theirs)]
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise OutputFolderError(
            f"fusionseg replaces only files it wrote, but {out} also holds {shown}; move them away or "
            "choose another --out."
        )
    return out


def publish(staging: Path, out: Path) -> list[str]:
    """Move every file of ``staging`` into ``out`` (each ``os.replace`` atomic), drop fusionseg's stale files.

    Returns the relative paths now owned by fusionseg (also written to ``out``'s manifest).
    """
    out.mkdir(parents=True, exist_ok=True)
    previous = read_manifest(out)
    new = [f for f in _files_under(staging) if f != MANIFEST_NAME]
    write_manifest(out, previous | set(new))  # a crash below leaves every file accounted for
    for rel in new:
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        _publish_mode(staging / rel)
        os.replace(staging / rel, target)
    for rel in sorted(previous - set(new)):  # outputs of the earlier run this one did not write again
        stale = out / rel
        if stale.is_file() or stale.is_symlink():
            stale.unlink()
    write_manifest(out, new)
    return new


@contextmanager
def output_folder(
    out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = (), overwrite: bool = False
) -> Iterator[Path]:
    """Yield an empty staging folder beside ``out``; on success its files are published into ``out``.

    The folder is checked first (`check_output_folder`); on failure the staging folder is removed and
    ``out`` is untouched.
    """
    out = check_output_folder(out, inputs, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging.", dir=out.parent))  # same disk: renames are atomic
    try:
        yield staging
        publish(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


__all__ = [
    "MANIFEST_NAME",
    "OutputFolderError",
    "atomic_path",
    "atomic_write",
    "check_output_folder",
    "foreign_files",
    "is_complete",
    "output_folder",
    "owned_files",
    "publish",
    "read_manifest",
    "remove_stale_staging",
    "write_manifest",
]
