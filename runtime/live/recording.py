"""Recording off the hot path: the annotated video and the JSONL lines are written on their own threads.

    jsonl = BackgroundWriter("--jsonl", JsonlWriter(path), capacity=4096)
    jsonl.put(record)   # never waits: when the writer is behind, the item is dropped and counted

Each output has one thread, at a lower CPU priority than the loop, and a bounded queue. A camera
loop must never wait for an encoder or a slow disk, so `put` drops what does not fit (`dropped`
counts it) instead of blocking; what was queued is still written when the writer is closed. A file
read frame by frame has no newer frame to lose, so there `wait=True`: the loop waits for the writer and
the recording holds every frame (the demo's --save dropped 3 of 83 and 12 of 185 frames before).
Files appear under a temporary name and are renamed on `close`: a crash never leaves half a file.
Videos are H.264 (browsers play nothing else in an .mp4) through PyAV (runtime/live/h264.py) where it is
installed; without it, through OpenCV when its build can write H.264, else MPEG-4 Part 2 (`mp4v`, which
every build writes), said in one note.
"""

from __future__ import annotations

import functools
import json
import os
import queue
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.images import opencv
from edgecnn.runtime.core.outputs import AtomicPath
from edgecnn.runtime.live.h264 import H264File, pyav_available

_CLOSE = object()
WRITER_NICE = 10  # added to the loop's niceness: on a busy CPU such an encoder gets ~10 % of a core
H264_FOURCCS = ("avc1", "H264")  # OpenCV's FFmpeg knows H.264 by either name, depending on the build
FALLBACK_FOURCC = "mp4v"  # MPEG-4 Part 2: every OpenCV build writes it; browsers do not play it
PYAV_FOURCC = "avc1"  # what a file written through PyAV's libx264 is (the MP4 sample entry of H.264)


class Output(Protocol):
    def write(self, item: Any) -> None: ...

    def close(self) -> None: ...


STDOUT_NAMES = ("-", "/dev/stdout")  # `--jsonl -`: the records on standard output, as in every Unix tool


def is_stdout(path: Path | str | None) -> bool:
    return path is not None and str(path) in STDOUT_NAMES


