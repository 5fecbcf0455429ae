"""The camera page's record button: while a viewer holds it, frames go to `DATA/LABEL/` as training images.

The page renews its hold every half second; a hold not renewed within `LEASE` seconds ends by itself, so
a viewer who closes the tab mid-press never leaves the camera recording. Frames are saved at most
`per_second` a second, whole, through `outputs.write_new` (atomic, never replacing) on a background
writer, so the camera loop never waits for the disk.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.images import iter_image_files
from edgecnn.runtime.core.outputs import check_writable, write_new
from edgecnn.runtime.live.capture import check_label, encode_jpeg
from edgecnn.runtime.live.recording import BackgroundWriter

LEASE = 1.5  # seconds a press lasts without a renewal from the page
MAX_LABELS = 64  # distinct labels one run keeps counts for: 3000 grew memory and /api/state without bound


class _Frames:
    """The background writer's output: one JPEG per item into its class folder."""

    def __init__(self, root: Path, counts: Counter[str]) -> None:
        self.root, self.counts, self.session = root, counts, time.strftime("%Y%m%d-%H%M%S")
        self.refused = 0  # frames whose class folder became a file while recording

    def write(self, item: tuple[np.ndarray, str, int]) -> None:
        image, label, frame = item
        folder = self.root / label
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):  # made a file since the page chose it: skip, go on
            self.refused += 1
            return
        write_new(folder, f"{label}-{self.session}-{frame:06d}", ".jpg", encode_jpeg(image, 92))
        self.counts[label] += 1

    def close(self) -> None:
        pass


class Recorder:
    """Holds who is recording what; `offer` is called by the camera thread with every result's frame."""

    def __init__(self, root: Path, per_second: float = 5.0) -> None:
        check_writable(root, "--record-to")
        self.root, self.interval = Path(root), 1.0 / per_second
        self.counts: Counter[str] = Counter()  # frames in each class folder: those there before, and ours
        self._label: str | None = None
        self._until = self._last = 0.0
        self._lock = threading.Lock()
        self._writer = BackgroundWriter("--record-to", _Frames(self.root, self.counts), 8)

    def hold(self, label: str | None) -> str | None:
        """Start or renew recording `label` (checked like `capture --label`); None stops. Returns it."""
        name = None if label is None else check_label(label)
        with self._lock:
            if name is not None and name not in self.counts:
                self.counts[name] = self._count_new(name)
            self._label, self._until = name, time.monotonic() + LEASE
        return name

    def _count_new(self, name: str) -> int:
        """Images already in a new label's folder; refuses a label the page cannot record into."""
        if len(self.counts) >= MAX_LABELS:
            raise EdgecnnError(f"this run already recorded {MAX_LABELS} labels; restart the camera for more")
        folder = self.root / name
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise EdgecnnError(f"{name!r} is a file in --record-to, not a class folder; pick another label")
        return sum(1 for _ in iter_image_files(folder)) if folder.is_dir() else 0

    @property
    def label(self) -> str | None:
        with self._lock:
            return self._label if self._label is not None and time.monotonic() < self._until else None

    def offer(self, image: np.ndarray | None, frame: int) -> None:
        label, now = self.label, time.monotonic()
        if label is None or image is None or now - self._last < self.interval:
            return
        if self._writer.put((image, label, frame)):
            self._last = now

    def state(self) -> dict[str, Any]:
        return {"label": self.label, "counts": dict(self.counts), "dropped": self._writer.dropped}

    def close(self) -> None:
        self._writer.close()
