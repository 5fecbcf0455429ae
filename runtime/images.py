"""Decoding image files with OpenCV: robust to odd formats, names and damaged files."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from edgecnn.runtime.errors import EdgecnnError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
# A 20000x20000 header would make OpenCV allocate 1.2 GB; larger photos are refused before decoding.
MAX_PIXELS = 100_000_000
# OpenCV's own limit (read at its first decode) backs up the header check for the other formats.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def read_image(path: str | Path) -> np.ndarray:
    """Decode a file to HxWx3 uint8 RGB (EXIF rotation applied); EdgecnnError when unreadable."""
    import cv2

    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)  # np.fromfile copes with non-ASCII names
    except OSError as exc:
        raise EdgecnnError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if data.size == 0:
        raise EdgecnnError(f"{path} is empty (0 bytes)")
    if _truncated_jpeg(path, data):
        raise EdgecnnError(f"{path} is a truncated JPEG (no end marker); copy it again")
    size = _header_size(data)
    if size is not None and size[0] * size[1] > MAX_PIXELS:
        raise EdgecnnError(f"{path} claims {size[0]}x{size[1]} pixels, over the {MAX_PIXELS // 10**6} "
                           "megapixel limit; shrink it (e.g. to 4000 px wide) or remove it")
    # IMREAD_COLOR turns gray, palette, RGBA, CMYK and 16-bit files into 8-bit BGR and applies EXIF rotation.
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise EdgecnnError(f"{path} is not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def is_readable(path: Path) -> bool:
    """Whether `read_image` can decode the file (for skipping damaged files up front)."""
    try:
        read_image(path)
    except EdgecnnError:
        return False
    return True


def _truncated_jpeg(path: Path, data: np.ndarray) -> bool:
    if path.suffix.lower() not in (".jpg", ".jpeg") or data[:2].tobytes() != b"\xff\xd8":
        return False
    tail = data[-64:].tobytes().rstrip(b"\x00\r\n ")
    return not tail.endswith(b"\xff\xd9")


def _header_size(data: np.ndarray) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header without decoding; None for other formats."""
    head = data[: 1 << 18].tobytes()  # EXIF and ICC segments come before the frame header
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24:
        return struct.unpack(">II", head[16:24])
    pos = 2 if head[:2] == b"\xff\xd8" else len(head)
    while pos + 9 <= len(head) and head[pos] == 0xFF:
        marker, length = head[pos + 1], struct.unpack(">H", head[pos + 2 : pos + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            height, width = struct.unpack(">HH", head[pos + 5 : pos + 9])
            return width, height
        pos += 2 + length
    return None


def iter_image_files(folder: Path) -> Iterator[Path]:
    """Image files under `folder`, sorted, following no symlinked folders (no loops)."""
    for path in sorted(folder.rglob("*")):
        if is_image_file(path):
            yield path
