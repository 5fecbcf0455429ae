"""--clips DIR: one H.264 MP4 per event, from --pre-roll seconds before the change to --post-roll after.

    clips = ClipSink(Path("clips"), pre_roll=3.0, post_roll=3.0)   # a loop `Sink` and the tracker's
    StateTracker(consensus, sinks, clips=clips)                    # `ClipMaker`

The loop only queues each captured frame (bounded; a full queue drops the frame, counted). One worker
thread JPEG-encodes frames into each camera's pre-roll buffer and, while a clip is open, encodes them with
PyAV (libx264, ultrafast, zerolatency, yuv420p, +faststart) into a temporary file that is renamed when the
clip is complete. A clip ends --post-roll seconds after its change, at the camera's next event, or at the
end of the run. A full disk or any write error drops that clip (counted) and the camera goes on.

An event names its clip when it is sent, at the change, seconds before the clip is complete: `clip` is
the name the file will have once written. A clip dropped (write error, full disk) or never made (no frame
of its camera reached the worker) is counted in `clips_dropped` and its name listed in `clips_missing`
(the summary), so clips_written + clips_dropped is the number of events that named a clip.

Length: a clip holds the frames from `change - pre_roll` to `change + post_roll` (media time, both ends
inclusive within SLACK_S), whatever the worker's lag when the event arrived, so the same rolls give the
same frame count at a steady frame rate. It is shorter only when the next event or the end of the run comes
first, when the source started less than pre-roll before the change, or when the loop outran the worker
and FRAME_QUEUE was full (`clip_frames_dropped` counts those frames).

Bound: a camera's buffer holds the frames of the last pre-roll + `lag` seconds (CONSENSUS_LAG plus the
consensus' --min-duration: an event is known that long after its change) as JPEG (quality
85), at most BUFFER_BYTES (64 MiB; a 640x480 JPEG is ~40-60 KB, so 5 s at 30 fps is ~9 MB), oldest
dropped first. JPEG rather than raw frames: raw 640x480 BGR is 0.9 MB a frame, 138 MB for 5 s at 30 fps.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from edgecnn.runtime.core.outputs import AtomicPath
from edgecnn.runtime.live.events import Event
from edgecnn.runtime.live.frames import LiveUpdate
from edgecnn.runtime.live.h264 import H264File

BUFFER_BYTES = 64 * 2**20  # per camera: the bound for 5 s of 640x480
CONSENSUS_LAG = 2.0  # seconds kept beyond the pre-roll (+ --min-duration): an event is known K frames after
# its change
# media times are sums of frame durations: at 30 fps, frame c-15 read as 0.5 s + 1e-16 before frame c, so an
# exact comparison dropped a boundary frame of ~1 clip in 5 (one cause of 8-11 frames for the same rolls)
SLACK_S = 1e-3
FRAME_QUEUE = 64  # frames waiting for the worker; more are dropped (counted), the loop never waits
JPEG_QUALITY = 85
_STOP = object()


@dataclass(frozen=True)
class _Frame:
    camera: str
    frame: int
    timestamp: float  # seconds into the source (media time for files, wall clock for live sources)
    jpeg: bytes


class NoFrame(Exception):
    """A clip ended before any frame of its camera reached it: it is dropped like a failed write."""


class _Clip:
    """One open MP4: frames go in with their media time; `close` renames it into place."""

    def __init__(self, path: Path, start: float, until: float) -> None:
        self.path, self.start, self.until = path, start, until
        self.target = AtomicPath(path)
        self.video = H264File(self.target.temp)  # milliseconds of media time

    def add(self, image: np.ndarray, timestamp: float) -> None:
        self.video.add(image, int(round((timestamp - self.start) * 1000)))

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
                 lag: float = CONSENSUS_LAG) -> None:
        self.folder, self.pre_roll, self.post_roll, self.lag = Path(folder), pre_roll, post_roll, lag
        self.folder.mkdir(parents=True, exist_ok=True)
        self.written = self.dropped = self.frames_dropped = 0
        self.errors: list[str] = []  # why clips were dropped, for the summary (said once)
        self.missing: list[str] = []  # names of clips an event named that were never written
        self._frames: queue.Queue[Any] = queue.Queue(maxsize=FRAME_QUEUE)
        self._begins: queue.Queue[tuple[Event, Path]] = queue.Queue()
        self._waiting: list[tuple[Event, Path]] = []  # begun, the worker not yet at their change frame
        self._buffers: dict[str, deque[_Frame]] = {}
        self._open: dict[str, _Clip] = {}
        self._counter = 0
        self._closed = False
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

    def begin(self, event: Event) -> str | None:
        """The clip's file name (camera, UTC time, a counter: never an existing name)."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        while True:
            self._counter += 1
            path = self.folder / f"{event.camera}-{stamp}-{self._counter:04d}.mp4"
            if not path.exists():
                break
        self._begins.put((event, path))
        return path.name

    def finish(self, stopped_by: str) -> None:
        self.close()

    def close(self) -> None:
        """Encode what is queued, close every open clip; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._frames.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
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
        import cv2

        jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1].tobytes()
        buffer = self._buffers.setdefault(camera, deque())
        buffer.append(_Frame(camera, frame, timestamp, jpeg))
        while buffer and (timestamp - buffer[0].timestamp > self.pre_roll + self.lag
                          or sum(len(f.jpeg) for f in buffer) > BUFFER_BYTES):
            buffer.popleft()
        clip = self._open.get(camera)
        if clip is not None and timestamp > clip.until + SLACK_S:
            self._end(camera)
        elif clip is not None:
            self._write(camera, clip.add, image, timestamp)

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
        import cv2

        clip = self._open[camera] = _Clip(path, start, until)
        for frame in kept:
            clip.add(cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR), frame.timestamp)

    def _end(self, camera: str) -> None:
        clip = self._open.get(camera)
        if clip is not None and self._write(camera, clip.close):
            self.written += 1
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
        self.dropped += 1
        self.missing.append(name)
        if not self.errors:
            self.errors.append(why)

    def counts(self) -> dict[str, Any]:
        """The summary's clip figures; `clips_missing`: names events gave that were never written."""
        return {"clips_written": self.written, "clips_dropped": self.dropped,
                "clip_frames_dropped": self.frames_dropped} | (
                    {"clips_missing": list(self.missing)} if self.missing else {})
