"""From the camera back to the data: save frames of a source into `DATA/LABEL/`, the layout finetune reads.

Frames are saved whole (the model's crop is made at training time), as JPEG, each written to a temporary
name and hard-linked to a fresh unique name, so a saved file is never half written and never replaces
another. Near-identical frames are skipped by a cheap difference of grey thumbnails (`min_change`).
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.outputs import check_distinct, write_new
from edgecnn.runtime.live.sources import VideoOptions
from edgecnn.runtime.live.video import Frame, VideoSource

THUMBNAIL = (32, 32)  # enough to tell a moved object from sensor noise, ~2 µs a frame to compare
MAX_LABEL_LENGTH = 100


@dataclass(frozen=True)
class CaptureConfig:
    source: str
    out: Path
    label: str
    count: int = 100  # frames to save
    every: float = 0.0  # seconds between saved frames: media time for files, wall clock for live sources
    min_change: float = 0.02  # mean absolute difference of grey thumbnails, 0..1, against the last saved
    duration: float | None = None  # stop after this many seconds of the source (media time for files)
    quality: int = 92  # JPEG quality
    video: VideoOptions = field(default_factory=VideoOptions)


@dataclass
class CaptureSummary:
    folder: str
    saved: int = 0
    requested: int = 0
    frames_read: int = 0
    skipped_similar: int = 0
    skipped_interval: int = 0
    ended_early: bool = False  # the source ended before `requested` frames were saved
    duration_reached: bool = False  # `duration` seconds of the source went by first
    interrupted: bool = False
    files: list[str] = field(default_factory=list)


def check_label(label: str, what: str = "--label") -> str:
    """A class name that is one folder name: no separators, dot names, control characters or blanks."""
    name = label.strip()
    if not name or name in (".", "..") or name.startswith("."):
        raise EdgecnnError(f"{what} {label!r} is not a usable class name; use a word such as 'cup'")
    bad = [c for c in name if c in "/\\" or unicodedata.category(c).startswith("C")]
    if bad:
        raise EdgecnnError(f"{what} {label!r} contains {bad[0]!r}; a class name is one folder name "
                           "without '/', '\\' or control characters")
    if len(name) > MAX_LABEL_LENGTH:
        raise EdgecnnError(f"{what} is {len(name)} characters long; use at most {MAX_LABEL_LENGTH}")
    return name


def thumbnail(image: np.ndarray) -> np.ndarray:
    import cv2

    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    return cv2.resize(grey, THUMBNAIL, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def change(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two thumbnails, 0 (same) .. 1."""
    return float(np.abs(a - b).mean())


class Capture:
    """The capture loop: read, skip what is too soon or too similar, save; `on_saved` after each save."""

    def __init__(self, config: CaptureConfig, on_saved: Callable[[CaptureSummary, Frame], None] | None = None,
                 show: Callable[[np.ndarray], bool] | None = None) -> None:
        self.config = config
        self.label = check_label(config.label)  # stripped: the folder and the file names use the same name
        self.folder = Path(config.out) / self.label
        if Path(config.source).exists():  # a file or folder source: frames must not land in it
            check_distinct({"--out/--label": self.folder}, {"SOURCE": Path(config.source)})
        self.on_saved = on_saved or (lambda summary, frame: None)
        self.show = show or (lambda image: True)
        self.summary = CaptureSummary(folder=str(self.folder), requested=config.count)
        self._last_thumb: np.ndarray | None = None
        self._last_time = -float("inf")
        self._session = time.strftime("%Y%m%d-%H%M%S")

    def run(self, say: Callable[[str], None] = print) -> CaptureSummary:
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            with VideoSource(self.config.source, self.config.video, say=say) as source:
                self._loop(source)
        except KeyboardInterrupt:
            self.summary.interrupted = True
        except EdgecnnError as exc:
            if not self.summary.saved:
                raise
            kept = f"the {self.summary.saved} frames saved to {self.folder} are kept"
            raise EdgecnnError(f"{exc} ({kept})") from exc
        return self.summary

    def _loop(self, source: VideoSource) -> None:
        first: float | None = None
        while self.summary.saved < self.config.count:
            frame = source.get()
            if frame is None:
                self.summary.ended_early = True
                return
            self.summary.frames_read += 1
            first = frame.timestamp if first is None else first
            if self.config.duration is not None and frame.timestamp - first >= self.config.duration:
                self.summary.duration_reached = True
                return
            if not self.show(frame.image):
                return
            self._consider(frame)

    def _consider(self, frame: Frame) -> None:
        if self.config.every and frame.timestamp - self._last_time < self.config.every:
            self.summary.skipped_interval += 1
            return
        thumb = thumbnail(frame.image)
        if self._last_thumb is not None and change(thumb, self._last_thumb) < self.config.min_change:
            self.summary.skipped_similar += 1
            return
        path = write_new(self.folder, f"{self.label}-{self._session}-{frame.index:06d}", ".jpg",
                         encode_jpeg(frame.image, self.config.quality))
        self._last_thumb, self._last_time = thumb, frame.timestamp
        self.summary.saved += 1
        self.summary.files.append(str(path))
        self.on_saved(self.summary, frame)


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    import cv2

    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise EdgecnnError("OpenCV could not encode a frame as JPEG")
    return data.tobytes()


def capture(config: CaptureConfig, on_saved: Callable[[CaptureSummary, Frame], None] | None = None,
            show: Callable[[np.ndarray], bool] | None = None,
            say: Callable[[str], None] = print) -> CaptureSummary:
    """Save up to `config.count` distinct frames of `config.source` into `config.out/config.label/`."""
    return Capture(config, on_saved, show).run(say)


def run_capture_cli(config: CaptureConfig, headless: bool, progress: bool,
                    say: Callable[[str], None] = print) -> CaptureSummary:
    """`capture` with what a person watches: a Rich progress bar on stderr and a preview window."""
    from edgecnn.runtime.live.overlay import Display, has_display
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    # no "running headless" notice: without a window capture loses nothing (the bar shows progress)
    display = Display(f"edgecnn capture: {check_label(config.label)}", headless or not has_display(),
                      Path(config.out), say)
    bar = Progress(TextColumn("capture"), BarColumn(bar_width=24), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=Console(stderr=True), disable=not progress)
    with bar:
        task = bar.add_task("capture", total=config.count)
        summary = capture(config, on_saved=lambda summary, frame: bar.update(task, completed=summary.saved),
                          show=display.show, say=say)
    display.close()
    return summary
