"""Recording off the hot path: the annotated video and the JSONL lines are written on their own threads.

    jsonl = BackgroundWriter("--jsonl", JsonlWriter(path), capacity=4096)
    jsonl.put(record)   # never waits: when the writer is behind, the item is dropped and counted

Each output has one thread, at a lower CPU priority than the loop, and a bounded queue. A camera
loop must never wait for an encoder or a slow disk, so `put` drops what does not fit (`dropped`
counts it) instead of blocking; what was queued is still written when the writer is closed. A file
read frame by frame has no newer frame to lose, so there `wait=True`: the loop waits for the writer and
the recording holds every frame (the demo's --save dropped 3 of 83 and 12 of 185 frames before).
Files appear under a temporary name and are renamed on `close`: a crash never leaves half a file.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from pathlib import Path
from typing import Any, Protocol

from edgecnn.runtime.errors import EdgecnnError

_CLOSE = object()
WRITER_NICE = 10  # on a busy CPU an encoder at nice 10 gets ~10 % of a core next to the loop's threads


class Output(Protocol):
    def write(self, item: Any) -> None: ...

    def close(self) -> None: ...


class JsonlWriter:
    """One JSON line per record, under a temporary name until `close`."""

    def __init__(self, path: Path) -> None:
        from edgecnn.runtime.outputs import AtomicPath

        self.path = Path(path)
        self._target = AtomicPath(self.path)
        self.file = self._target.temp.open("w", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record) + "\n")

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()
            self._target.commit()


class BackgroundWriter:
    """An `Output` driven by its own thread through a bounded queue; full queue = item dropped."""

    def __init__(self, option: str, output: Output, capacity: int, wait: bool = False) -> None:
        self.option, self.output, self.wait = option, output, wait
        self.written = self.dropped = 0
        self.error: BaseException | None = None
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=capacity)
        self._thread = threading.Thread(target=self._run, name=f"edgecnn-write{option}", daemon=True)
        self._thread.start()

    def put(self, item: Any) -> bool:
        """Queue one item; False (and counted) when the writer is behind, unless `wait`. Raises a
        writer's error."""
        if self.error is not None:
            raise EdgecnnError(f"writing {self.option} failed: {self.error}; check the disk and the path")
        try:
            self._queue.put(item, block=self.wait)
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def close(self) -> None:
        """Write what is queued, then close the output (rename it into place)."""
        self._queue.put(_CLOSE)  # blocks only while the queue is full, i.e. until the writer takes one
        self._thread.join()
        self.output.close()

    def _run(self) -> None:
        _lower_priority()
        while True:
            item = self._queue.get()
            if item is _CLOSE:
                return
            if self.error is not None:
                continue  # drain, so close() is never stuck behind a dead writer
            try:
                self.output.write(item)
                self.written += 1
            except Exception as exc:  # noqa: BLE001 - reported to the loop by put() and the summary
                self.error = exc


def _lower_priority() -> None:
    """Let inference and capture have the cores first: a writer gets what they leave (Linux: per thread)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WRITER_NICE)
    except (AttributeError, OSError):  # not Linux, or not allowed: the queue bound still protects the loop
        pass


class AnnotatedVideo:
    """An mp4 of annotated frames; frames come undrawn (drawn here, off the loop) or already drawn."""

    def __init__(self, path: Path, fps: float, min_prob: float) -> None:
        from edgecnn.runtime.video import AtomicVideoWriter

        self.video, self.min_prob = AtomicVideoWriter(path, fps), min_prob

    def write(self, item: tuple[Any, Any, Any, dict[str, float], bool]) -> None:
        """`item` = (frame, annotated frame or None, top predictions, timings for the footer, unknown)."""
        from edgecnn.runtime.overlay import draw_overlay

        image, annotated, top, stats, unknown = item
        if annotated is None:
            annotated = draw_overlay(image, top, self.min_prob, stats, unknown)
        self.video.write(annotated)

    def close(self) -> None:
        self.video.close()
