"""Reading an input file safely: regular files only, size checked before a byte is read.

A FIFO, a device or a socket named as an image would block `open()` forever (or stream without
end), and a 40 GB sparse file would be read whole into memory; both become one-line errors here.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from edgecnn.runtime.core.errors import EdgecnnError

_KINDS = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a folder"}


def regular_size(path: str | Path, what: str = "file") -> int:
    """The size of `path` when it is a regular file (links followed), else EdgecnnError; never opens it."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise EdgecnnError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(info.st_mode):
        kind = _KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
        raise EdgecnnError(f"{what} {path} is {kind}, not a regular file; give a plain file")
    return info.st_size


def read_bounded(path: str | Path, limit: int, what: str = "file") -> bytes:
    """The bytes of a regular file of at most `limit` bytes; EdgecnnError otherwise (nothing read)."""
    size = regular_size(path, what)
    if size > limit:
        raise EdgecnnError(f"{what} {path} is {_size(size)}, over the {_size(limit)} limit; "
                           "is it the right file?")
    try:  # O_NONBLOCK: should the file be swapped for a FIFO after the check, open() still returns
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise EdgecnnError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise EdgecnnError(f"{what} {path} is not a regular file; give a plain file")
        data = file.read(limit + 1)
    if len(data) > limit:
        raise EdgecnnError(f"{what} {path} grew over the {_size(limit)} limit while being read")
    return data


def _size(count: int) -> str:
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"