class JsonlWriter:
    """One JSON line per record, under a temporary name until `close` (or on stdout, a line at a time).

    `append=True` (--append: a service that restarts): added to the end of `path` itself, each line
    flushed as it is written, so a run killed by the watchdog keeps every line it wrote and the next one
    keeps them all; a last line cut short by an earlier crash is ended first, so no record is glued to it.
    """

    def __init__(self, path: Path, append: bool = False) -> None:
        self.path = Path(path)
        self._target: AtomicPath | None = None
        if is_stdout(path):
            self.file = None
        elif append:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file = self.path.open("a", encoding="utf-8", buffering=1)  # line-buffered: a write a line
            if self.file.tell() > 0 and not _ends_a_line(self.path):
                self.file.write("\n")
        else:
            self._target = AtomicPath(self.path)
            self.file = self._target.temp.open("w", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        if self.file is None:  # sys.stdout at write time: the CLI's guarded stream (cli/streams.py)
            sys.stdout.write(json.dumps(record) + "\n")
            sys.stdout.flush()
            return
        try:
            self.file.write(json.dumps(record) + "\n")
        except OSError as error:
            self._fail(error)

    def close(self) -> None:
        if self.file is not None and not self.file.closed:
            try:
                self.file.close()  # flushes the last lines: a full disk may show only here
            except OSError as error:
                self._fail(error)
            if self._target is not None:
                self._target.commit()

    def _fail(self, error: OSError) -> None:
        """A full disk (or a file-size limit): remove the half file (appending: keep the earlier lines),
        say so in one line."""
        try:
            self.file.close()
        except OSError:
            pass  # the same full disk again; the file is removed next
        if self._target is None:
            raise EdgecnnError(f"cannot append to --jsonl {self.path}: {error.strerror}; free some space or "
                               "give another path (the lines written before are kept)") from None
        self._target.discard()
        raise EdgecnnError(f"cannot write --jsonl {self.path}: {error.strerror}; free some space or give "
                           "another path (nothing was kept)") from None


def _ends_a_line(path: Path) -> bool:
    with path.open("rb") as file:
        file.seek(-1, os.SEEK_END)
        return file.read(1) == b"\n"


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
        self._raise_error()
        try:
            self._queue.put(item, block=self.wait)
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def close(self) -> None:
        """Write what is queued, then close the output (rename it into place; EdgecnnError when that
        fails, e.g. a full disk while the encoder writes its index)."""
        self._queue.put(_CLOSE)  # blocks only while the queue is full, i.e. until the writer takes one
        self._thread.join()
        try:
            self.output.close()
        except EdgecnnError:
            raise
        except Exception as exc:
            raise EdgecnnError(f"writing {self.option} failed: {exc}; check the disk and the path") from exc
        self._raise_error()  # a write that failed after the last put

    def _raise_error(self) -> None:
        if isinstance(self.error, EdgecnnError):  # the output's own one line
            raise self.error
        if self.error is not None:
            raise EdgecnnError(f"writing {self.option} failed: {self.error}; check the disk and the path")

    def _run(self) -> None:
        if not self.wait:  # a writer the loop waits for at a lower priority only stalls the loop longer
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
    """Let inference and capture have the cores first: a writer that may drop gets what they leave (Linux:
    per thread). Not for writers that keep every frame (files): the loop waits for those when their queue
    is full, and a lowered writer then ran mostly on a core the stalled loop had left idle (--save --jsonl
    on box.mp4: 0.66-0.78 of the loop's FPS lowered, 0.73-0.84 not; benchmarks/README.md)."""
    try:
        thread = threading.get_native_id()  # relative: under `nice 10` an absolute 10 lowered nothing
        lowered = min(os.getpriority(os.PRIO_PROCESS, thread) + WRITER_NICE, 19)
        os.setpriority(os.PRIO_PROCESS, thread, lowered)
    except (AttributeError, OSError):  # not Linux, or not allowed: the queue bound still protects the loop
        pass


class AnnotatedVideo:
    """An mp4 of annotated frames; frames come undrawn (drawn here, off the loop) or already drawn."""

    def __init__(self, path: Path, fps: float, min_prob: float, say: Callable[[str], None] | None = None
                 ) -> None:
        self.video, self.min_prob = AtomicVideoWriter(path, fps, say), min_prob

    def write(self, item: tuple[Any, Any, Any, dict[str, float], bool]) -> None:
        """`item` = (frame, annotated frame or None, top predictions, timings for the footer, unknown)."""
        from edgecnn.runtime.live.overlay import draw_overlay

        image, annotated, top, stats, unknown = item
        if annotated is None:
            annotated = draw_overlay(image, top, self.min_prob, stats, unknown)
        self.video.write(annotated)

    def close(self) -> None:
        self.video.close()


class AtomicVideoWriter:
    """An mp4 written under a temporary name and renamed on `close`, so a crash leaves no half file.

    H.264 through PyAV where it is installed; else through OpenCV when `h264_fourcc()` found a working
    encoder, else mp4v with a note to `say` when the first frame opens the file: it may then not play in
    a browser (VLC and ffmpeg play it).
    """

    def __init__(self, path: Path, fps: float, say: Callable[[str], None] | None = None) -> None:
        self.path, self.fps, self.say = Path(path), fps, say
        self._target: AtomicPath | None = None
        self._writer: Any = None
        self.size: tuple[int, int] | None = None
        self.fourcc = ""  # what the file is encoded with, once the first frame is written
        self.frames = 0
        self.failed = False  # a write failed: the file is removed on close, never renamed into place

    @property
    def temp(self) -> Path | None:
        """Where the video is written until `close` renames it (None before the first frame)."""
        return self._target.temp if self._target is not None else None

    def write(self, image: np.ndarray) -> None:
        cv2 = opencv()

        if self._writer is None:
            self._open((image.shape[1], image.shape[0]))
        if (image.shape[1], image.shape[0]) != self.size:  # slideshows mix sizes; a video cannot
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        try:
            if isinstance(self._writer, H264File):
                self._writer.add(image, self.frames)  # time base 1/fps: frame i at i / fps
            else:
                self._writer.write(image)
        except Exception:
            self.failed = True  # a full disk mid-file: `close` removes it instead of renaming it in
            raise
        self.frames += 1

    def _open(self, size: tuple[int, int]) -> None:
        self._target = AtomicPath(self.path, suffix=self.path.suffix or ".mp4")  # cv2 goes by the suffix
        self.size = size
        if pyav_available():
            rate = Fraction(self.fps).limit_denominator(1001)  # 29.97 stays 30000/1001
            try:
                self._writer = H264File(self._target.temp, rate=rate, time_base=1 / rate)
            except OSError as exc:
                self._target.discard()
                raise EdgecnnError(f"cannot write video {self.path} ({exc}); check the folder") from exc
            self.fourcc = PYAV_FOURCC
            return
        self._open_opencv()

    def _open_opencv(self) -> None:
        cv2 = opencv()

        assert self._target is not None and self.size is not None  # set by _open
        h264 = h264_fourcc()
        for fourcc in ((h264,) if h264 else ()) + (FALLBACK_FOURCC,):
            # an H.264 encoder that refuses this frame size prints FFmpeg's own lines; mp4v never does
            with quiet_encoder() if fourcc != FALLBACK_FOURCC else nullcontext():
                self._writer = cv2.VideoWriter(str(self._target.temp), cv2.VideoWriter_fourcc(*fourcc),
                                               self.fps, self.size)
            if self._writer.isOpened():
                self.fourcc = fourcc
                break
            self._writer.release()
        else:
            self._writer = None
            self._target.discard()
            raise EdgecnnError(f"cannot write video {self.path}; check the folder and the .mp4 suffix")
        if self.fourcc == FALLBACK_FOURCC and self.say is not None:
            self.say(f"note: PyAV is not installed and this OpenCV build cannot write H.264, so {self.path} "
                     "is MPEG-4 Part 2 (mp4v), which may not play in a browser (VLC and ffmpeg play it); "
                     "pip install av for H.264")

    def close(self) -> None:
        if self._writer is None:
            return
        writer, self._writer, target = self._writer, None, self._target
        assert target is not None  # set with the writer
        try:
            if isinstance(writer, H264File) and self.failed:
                writer.abandon()
            elif isinstance(writer, H264File):
                writer.close()  # writes the index: a full disk fails here too
            else:
                writer.release()
        except Exception:
            target.discard()
            raise
        if self.failed:
            target.discard()
            return
        target.commit()


@functools.cache
def h264_fourcc() -> str | None:
    """The first of H264_FOURCCS this OpenCV build really encodes (a frame written and decoded back),
    or None: pip's opencv-python wheels bring no H.264 encoder of their own. Probed once per process."""
    with tempfile.TemporaryDirectory(prefix="edgecnn-codec-") as folder:
        for fourcc in H264_FOURCCS:
            if _encodes(Path(folder) / f"probe-{fourcc}.mp4", fourcc):
                return fourcc
    return None


def _encodes(path: Path, fourcc: str) -> bool:
    cv2 = opencv()

    with quiet_encoder():
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25.0, (64, 64))
        try:
            if not writer.isOpened():
                return False
            writer.write(np.full((64, 64, 3), 128, np.uint8))
        finally:
            writer.release()
        capture = cv2.VideoCapture(str(path))
        try:
            return bool(capture.read()[0])
        finally:
            capture.release()


@contextmanager
def quiet_encoder() -> Iterator[None]:
    """Hide what OpenCV and FFmpeg print while a codec is tried: the note says it in one line. FFmpeg
    writes to file descriptor 2 itself, so that is pointed at /dev/null for the moment."""
    cv2 = opencv()

    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
        cv2.utils.logging.setLogLevel(level)
