"""Reading an input file safely: regular files only, size checked before a byte is read; ONNX external
data that leads outside its folder refused (ONNX Runtime and export call it before opening a model).

A FIFO, a device or a socket named as an image would block `open()` forever (or stream without
end), and a 40 GB sparse file would be read whole into memory; both become one-line errors here.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

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
        data = _read_up_to(file, os.fstat(file.fileno()).st_size, limit)
    if len(data) > limit:
        raise EdgecnnError(f"{what} {path} grew over the {_size(limit)} limit while being read")
    return data


def _read_up_to(file: Any, size: int, limit: int) -> bytes:
    """At most limit + 1 bytes, allocating what the file holds, not the limit: `read(limit + 1)` reserves
    the whole limit first (500 MB for every photo read, issue 31). A file that grows is read on in 1 MB
    steps until the limit shows it."""
    parts = [file.read(min(size, limit) + 1)]
    read = len(parts[0])
    while read <= limit and read > size and (chunk := file.read(min(2**20, limit + 1 - read))):
        parts.append(chunk)
        read += len(chunk)
    return b"".join(parts) if len(parts) > 1 else parts[0]


def _size(count: int) -> str:
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


# An ONNX TensorProto.external_data entry whose key is "location": field 1 "location", then field 2.
_LOCATION = re.compile(rb"\x0a\x08location\x12")


MAX_ONNX_BYTES = 2**31  # protobuf's limit for one message: bigger models keep their weights outside


def check_external_data(path: Path, root: Path | None = None) -> None:
    """Refuse weights stored outside `root` (default: the model's folder): a model must not read
    arbitrary files. A byte scan; ONNX Runtime's own check catches reordered fields. The file is
    mapped, not read: a multi-gigabyte (or a sparse 40 GB) file costs no memory here."""
    import mmap

    size = regular_size(path, "model file")  # a FIFO is refused, never opened
    if size == 0:
        return
    if size > MAX_ONNX_BYTES:
        raise EdgecnnError(f"model file {path} is over 2 GB, more than one ONNX file can hold; export the "
                           "weights as external data beside it")
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        _check_locations(path, data, (root or path.parent).resolve())


def _check_locations(path: Path, data: Any, folder: Path) -> None:
    for match in _LOCATION.finditer(data):
        length, start = _varint(data, match.end())
        location = data[start : start + length].decode("utf-8", errors="replace")
        target = (path.parent / location).resolve()
        if Path(location).is_absolute() or not target.is_relative_to(folder):
            raise EdgecnnError(f"{path} refers to external data {location!r} outside its folder; "
                               "refusing to load it (keep the weights beside the .onnx file)")


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while pos < len(data):
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            break
    return value, pos
