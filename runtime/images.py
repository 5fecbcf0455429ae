"""Decoding image files with OpenCV: robust to odd formats, names and damaged files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edgecnn.runtime.errors import EdgecnnError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})


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
    # IMREAD_COLOR turns gray, palette, RGBA, CMYK and 16-bit files into 8-bit BGR and applies EXIF rotation.
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise EdgecnnError(f"{path} is not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _truncated_jpeg(path: Path, data: np.ndarray) -> bool:
    if path.suffix.lower() not in (".jpg", ".jpeg") or data[:2].tobytes() != b"\xff\xd8":
        return False
    tail = data[-64:].tobytes().rstrip(b"\x00\r\n ")
    return not tail.endswith(b"\xff\xd9")


def iter_image_files(folder: Path) -> Iterator[Path]:
    """Image files under `folder`, sorted, following no symlinked folders (no loops)."""
    for path in sorted(folder.rglob("*")):
        if is_image_file(path):
            yield path
