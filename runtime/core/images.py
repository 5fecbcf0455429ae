"""Decoding image files with OpenCV: robust to odd formats, names and damaged files."""

from __future__ import annotations

import functools
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.files import read_bounded

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
# A 20000x20000 header would make OpenCV allocate 1.2 GB; larger photos are refused before decoding.
MAX_PIXELS = 100_000_000
MAX_IMAGE_BYTES = 500_000_000  # a 100-megapixel 16-bit TIFF is 600 MB raw, far less compressed


@functools.cache
def opencv() -> Any:
    """cv2, with two settings it reads from the environment at first use (so set before any decode or open):
    its own pixel limit, backing up the header check below for the other formats, and FFmpeg's log
    lines off ("non-intra slice", "connection refused": they would break our one-line errors)."""
    os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    import cv2

    return cv2


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()  # is_file: no FIFO, device or socket


def read_image(path: str | Path) -> np.ndarray:
    """Decode a file to HxWx3 uint8 RGB (EXIF rotation applied); EdgecnnError when unreadable."""
    cv2 = opencv()

    path = Path(path)
    data = np.frombuffer(read_bounded(path, MAX_IMAGE_BYTES, "image"), dtype=np.uint8)
    if data.size == 0:
        raise EdgecnnError(f"{path} is empty (0 bytes)")
    if _truncated_jpeg(path, data):
        raise EdgecnnError(f"{path} is a truncated JPEG (no end marker); copy it again")
    size = _header_size(data)
    if size is not None and size[0] * size[1] > MAX_PIXELS:
        raise EdgecnnError(f"{path} claims {size[0]}x{size[1]} pixels, over the {MAX_PIXELS // 10**6} "
                           "megapixel limit; shrink it (e.g. to 4000 px wide) or remove it")
    try:  # IMREAD_COLOR turns gray, palette, RGBA, CMYK, 16-bit into 8-bit BGR and applies EXIF rotation
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as exc:  # OpenCV's own refusal (its pixel limit, a broken codec stream)
        reason = str(exc).strip().splitlines()[-1][:120]
        raise EdgecnnError(f"{path} cannot be decoded ({reason}); remove it or save it again") from exc
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
    """(width, height) read from the header alone, before decoding; None when no reader knows the format.

    Pillow's `Image.open` is lazy: it parses the header of every format it knows (WebP, TIFF, BMP,
    PNM...) without decoding pixels. PNG and JPEG are also read by hand, so the check holds without it.
    """
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
    return _pillow_size(data)


def _pillow_size(data: np.ndarray) -> tuple[int, int] | None:
    import io

    try:
        from PIL import Image
    except ImportError:  # then OpenCV's own pixel limit refuses bombs (caught in read_image)
        return None
    try:
        with _PILLOW_LIMIT, Image.open(io.BytesIO(data.tobytes())) as image:
            return image.size
    except Exception:  # noqa: BLE001 - an unknown or damaged header: OpenCV decides
        return None


class _NoPillowLimit:
    """Pillow refuses (or warns about) big images in `open` itself; we want the size, and compare it
    with our own limit. A lock, as the limit is a module global and images are read from threads."""

    def __init__(self) -> None:
        import threading

        self.lock, self.saved = threading.Lock(), None

    def __enter__(self) -> None:
        from PIL import Image

        self.lock.acquire()
        self.saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None

    def __exit__(self, *exc: object) -> None:
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = self.saved
        self.lock.release()


_PILLOW_LIMIT = _NoPillowLimit()


def iter_image_files(folder: Path) -> Iterator[Path]:
    """Image files under `folder`, sorted, following no symlinked folders (no loops)."""
    yield from image_files_and_metadata(folder)[0]


def image_files_and_metadata(folder: Path) -> tuple[list[Path], int]:
    """Image files under `folder`, sorted, and how many macOS metadata files were left out."""
    images, metadata = [], 0
    for path in sorted(folder.rglob("*")):
        if is_macos_metadata(path):
            metadata += 1
        elif is_image_file(path):
            images.append(path)
    return images, metadata


def is_macos_metadata(path: Path) -> bool:
    """AppleDouble `._x.jpg` (a Mac's resource fork beside each file on a non-Mac disk) and `.DS_Store`:
    never images, so ignored rather than reported as unreadable ones."""
    return path.name.startswith("._") or path.name == ".DS_Store"
