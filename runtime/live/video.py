"""Frames for the camera, read on their own thread from any source (`edgecnn.runtime.live.sources`).

`VideoSource` keeps only the newest frame for live sources (webcams, streams), so a slow model never
works through a queue of stale frames; files go frame by frame unless `realtime` paces them at their
own FPS and drops like a camera. `vid_stride` N hands over every Nth frame of a file or folder (the
others are grabbed, never made into images; frame indices stay the source's own). Frames are fitted
to the model (`prepare`) on the capture thread, so decoding and `fit_frame` overlap the inference of
the previous frame. Live sources that fail reconnect with backoff and give up with an EdgecnnError
after `reconnect_timeout`; one started with `start(wait_for_open=False)` also keeps trying its first
connection that long. The time counts from the last frame (or from the first open): a read that waited,
every open and every reopened connection that sends no whole frame all count, so a stream that connects
but never yields a frame gives up too. Every wait is bounded.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.redact import mask_text
from edgecnn.runtime.live.sources import (
    Reader,
    Say,
    SourceSpec,
    VideoOptions,
    check_source,
    mask_url,
    open_reader,
    parse_source,
)

__all__ = ["Frame", "SourceSpec", "VideoOptions", "VideoSource", "check_source",
           "mask_url", "parse_source"]
FILE_QUEUE = 2  # frames decoded ahead of the model when reading a file frame by frame
MIN_OPEN_S = 1.0  # the shortest open a reconnect gets when little of --reconnect-timeout is left


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # HxWx3 uint8 BGR, as OpenCV decodes
    index: int  # position in the source, counting dropped frames
    timestamp: float  # seconds: media time for files and folders, wall clock (epoch) for live sources
    captured: float  # time.perf_counter() right after the read: where camera-to-result latency starts
    prepared: np.ndarray | None = None  # the model input, made on the capture thread when no frame drops


class VideoSource:
    """A source read on a thread: newest-frame slot for live/realtime, a short queue for files."""

    def __init__(self, source: str | int | Path, options: VideoOptions | None = None,
                 prepare: Callable[[np.ndarray], np.ndarray] | None = None, say: Say = print,
                 opener: Callable[[], Reader] | None = None,
                 on_ready: Callable[[], None] | None = None) -> None:
        self.spec = parse_source(source)
        self.options = options or VideoOptions()
        self.say = say
        self.drops = self.spec.live or self.options.realtime
        self.stride = 1 if self.spec.live else self.options.vid_stride  # a live source has only "now"
        self._prepare = prepare  # ~0.1 ms a frame: cheap enough even for frames a live source drops
        self._on_ready = on_ready or (lambda: None)  # told when a frame, the end or an error is there
        self._opener = opener
        self._open = opener or (lambda: open_reader(self.spec, self.options, say))
        self._cond = threading.Condition()
        self._frames: deque[Frame] = deque()
        self._stop = threading.Event()
        self._ended, self._error = False, None
        self._index, self._started, self._lost_since = 0, 0.0, None
        self._frame_clock = 0.0  # perf_counter of the last frame (or the first open): the reconnect clock
        self._loop_offset, self._read_this_pass = 0.0, 0  # `loop`: media time of the passes before
        self._last_media_time = 0.0
        self.frames_delivered = self.frames_dropped = self.frames_skipped = self.reconnects = 0
        self._reader: Reader | None = None
        self._thread = threading.Thread(target=self._run, name="edgecnn-capture", daemon=True)

    @property
    def frames_read(self) -> int:
        """Frames of the source gone past: handed over, dropped (live) or skipped (`vid_stride`)."""
        return self.frames_delivered + self.frames_dropped + self.frames_skipped

    @property
    def fps(self) -> float:
        return self._reader.fps if self._reader is not None else 30.0

    def start(self, wait_for_open: bool = True) -> VideoSource:
        """Open the source, then read it on the thread; a live source may instead be opened there."""
        if self.spec.live and self.options.vid_stride > 1:
            self.say(f"note: --vid-stride {self.options.vid_stride} applies to files and folders; "
                     f"{self.spec.name} is live, so each newest frame is taken")
        self._frame_clock = time.perf_counter()
        if wait_for_open or not self.spec.live:
            self._reader = self._open()  # in the caller: a bad source fails here, before any window opens
        self._started = time.perf_counter()
        self._thread.start()
        return self

    @property
    def finished(self) -> bool:
        """True once the capture thread has stopped (end of the source, close or an error)."""
        with self._cond:
            return self._ended and not self._frames

    def get(self, timeout: float | None = None) -> Frame | None:
        """The next frame (newest for live sources); None at the end; EdgecnnError if the source fails."""
        timeout = timeout or self._patience()
        deadline = time.perf_counter() + timeout
        with self._cond:
            while not self._frames:
                if self._error is not None:
                    raise self._error
                if self._ended:
                    return None
                left = deadline - time.perf_counter()
                if left <= 0:
                    raise EdgecnnError(f"no frame from {self.spec.name} for {timeout:.0f} s; "
                                       "check the source")
                self._cond.wait(min(left, 0.25))
            self.frames_delivered += 1
            frame = self._frames.popleft()
            self._cond.notify_all()
        if not self.drops:  # a file read frame by frame: no camera waits, latency starts when taken
            frame = replace(frame, captured=time.perf_counter())
        return frame

    def ready(self) -> bool:
        """True when `get` would return at once (a frame, the end or an error)."""
        with self._cond:
            return bool(self._frames) or self._ended or self._error is not None

    def close(self) -> None:
        """Stop reading; a capture stuck in a driver call is left to die with the process."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=self.options.read_timeout + 1.0)
        elif self._reader is not None:
            self._reader.close()

    def __enter__(self) -> VideoSource:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _patience(self) -> float:
        if self.spec.live:
            return self.options.reconnect_timeout + self.options.open_timeout + self.options.read_timeout
        return max(10.0, self.options.read_timeout * 2, 2.0 / self.fps)  # slow slideshows wait longer

    # -- the capture thread --------------------------------------------------------------------
    def _run(self) -> None:
        try:
            if self._reader is None and not self._connect():
                return
            while not self._stop.is_set():
                frame = self._next_frame()
                if frame is None:
                    break
                self._publish(frame)
        except EdgecnnError as exc:
            self._error = exc
        except Exception as exc:  # noqa: BLE001 - a driver error ends the source with a message, not a hang
            message = f"reading {self.spec.name} failed: {exc}"
            self._error = EdgecnnError(mask_text(message, str(self.spec.target)))
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()
            if self._reader is not None:
                self._reader.close()
            self._on_ready()

    def _next_frame(self) -> Frame | None:
        if self._index and not self._skip_stride() and not self._rewind():
            return None
        while True:
            self._pace()
            image, media_time = self._reader.read()
            if image is not None:
                break
            if self.spec.live:
                if not self._reconnect():
                    return None
            elif not self._rewind():
                return None
        captured = time.perf_counter()
        self._lost_since, self._frame_clock = None, captured
        self._index += 1
        prepared = self._prepare(image) if self._prepare is not None else None
        timestamp = time.time() if self.spec.live else self._loop_offset + media_time
        self._read_this_pass += 1
        self._last_media_time = media_time
        return Frame(image, self._index - 1, timestamp, captured, prepared)

    def _rewind(self) -> bool:
        """`loop`: open a file or folder again at its end (frame indices and media time go on counting);
        False without `loop`, when stopped, or when a pass gave no frame at all (nothing to repeat)."""
        if not self.options.loop or self._stop.is_set() or self._read_this_pass == 0:
            return False
        self._reader.close()
        self._reader = self._open()
        self._loop_offset += self._last_media_time + 1.0 / self._reader.fps
        self._read_this_pass = 0
        return True

    def _skip_stride(self) -> bool:
        """`vid_stride`: grab the frames between two handed-over ones (an FFmpeg grab decodes but makes no
        image; a folder's grab reads no file); False at the end of the source or when stopped."""
        for _ in range(self.stride - 1):
            if self._stop.is_set() or not self._reader.grab():
                return False
            self._index += 1
            with self._cond:
                self.frames_skipped += 1
        return True

    def _pace(self) -> None:
        """Realtime files: wait for the frame's time; skip the frames whose time has passed."""
        if not self.options.realtime or self.spec.live:
            return
        interval = 1.0 / self._reader.fps
        while time.perf_counter() > self._started + (self._index + 1) * interval:
            if not self._reader.grab():
                return
            self._index += 1
            with self._cond:
                self.frames_dropped += 1
        self._stop.wait(max(0.0, self._started + self._index * interval - time.perf_counter()))

    def _publish(self, frame: Frame) -> None:
        with self._cond:
            if self.drops:
                self.frames_dropped += len(self._frames)
                self._frames.clear()
            while len(self._frames) >= FILE_QUEUE and not self._stop.is_set():
                self._cond.wait(0.25)
            self._frames.append(frame)
            self._cond.notify_all()
        self._on_ready()

    def _reconnect(self) -> bool:
        """Reopen a live source with backoff; False when stopped, EdgecnnError past the time limit."""
        self._reader.close()
        limit = self.options.reconnect_timeout
        if self._index == 0:  # it opened (perhaps again) but no whole frame ever came
            failure = (f"no frame from {self.spec.name} within {limit:.0f} s of --reconnect-timeout (it "
                       "connects but sends no whole frame); check the stream, or give a longer one")
        else:
            failure = (f"lost {self.spec.name} and could not reconnect within {limit:.0f} s; "
                       "check the camera or stream and start again")
        if self._lost_since is None:
            self._lost_since = self._frame_clock  # the read that waited for the frame counts too
            self.say(f"lost {self.spec.name}; reconnecting (giving up after {limit:.0f} s)")
        elif time.perf_counter() - self._lost_since > limit:  # reopened, yet again no frame
            raise EdgecnnError(failure)
        if self._retry_open(failure):
            self.reconnects += 1
            self.say(f"reconnected to {self.spec.name}")
            return True
        return False

    def _connect(self) -> bool:
        """The first connection of a source started without waiting for it: retried like a reconnect."""
        try:
            self._reader = self._open()
            return True
        except EdgecnnError as first:
            limit = self.options.reconnect_timeout
            self._lost_since = self._frame_clock  # the first open's wait counts
            self.say(f"{first}; retrying for up to {limit:.0f} s")
            if self._retry_open(f"{first}; gave up after {limit:.0f} s of retrying"):
                self.say(f"connected to {self.spec.name}")
                return True
            return False

    def _retry_open(self, failure: str) -> bool:
        """Open with backoff until it works (True), we are stopped (False) or time runs out (EdgecnnError)."""
        delay = 0.25
        while not self._stop.is_set():
            try:
                self._reader = self._open_within(self.options.reconnect_timeout
                                                 - (time.perf_counter() - self._lost_since))
                return True
            except EdgecnnError:
                pass
            if time.perf_counter() - self._lost_since + delay > self.options.reconnect_timeout:
                raise EdgecnnError(failure)
            self._stop.wait(delay)
            delay = min(delay * 2, 4.0)
        return False

    def _open_within(self, seconds: float) -> Reader:
        """Open with the open timeout cut to what is left of the reconnect time (at least MIN_OPEN_S)."""
        if self._opener is not None:
            return self._opener()
        timeout = min(self.options.open_timeout, max(seconds, MIN_OPEN_S))
        return open_reader(self.spec, replace(self.options, open_timeout=timeout), self.say)
