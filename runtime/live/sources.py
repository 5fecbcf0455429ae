"""Opening what `--source` names: a webcam index, a video file, a network stream or an image folder.

Each opens as a `Reader` (read / grab / close) or fails at once with a one-line EdgecnnError; every
message masks the credentials of a URL. `edgecnn.runtime.live.video` reads them on a thread.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.images import IMAGE_SUFFIXES, iter_image_files, opencv, read_image
from edgecnn.runtime.core.redact import mask_url

URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
Say = Callable[[str], None]


MAX_CAMERA_INDEX = 9999  # /dev/video9999 at most; OpenCV's own limit is a C int

@dataclass(frozen=True)
class SourceSpec:
    kind: str  # "camera" | "file" | "stream" | "folder"
    target: int | str
    name: str  # for messages: credentials masked

    @property
    def live(self) -> bool:
        return self.kind in ("camera", "stream")


@dataclass(frozen=True)
class VideoOptions:
    width: int | None = None  # requested from webcams
    height: int | None = None
    fps: float | None = None  # requested from webcams; slideshow speed of folders
    realtime: bool = False  # pace files at their FPS and drop frames like a live camera
    reconnect_timeout: float = 30.0
    open_timeout: float = 10.0  # network streams
    read_timeout: float = 5.0
    start: float = 0.0  # video files: seconds of media time to skip (frame indices count from there)
    vid_stride: int = 1  # files and folders: hand over every Nth frame, grab (skip) the rest; live: 1
    loop: bool = False  # files and folders: start again at the end (a page to watch that stays up)


def parse_source(source: str | int | Path) -> SourceSpec:
    """What `--source` names: a camera index, a URL, a folder or a file."""
    text = str(source).strip()
    if not text:  # Path("") is the current folder: an empty --source would play it
        raise EdgecnnError("--source is empty; give a camera index (0), a video file, an rtsp:// or "
                           "http:// URL, or a folder of images")
    if text.isascii() and text.isdigit():  # '²' is a digit to str.isdigit, not to int()
        if int(text) > MAX_CAMERA_INDEX:  # OpenCV takes a C int: 10**20 overflowed into a traceback
            raise EdgecnnError(f"camera index {text} is out of range; give 0 to {MAX_CAMERA_INDEX} "
                               "(0 is the first camera)")
        return SourceSpec("camera", int(text), f"camera {text}")
    if "://" in text:
        scheme = text.split("://", 1)[0].lower()
        if scheme not in URL_SCHEMES:
            raise EdgecnnError(f"unsupported URL scheme {scheme!r} in {mask_url(text)}; "
                               f"use one of {', '.join(URL_SCHEMES)}")
        return SourceSpec("stream", text, mask_url(text))
    path = Path(text).expanduser()
    return SourceSpec("folder" if path.is_dir() else "file", str(path), mask_url(str(path)))


def check_source(source: str | int | Path | SourceSpec) -> SourceSpec:
    """Parse a source and check what can be checked without opening it (a file must exist)."""
    spec = source if isinstance(source, SourceSpec) else parse_source(source)
    if spec.kind == "file" and not Path(str(spec.target)).is_file():
        raise EdgecnnError(f"video file {spec.name} does not exist; give a camera index (0), a video file, "
                           "an rtsp:// or http:// URL, or a folder of images")
    return spec


class Reader(Protocol):
    fps: float

    def read(self) -> tuple[np.ndarray | None, float]:
        """The next BGR frame (None when there is none) and its media time in seconds."""
        ...

    def grab(self) -> bool:
        """Skip one frame cheaply; False at the end."""
        ...

    def close(self) -> None: ...


class CaptureReader:
    """An opened `cv2.VideoCapture`; a read that ran into `read_timeout` gives no frame."""

    def __init__(self, capture: Any, default_fps: float = 30.0, read_timeout: float | None = None) -> None:
        import cv2

        self.capture, self.read_timeout = capture, read_timeout
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0.5 <= fps <= 240.0 else default_fps  # nan, 0 and 90000 happen

    def read(self) -> tuple[np.ndarray | None, float]:
        import cv2

        started = time.perf_counter()
        ok, image = self.capture.read()
        if not ok or image is None or image.size == 0:
            return None, 0.0
        if self.read_timeout is not None and time.perf_counter() - started >= self.read_timeout:
            # OpenCV's timeout interrupted FFmpeg mid-part (an MJPEG part claiming 2 GB that trickles):
            # what it decodes from the bytes so far is a partial, made-up frame, not one the camera sent
            return None, 0.0
        return image, float(self.capture.get(cv2.CAP_PROP_POS_MSEC)) / 1000.0

    def grab(self) -> bool:
        return bool(self.capture.grab())

    def close(self) -> None:
        self.capture.release()


class FolderReader:
    """Image files as a slideshow at `fps`; unreadable files are skipped with a message."""

    def __init__(self, files: list[Path], fps: float, say: Say) -> None:
        self.files, self.fps, self.say, self.position = files, fps, say, 0

    def read(self) -> tuple[np.ndarray | None, float]:
        import cv2

        while self.position < len(self.files):
            path = self.files[self.position]
            self.position += 1
            try:
                image = read_image(path)
            except EdgecnnError as exc:
                self.say(f"skipped {exc}")
                continue
            return cv2.cvtColor(image, cv2.COLOR_RGB2BGR), (self.position - 1) / self.fps
        return None, 0.0

    def grab(self) -> bool:
        self.position += 1
        return self.position <= len(self.files)

    def close(self) -> None:
        self.position = len(self.files)


def open_reader(spec: SourceSpec, options: VideoOptions, say: Say = print) -> Reader:
    """Open a source, or raise a one-line EdgecnnError saying why not."""
    if options.start > 0 and (spec.kind != "file" or Path(str(spec.target)).suffix.lower() in IMAGE_SUFFIXES):
        raise EdgecnnError(f"--start applies to video files, not to {spec.name}; leave it out")
    if spec.kind == "camera":
        return _open_camera(int(spec.target), options)
    if spec.kind == "stream":
        failure = (f"cannot open stream {spec.name} (refused, unreachable or not video; waited up to "
                   f"{options.open_timeout:.0f} s); check the address and the server")
        return _open_capture(spec, options, failure)
    path = Path(str(spec.target))
    check_source(spec)
    if spec.kind == "folder" or path.suffix.lower() in IMAGE_SUFFIXES:
        files = list(iter_image_files(path)) if spec.kind == "folder" else [path]
        if not files:
            raise EdgecnnError(f"{path} has no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return FolderReader(files, options.fps or 1.0, say)
    reader = _open_capture(spec, options, f"cannot decode {path} as a video; give an .mp4, .avi or .mkv file")
    if options.start > 0:
        _skip(reader, options.start, path)
    return reader


def _skip(reader: CaptureReader, seconds: float, path: Path) -> None:
    """Decode and drop the frames before `seconds`: exact, where a container seek lands on a keyframe."""
    for _ in range(math.ceil(seconds * reader.fps - 1e-6)):  # frame i starts at i / fps
        if not reader.capture.grab():
            reader.close()
            raise EdgecnnError(f"--start {seconds:g} is past the end of {path}; give a smaller --start")


@contextmanager
def _quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own warnings while probing a source: our error says it in one line."""
    cv2 = opencv()
    # OpenCV 5 keeps these in cv2.utils.logging; 4.x (the [serve] venv's, numpy<2) at the top level
    logging = getattr(cv2.utils, "logging", cv2)
    level = logging.getLogLevel()
    logging.setLogLevel(0)  # LOG_LEVEL_SILENT in both
    try:
        yield
    finally:
        logging.setLogLevel(level)


