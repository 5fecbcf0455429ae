"""`camera --collect DIR`: keep the frames the model was unsure about, to label them and fine-tune again.

A sink of the camera loop: a frame whose result is "uncertain" (top-1 below --min-prob) or unknown (the
model's unknown detector, where it has one) is saved whole as JPEG beside a JSON sidecar (predictions,
unknown score, times, source with credentials masked). At most one frame per source every `interval`
seconds of the source's time and `limit` in all; encoding and writing happen on a background thread,
so the camera never waits for the disk.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from edgecnn.runtime.core.outputs import check_distinct, check_output_path, check_writable, write_new
from edgecnn.runtime.live.capture import encode_jpeg
from edgecnn.runtime.live.frames import FrameRecord, LiveUpdate
from edgecnn.runtime.live.overlay import UNCERTAIN
from edgecnn.runtime.live.recording import BackgroundWriter

QUEUE = 8  # frames waiting for the disk; more are dropped and counted


def reason(record: FrameRecord) -> str | None:
    """Why this result is worth a person's look: "unknown", "uncertain", or None."""
    if record.unknown:
        return "unknown"
    return UNCERTAIN if record.label == UNCERTAIN else None


class _Files:
    """The BackgroundWriter's output: one JPEG + sidecar per item."""

    def __init__(self, folder: Path, session: str) -> None:
        self.folder, self.session = folder, session

    def write(self, item: tuple[np.ndarray, FrameRecord, str, int]) -> None:
        image, record, why, source_number = item
        stem = f"{why}-{self.session}-s{source_number}-{record.frame:06d}"
        path = write_new(self.folder, stem, ".jpg", encode_jpeg(image, 92))
        sidecar = {**record.to_json(), "reason": why, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        write_new(self.folder, path.stem, ".json", json.dumps(sidecar, indent=1).encode())

    def close(self) -> None:
        pass


class Collector:
    """The sink: picks the frames, rate-limits per source, hands them to a background writer."""

    def __init__(self, folder: Path, limit: int = 100, interval: float = 1.0) -> None:
        check_output_path(folder, "--collect", folder=True)
        check_writable(folder, "--collect")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.limit, self.interval = limit, interval
        self.queued = 0
        self._last: dict[str, float] = {}  # source -> timestamp of its last collected frame
        self._numbers: dict[str, int] = {}
        self._checked: set[str] = set()  # sources already known not to hold --collect
        session = time.strftime("%Y%m%d-%H%M%S")
        self._writer = BackgroundWriter("--collect", _Files(self.folder, session), QUEUE)

    @property
    def saved(self) -> int:
        return self._writer.written

    @property
    def dropped(self) -> int:
        return self._writer.dropped

    def publish(self, update: LiveUpdate) -> None:
        record = update.record
        if record.source not in self._checked:
            self._check_source(record.source)
        why = reason(record)
        if why is None or update.image is None or self.queued >= self.limit:
            return
        source, now = record.source, record.timestamp
        if now - self._last.get(source, -float("inf")) < self.interval:
            return
        number = self._numbers.setdefault(source, len(self._numbers) + 1)
        if self._writer.put((update.image, record, why, number)):
            self._last[source] = now
            self.queued += 1

    def _check_source(self, source: str) -> None:
        """A file or folder source's first result, before anything is written: --collect is not in it."""
        if Path(source).exists():
            check_distinct({"--collect": self.folder}, {"--source": Path(source)})
        self._checked.add(source)

    def finish(self, stopped_by: str) -> None:
        pass  # the frames are flushed by `close`, which the command calls

    def close(self) -> None:
        self._writer.close()

    def describe(self) -> str:
        dropped = f" ({self.dropped} dropped: the disk was behind)" if self.dropped else ""
        return f"collected {self.saved} uncertain or unknown frames into {self.folder}{dropped}"

    def __enter__(self) -> Collector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
