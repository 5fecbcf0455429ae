"""--clips DIR: one H.264 MP4 per event, from --pre-roll seconds before the change to --post-roll after.

    clips = ClipSink(Path("clips"), pre_roll=3.0, post_roll=3.0)   # a loop `Sink` and the tracker's
    StateTracker(consensus, sinks, clips=clips)                    # `ClipMaker`

The loop only queues a reference to each captured frame (bounded; a full queue drops the frame, counted).
One worker thread converts each frame to I420 (yuv420p, the encoder's own input) into its camera's pre-roll
buffer and, while a clip is open, hands the same I420 frame to PyAV (libx264, ultrafast, zerolatency,
+faststart), writing a temporary file that is renamed when the clip is complete. A clip ends --post-roll
seconds after its change, at the camera's next event, or at the end of the run. A full disk or any write
error drops that clip (counted) and the camera goes on.

An event names its clip when it is sent, at the change, seconds before the clip is complete: `clip` is
the name the file will have once written. A clip dropped (write error, full disk, its name taken by
another process, the worker failing) or never made (no frame of its camera reached the worker) is told to
the event's sinks (`begin`'s `dropped`: a `ClipDropped` notice after the event), counted in
`clips_dropped` and its name listed in `clips_missing` (the summary): clips_written + clips_dropped is the
number of events that named a clip. After `close` (or the worker's failure) `begin` names no clip.

Names: camera, UTC second, process id and a counter shared by the process's ClipSinks, so two processes
(or two sinks) on one folder in the same second never pick the same name; the finished file is linked to
it (never replacing a file: `AtomicPath.commit_new`), and a name taken all the same drops that clip, told.

Length: a clip holds the frames from `change - pre_roll` to `change + post_roll` (media time, both ends
inclusive within SLACK_S), whatever the worker's lag when the event arrived, so the same rolls give the
same frame count at a steady frame rate. It is shorter only when the next event or the end of the run comes
first, when the source started less than pre-roll before the change, or when the loop outran the worker
and FRAME_QUEUE was full (`clip_frames_dropped` counts those frames).

Bound: a camera's buffer holds the frames of the last pre-roll + `lag` seconds (CONSENSUS_LAG plus the
consensus' --min-duration: an event is known that long after its change) as I420, and at most `buffer_mb`
(--clips-buffer-mb, default BUFFER_MB = 64 MiB), oldest dropped first. A 640x480 I420 frame is 450 KiB:
64 MiB holds 145 of them, 4.8 s at 30 fps, so the default 3 s pre-roll is whole when its event comes
within 1.8 s of its change (the default consensus 3/5 and 0.3 s: ~0.4 s); a longer pre-roll, a later
event (a long --min-duration) or a bigger frame needs a bigger cap (pre-roll + lag seconds x fps x
width x height x 1.5 bytes). I420 rather than JPEG (issue 27): the worker's CPU a 640x480 box.mp4 frame
is 0.7-1.1 ms against 1.75 with JPEG at quality 85 (conversion alone: 0.5 against 1.5; loaded 2-core
machine), CPU it took from the model's threads (--clips ran at 0.87x the FPS without), the clip needs no
decode and no second conversion, and nothing is lost to a JPEG before the H.264 encode; raw BGR would be
900 KiB a frame.
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from edgecnn.runtime.core.outputs import AtomicPath
from edgecnn.runtime.live.events import ClipDropped, Event
from edgecnn.runtime.live.frames import LiveUpdate
from edgecnn.runtime.live.h264 import H264File, to_i420

BUFFER_MB = 64.0  # MiB per camera (--clips-buffer-mb): the bound for ~5 s of 640x480
CONSENSUS_LAG = 2.0  # seconds kept beyond the pre-roll (+ --min-duration): an event is known K frames after
# its change
# media times are sums of frame durations: at 30 fps, frame c-15 read as 0.5 s + 1e-16 before frame c, so an
# exact comparison dropped a boundary frame of ~1 clip in 5 (one cause of 8-11 frames for the same rolls)
SLACK_S = 1e-3
FRAME_QUEUE = 64  # frames waiting for the worker; more are dropped (counted), the loop never waits
_STOP = object()
_NUMBERS = itertools.count(1)  # clip numbers, one sequence for the process's ClipSinks (thread-safe)


@dataclass(frozen=True)
class _Frame:
    camera: str
    frame: int
    timestamp: float  # seconds into the source (media time for files, wall clock for live sources)
    yuv: np.ndarray  # I420 (h264.to_i420): height * 3/2 rows


class NoFrame(Exception):
    """A clip ended before any frame of its camera reached it: it is dropped like a failed write."""


class _Clip:
    """One open MP4: frames go in with their media time; `close` renames it into place."""

    def __init__(self, path: Path, start: float, until: float) -> None:
        self.path, self.start, self.until = path, start, until
        self.target = AtomicPath(path)
        self.video = H264File(self.target.temp)  # milliseconds of media time

    def add(self, yuv: np.ndarray, timestamp: float) -> None:
        self.video.add_i420(yuv, int(round((timestamp - self.start) * 1000)))

    def close(self) -> None:
        """Flush and rename into place; NoFrame (and nothing left behind) when no frame was written."""
        if not self.video.close():
            self.target.discard()
            raise NoFrame("no frame of the camera reached the clip")
        self.target.commit_new([self.path])
        self.target.discard()
        return True

    def abandon(self) -> None:
        self.video.abandon()
        self.target.discard()


class ClipSink:
    """A loop `Sink` (frames into the pre-roll buffers) and the tracker's `ClipMaker` (`begin`)."""

    def __init__(self, folder: Path, pre_roll: float = 3.0, post_roll: float = 3.0,
                 lag: float = CONSENSUS_LAG, buffer_mb: float = BUFFER_MB) -> None:
        self.folder, self.pre_roll, self.post_roll, self.lag = Path(folder), pre_roll, post_roll, lag
        self.buffer_bytes = int(buffer_mb * 2**20)  # per camera
        self.folder.mkdir(parents=True, exist_ok=True)
        self.written = self.dropped = self.frames_dropped = 0
        self.errors: list[str] = []  # why clips were dropped, for the summary (said once)
        self.missing: list[str] = []  # names of clips an event named that were never written
        self._frames: queue.Queue[Any] = queue.Queue(maxsize=FRAME_QUEUE)
        self._begins: queue.Queue[tuple[Event, Path]] = queue.Queue()
        self._waiting: list[tuple[Event, Path]] = []  # begun, the worker not yet at their change frame
        self._buffers: dict[str, deque[_Frame]] = {}
        self._buffered: dict[str, int] = {}  # bytes in each camera's buffer
        self._open: dict[str, _Clip] = {}
        self._named: dict[str, tuple[Event, Callable[[ClipDropped], None]]] = {}  # begun, not yet written
        self._lock = threading.Lock()  # `begin` against `close` and the worker's failure
        self._closed = self._closing = False  # no more clips; close() called
        self._thread = threading.Thread(target=self._run, name="edgecnn-clips", daemon=True)
        self._thread.start()

    def publish(self, update: LiveUpdate) -> None:
        if update.image is None or self._closed:
            return
        record = update.record
        try:
            self._frames.put_nowait((record.camera, record.frame, record.timestamp, update.image))
        except queue.Full:
            self.frames_dropped += 1

    def begin(self, event: Event, dropped: Callable[[ClipDropped], None] = lambda notice: None
              ) -> str | None:
        """The clip's file name (camera, UTC second, pid, a counter), or None once closed; `dropped` hears
        of it if the clip is dropped later (on the worker's thread, never from here)."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        while True:
            path = self.folder / f"{event.camera}-{stamp}-{os.getpid()}-{next(_NUMBERS):04d}.mp4"
            if not path.exists():
                break
        with self._lock:
            if self._closed:
                return None
            self._named[path.name] = (event, dropped)
            self._begins.put((event, path))
        return path.name

    def finish(self, stopped_by: str) -> None:
        self.close()

    def close(self) -> None:
        """Encode what is queued, close every open clip; idempotent."""
        with self._lock:
            if self._closing:
                return
            self._closed = self._closing = True
        while self._thread.is_alive():  # a failed worker takes nothing off a full queue
            try:
                self._frames.put(_STOP, timeout=0.2)
                break
            except queue.Full:
                continue
        self._thread.join()

    def _run(self) -> None:
        try:
            self._work()
        except Exception as exc:  # noqa: BLE001 - a bug: the clips begun are dropped (told), the camera goes on
            self._fail(f"the clip worker failed: {type(exc).__name__}: {exc}")

    def _fail(self, why: str) -> None:
        """The worker's end on an error: no more clips; every clip open or begun is dropped."""
        with self._lock:
            self._closed = True
        for clip in list(self._open.values()):
            clip.abandon()
            self._drop(clip.path.name, why)
        self._open.clear()
        while not self._begins.empty():
            self._waiting.append(self._begins.get_nowait())
        for _event, path in self._waiting:
            self._drop(path.name, why)
        self._waiting.clear()

    def _work(self) -> None:
        while True:
            item = self._frames.get()
            if item is _STOP:
                break
            self._take(*item)
            self._start_clips()
        self._start_clips(final=True)
        for camera in list(self._open):
            self._end(camera)

    def _take(self, camera: str, frame: int, timestamp: float, image: np.ndarray) -> None:
        yuv = to_i420(image)
        buffer = self._buffers.setdefault(camera, deque())
        buffer.append(_Frame(camera, frame, timestamp, yuv))
        self._buffered[camera] = self._buffered.get(camera, 0) + yuv.nbytes
        while len(buffer) > 1 and (timestamp - buffer[0].timestamp > self.pre_roll + self.lag
                                   or self._buffered[camera] > self.buffer_bytes):
            self._buffered[camera] -= buffer.popleft().yuv.nbytes
        clip = self._open.get(camera)
        if clip is not None and timestamp > clip.until + SLACK_S:
            self._end(camera)
        elif clip is not None:
            self._write(camera, clip.add, yuv, timestamp)

    def _start_clips(self, final: bool = False) -> None:
        """Open the clips whose change frame the worker has reached (it may lag the loop by FRAME_QUEUE
        frames: a clip opened early would miss its pre-roll); at the end, every clip still waiting."""
        while not self._begins.empty():
            self._waiting.append(self._begins.get_nowait())
        waiting, self._waiting, held = self._waiting, [], set()
        for event, path in waiting:
            buffer = self._buffers.get(event.camera, deque())
            reached = bool(buffer) and buffer[-1].frame >= event.frame
            if event.camera in held or not (reached or final):
                held.add(event.camera)  # a camera's clips open in their events' order
                self._waiting.append((event, path))
                continue
            if event.camera in self._open:  # the next event ends the camera's open clip
                self._end(event.camera)
            change = next((f.timestamp for f in buffer if f.frame >= event.frame),
                          buffer[-1].timestamp if buffer else 0.0)
            until = change + self.post_roll
            # the worker may already hold frames past `until` (a post-roll shorter than the event's lag)
            kept = [f for f in buffer if change - self.pre_roll - SLACK_S <= f.timestamp <= until + SLACK_S]
            start = kept[0].timestamp if kept else change
            self._write(event.camera, self._open_clip, event.camera, path, start, until, kept,
                        name=path.name)
            if buffer and buffer[-1].timestamp > until + SLACK_S:
                self._end(event.camera)

    def _open_clip(self, camera: str, path: Path, start: float, until: float, kept: list[_Frame]) -> None:
        clip = self._open[camera] = _Clip(path, start, until)
        for frame in kept:
            clip.add(frame.yuv, frame.timestamp)

    def _end(self, camera: str) -> None:
        clip = self._open.get(camera)
        if clip is not None and self._write(camera, clip.close):
            self.written += 1
            self._named.pop(clip.path.name, None)
        self._open.pop(camera, None)

    def _write(self, camera: str, step: Any, *args: Any, name: str | None = None) -> bool:
        """Run one write step; a full disk or other write error drops the camera's open clip (counted).
        `name`: the clip's, where the step opens it (no open clip to name it yet)."""
        try:
            step(*args)
            return True
        except Exception as exc:  # noqa: BLE001 - av.FFmpegError, OSError: the clip goes, the camera stays
            clip = self._open.pop(camera, None)
            if clip is not None:
                clip.abandon()
            self._drop(clip.path.name if clip is not None else str(name), f"{exc}")
            return False

    def _drop(self, name: str, why: str) -> None:
        """Count a dropped clip and tell its event's sinks."""
        self.dropped += 1
        self.missing.append(name)
        if not self.errors:
            self.errors.append(why)
        event, dropped = self._named.pop(name, (None, None))
        if event is not None and dropped is not None:
            try:
                dropped(ClipDropped.of(event, name, why))
            except Exception:  # noqa: BLE001 - a sink's own error (a full --events disk) reaches the loop
                pass  # at its next event or close; the clip worker goes on

    def counts(self) -> dict[str, Any]:
        """The summary's clip figures; `clips_missing`: names events gave that were never written."""
        return {"clips_written": self.written, "clips_dropped": self.dropped,
                "clip_frames_dropped": self.frames_dropped} | (
                    {"clips_missing": list(self.missing)} if self.missing else {})
