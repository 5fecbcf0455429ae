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