def _open_capture(spec: SourceSpec, options: VideoOptions, failure: str) -> CaptureReader:
    import cv2

    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(options.open_timeout * 1000),
              cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(options.read_timeout * 1000)]
    started = time.perf_counter()
    with _quiet_opencv():
        capture = cv2.VideoCapture(str(spec.target), cv2.CAP_FFMPEG, params)
    # an open that ran into its timeout was interrupted while probing: OpenCV may still call it opened,
    # with a frame made up from a part cut short (a stream that connects but never sends a whole frame)
    # (network streams only: FFmpeg applies no timeout to a file, whose open or read may just be slow on a
    # loaded machine; a 10 s wait there once made a good cup.mp4 "cannot decode")
    timed = spec.kind == "stream"
    if not capture.isOpened() or (timed and time.perf_counter() - started >= options.open_timeout):
        capture.release()
        raise EdgecnnError(failure)
    return CaptureReader(capture, read_timeout=options.read_timeout if timed else None)


def _open_camera(index: int, options: VideoOptions) -> CaptureReader:
    import cv2

    with _quiet_opencv():
        capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        capture.release()
        found = ", ".join(sorted(p.name for p in Path("/dev").glob("video*"))) or "none found"
        raise EdgecnnError(f"camera {index} cannot be opened (missing or busy; /dev/video*: {found}); "
                           "try another --source index, a video file or a URL")
    requests = ((cv2.CAP_PROP_FRAME_WIDTH, options.width), (cv2.CAP_PROP_FRAME_HEIGHT, options.height),
                (cv2.CAP_PROP_FPS, options.fps))
    for prop, value in requests:
        if value:
            capture.set(prop, float(value))
    capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # where supported: no driver-side queue of old frames
    return CaptureReader(capture, default_fps=options.fps or 30.0)
