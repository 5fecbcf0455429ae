"""Checking an output location before the work starts, so a mistake costs seconds, not a finished run."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from edgecnn.runtime.errors import EdgecnnError


def check_writable(path: Path, option: str) -> None:
    """EdgecnnError unless `path` (a folder, or a file's place) can be created and written.

    A real probe: as root `os.access` says yes to read-only mounts and /proc.
    """
    folder = Path(path).absolute()
    if folder.is_file():  # an output file being replaced: its folder must take the new copy
        folder = folder.parent
    while not folder.exists():
        folder = folder.parent
    try:
        if not folder.is_dir():
            raise NotADirectoryError(folder)
        Path(tempfile.mkdtemp(dir=folder, prefix=".edgecnn-probe-")).rmdir()
    except OSError as exc:
        raise EdgecnnError(f"cannot write {option} {path}: {folder} is not a writable folder; "
                           f"choose another {option}") from exc


def write_atomic(path: Path, data: bytes) -> Path:
    """Temporary name in the same folder, then rename: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def next_free_folder(root: Path, name: str, exist_ok: bool = False) -> Path:
    """`root/name`, or the first free `root/name2`, `root/name3`... (Ultralytics' run folders).

    An empty folder counts as free; `exist_ok` reuses `root/name` whatever it holds.
    """
    if not name or Path(name).name != name or name in (".", ".."):
        raise EdgecnnError(f"--name {name!r} must be a plain folder name, e.g. --name tour; "
                           "use --out for a path")
    first = Path(root) / name
    if exist_ok:
        return first
    candidate, number = first, 1
    while candidate.exists() and (not candidate.is_dir() or any(candidate.iterdir())):
        number += 1
        candidate = first.with_name(f"{name}{number}")
    return candidate
