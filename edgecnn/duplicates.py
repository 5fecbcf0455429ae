"""Near-duplicate images (frames of one clip, burst shots) grouped before the train/val split, so that
validation never scores a near-copy of a training image.

Two keys, joined transitively (union-find), within a class:
- the source: `edgecnn capture` names frames LABEL-YYYYmmdd-HHMMSS-FRAME.jpg, so frames of one capture
  session (one clip or one sitting) are one group, however much the camera moved between them;
- the content: a 16x16 grey thumbnail, mean-removed and unit-length, cosine >= DUPLICATE_COSINE (copies,
  re-encodes, burst shots). Chosen over pooled-feature cosine because the split runs before any
  feature pass; thumbnails cost one decode per image.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

THUMBNAIL = 16
# the closest two of the 121 distinct sample photos score 0.88; frames 4 apart in samples/videos/cup.mp4
# 0.98-1.00 while the camera is still, 0.74-0.96 while it moves (those only the capture session groups)
DUPLICATE_COSINE = 0.95
MOSTLY = 0.5  # warn when more than this share of a folder's images lies in groups of MANY or more
MANY = 3
CAPTURED = re.compile(r"^(.+-\d{8}-\d{6})-\d+$")  # runtime/live/capture.py's LABEL-SESSION-FRAME


def thumbnail(path: Path) -> np.ndarray | None:
    """The unit-length, mean-removed grey thumbnail of an image, or None when it cannot be decoded."""
    import cv2

    from edgecnn.runtime.core.images import read_image

    try:
        image = read_image(path)
    except Exception:  # noqa: BLE001 - an unreadable image is its own group; drop_unreadable names it
        return None
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    small = cv2.resize(grey, (THUMBNAIL, THUMBNAIL), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    small -= small.mean()
    norm = float(np.linalg.norm(small))
    return small / norm if norm > 1e-6 else None


def group_ids(paths: Sequence[Path], labels: Sequence[int]) -> list[int]:
    """A group number per image: near-duplicates of one class share it (union-find over thumbnail pairs)."""
    keys = [thumbnail(path) for path in paths]
    parent = list(range(len(paths)))

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    usable = [i for i, key in enumerate(keys) if key is not None]
    if usable:
        matrix = np.stack([keys[i] for i in usable])
        similar = matrix @ matrix.T >= DUPLICATE_COSINE
        for a, b in zip(*np.nonzero(np.triu(similar, 1)), strict=True):
            first, second = usable[a], usable[b]
            if labels[first] == labels[second]:
                parent[root(first)] = root(second)
    sessions: dict[tuple[int, str], int] = {}
    for index, path in enumerate(paths):
        found = CAPTURED.match(Path(path).stem)
        if found:
            first = sessions.setdefault((labels[index], found.group(1)), index)
            parent[root(index)] = root(first)
    return [root(i) for i in range(len(paths))]


def mostly_duplicates(groups: Sequence[int]) -> float:
    """Share of images in groups of MANY or more."""
    sizes: dict[int, int] = {}
    for group in groups:
        sizes[group] = sizes.get(group, 0) + 1
    return sum(1 for group in groups if sizes[group] >= MANY) / max(1, len(groups))
