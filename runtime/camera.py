"""The live camera loop: capture, inference and drawing overlapped, with honest timings.

    summary = run_camera(load("bundles/imagenet"), CameraConfig(source="samples/videos/cup.mp4"))

The capture thread (`VideoSource`) reads while the model runs; the next frame is submitted before
the current result is drawn, written and shown, so the model is never idle waiting for them.
Camera-to-result latency runs from the moment a frame is read to the moment its annotated result
is ready.
"""

from __future__ import annotations

import json
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from edgecnn.runtime.errors import EdgecnnError
from edgecnn.runtime.outputs import AtomicPath, check_writable
from edgecnn.runtime.overlay import UNCERTAIN, Display, draw_overlay
from edgecnn.runtime.preprocess import fit_frame
from edgecnn.runtime.video import AtomicVideoWriter, Frame, VideoOptions, VideoSource

RESULT_TIMEOUT = 30.0  # seconds one inference may take before we call it stuck
TOP_SHOWN = 3  # labels the summary lists as recognised


@dataclass(frozen=True)
class CameraConfig:
    source: str | int | Path = 0
    top_k: int = 3
    min_prob: float = 0.2  # top-1 below this is shown as "uncertain"
    smooth: float = 0.6  # EMA weight of the past probabilities; 0 = off
    headless: bool = False
    save: Path | None = None  # annotated .mp4
    jsonl: Path | None = None  # one record per processed frame
    max_frames: int | None = None
    video: VideoOptions = field(default_factory=VideoOptions)
    snapshot_dir: Path = Path(".")
    window_title: str = "edgecnn camera"


@dataclass(frozen=True)
class CameraSummary:
    source: str
    frames_read: int
    frames_processed: int
    frames_dropped: int
    mean_fps: float
    inference_ms_median: float
    inference_ms_p95: float
    latency_ms_median: float  # camera-to-result
    latency_ms_p95: float
    backend: str
    device: str
    reconnects: int = 0
    stopped_by: str = "end"  # end | max_frames | quit | interrupt
    # what was recognised: the most frequent shown labels ("uncertain" included), share of processed frames
    recognised: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Result:
    frame: Frame
    probabilities: np.ndarray  # smoothed
    inference_ms: float


@dataclass(frozen=True)
class LiveUpdate:
    """What the loop hands a sink for each result: the --jsonl record, run counters, and the frame."""

    record: dict[str, Any]
    stats: dict[str, Any]  # fps, frames_read/processed/dropped, reconnects, min_prob, captured_at
    draw: Callable[[], np.ndarray]  # the annotated BGR frame, drawn on first call (from any thread)


class Sink(Protocol):
    """A live consumer of results (the web page). `publish` must return at once: the loop waits for it."""

    def publish(self, update: LiveUpdate) -> None: ...


class Inference:
    """The engine's overlapped API (`submit`) when it has one, else a worker thread over `infer`."""

    def __init__(self, engine: Any) -> None:
        self._submit = getattr(engine, "submit", None)
        self._infer = engine.infer
        self._pool: ThreadPoolExecutor | None = None

    def submit(self, batch: np.ndarray) -> tuple[Future[np.ndarray], list[float]]:
        """Start a batch; the list gets [start, end] perf_counter times when it finishes."""
        times = [time.perf_counter()]
        if self._submit is not None:
            future = self._submit(batch)
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgecnn-infer")
            future = self._pool.submit(self._infer, batch)
        future.add_done_callback(lambda _: times.append(time.perf_counter()))
        return future, times

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


class Smoother:
    """Exponential moving average of probabilities so labels do not flicker between frames."""

    def __init__(self, weight: float) -> None:
        if not 0.0 <= weight < 1.0:
            raise EdgecnnError(f"--smooth {weight} is out of range; give 0 (off) to 0.95")
        self.weight, self.state = weight, None

    def __call__(self, probabilities: np.ndarray) -> np.ndarray:
        if self.state is None or self.weight == 0.0:
            self.state = probabilities
        else:
            self.state = self.weight * self.state + (1.0 - self.weight) * probabilities
        return self.state


class JsonlWriter:
    """One JSON line per processed frame, under a temporary name until `close`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._target = AtomicPath(self.path)
        self.file = self._target.temp.open("w", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record) + "\n")

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()
            self._target.commit()


def run_camera(engine: Any, config: CameraConfig, say: Callable[[str], None] = print,
               sinks: Sequence[Sink] = ()) -> CameraSummary:
    """Run the loop until the source ends, `max_frames`, q/Esc, window close or Ctrl-C."""
    _check(engine, config)
    smooth = 0.0 if Path(str(config.source)).is_dir() else config.smooth  # slideshow frames are unrelated
    loop = _Loop(engine, config, Smoother(smooth), say, sinks)
    return loop.run()


def _check(engine: Any, config: CameraConfig) -> None:
    if not 1 <= config.top_k <= len(engine.labels):
        raise EdgecnnError(f"--top-k {config.top_k} is out of range: the model has "
                           f"{len(engine.labels)} classes")
    Smoother(config.smooth)  # checks the range
    if not 0.0 <= config.min_prob <= 1.0:
        raise EdgecnnError(f"--min-prob {config.min_prob} is out of range; give 0 to 1")
    if config.max_frames is not None and config.max_frames < 1:
        raise EdgecnnError(f"--max-frames {config.max_frames} must be at least 1")
    video = config.video
    for name, value in (("width", video.width), ("height", video.height), ("fps", video.fps)):
        if value is not None and value <= 0:
            raise EdgecnnError(f"--{name} {value} must be positive")
    if config.save is not None and Path(config.save).suffix.lower() != ".mp4":
        raise EdgecnnError(f"--save {config.save}: give a file name ending in .mp4")
    for option, path in (("--save", config.save), ("--jsonl", config.jsonl)):
        if path is not None:
            check_writable(Path(path), option)


class _Loop:
    """One camera run: owns the source, the outputs and the measurements."""

    def __init__(self, engine: Any, config: CameraConfig, smoother: Smoother,
                 say: Callable[[str], None], sinks: Sequence[Sink] = ()) -> None:
        self.engine, self.config, self.smoother, self.say = engine, config, smoother, say
        self.sinks = tuple(sinks)
        self.source: VideoSource | None = None
        self.inference = Inference(engine)
        self.inference_ms: list[float] = []
        self.latency_ms: list[float] = []
        self.result_times: deque[float] = deque(maxlen=30)
        self.submitted = 0
        self.stopped_by = "end"
        self.shown: Counter[str] = Counter()  # the label each processed frame showed

    def prepare(self, image: np.ndarray) -> np.ndarray:
        return fit_frame(image, self.engine.preprocess, bgr=True)[None]

    def run(self) -> CameraSummary:
        source = VideoSource(self.config.source, self.config.video, prepare=self.prepare, say=self.say)
        source.start()  # a bad source fails here, before any output file exists
        self.source = source
        outputs: list[Any] = []
        started = time.perf_counter()
        try:
            config = self.config
            writer = AtomicVideoWriter(config.save, source.fps) if config.save else None
            jsonl = JsonlWriter(config.jsonl) if config.jsonl else None
            display = Display(config.window_title, config.headless, config.snapshot_dir, self.say)
            outputs = [x for x in (display, writer, jsonl) if x is not None]
            self._pump(source, writer, jsonl, display)
        except KeyboardInterrupt:
            self.stopped_by = "interrupt"
        finally:
            source.close()
            self.inference.close()
            for output in outputs:  # flushed and renamed even after an error: what was seen is kept
                output.close()
        if source.frames_read == 0 and self.stopped_by == "end":
            raise EdgecnnError(f"{source.spec.name} gave no frames; check that it is a readable video")
        ended = self.result_times[-1] if self.result_times else time.perf_counter()
        return self._summary(source, ended - started)

    def _pump(self, source: VideoSource, writer: Any, jsonl: JsonlWriter | None, display: Display) -> None:
        """Keep the model busy: submit the next frame (when one is ready) before handling the last result.

        A live source's next frame is not waited for before the finished result is handled, or the
        result would age by up to one frame interval.
        """
        in_flight = self._start_next(source)
        while in_flight is not None:
            frame, future, times = in_flight
            probabilities = self._result(future)
            started_next = source.ready()
            in_flight = self._start_next(source) if started_next else None
            ended = times[1] if len(times) > 1 else time.perf_counter()  # callbacks may trail result()
            result = Result(frame, self.smoother(probabilities), (ended - times[0]) * 1000.0)
            if not self._handle(result, writer, jsonl, display):
                self.stopped_by = "quit"
                return
            if not started_next:
                in_flight = self._start_next(source)
        if self.config.max_frames is not None and self.submitted >= self.config.max_frames:
            self.stopped_by = "max_frames"

    @staticmethod
    def _result(future: Future[np.ndarray]) -> np.ndarray:
        try:
            return future.result(timeout=RESULT_TIMEOUT)[0]
        except FutureTimeout:
            raise EdgecnnError(f"one inference took over {RESULT_TIMEOUT:.0f} s; the device seems stuck: "
                               "try --device cpu") from None

    def _start_next(self, source: VideoSource) -> tuple[Frame, Future[np.ndarray], list[float]] | None:
        if self.config.max_frames is not None and self.submitted >= self.config.max_frames:
            return None
        frame = source.get()
        if frame is None:
            return None
        batch = frame.prepared if frame.prepared is not None else self.prepare(frame.image)
        self.submitted += 1
        return (frame, *self.inference.submit(batch))

    def _handle(self, result: Result, writer: Any, jsonl: JsonlWriter | None, display: Display) -> bool:
        """Draw, write and show one result; False when the user quits."""
        top = self.engine.top(result.probabilities, self.config.top_k)
        annotated = None
        if writer is not None or display.shows:
            annotated = draw_overlay(result.frame.image, top, self.config.min_prob, self._stats(result))
        latency_ms = (time.perf_counter() - result.frame.captured) * 1000.0
        self.shown[top[0].label if top[0].probability >= self.config.min_prob else UNCERTAIN] += 1
        self.result_times.append(time.perf_counter())
        self.inference_ms.append(result.inference_ms)
        self.latency_ms.append(latency_ms)
        if writer is not None:
            writer.write(annotated)
        if jsonl is not None or self.sinks:
            record = self._record(result, top, latency_ms)
            if jsonl is not None:
                jsonl.write(record)
            if self.sinks:
                self._publish(result, top, record, annotated)
        return display.show(annotated) if display.shows else True

    def _publish(self, result: Result, top: list[Any], record: dict[str, Any],
                 annotated: np.ndarray | None) -> None:
        drawn = [annotated]
        stats = self._stats(result)

        def draw() -> np.ndarray:  # drawn at most once, only when a sink wants the picture
            if drawn[0] is None:
                drawn[0] = draw_overlay(result.frame.image, top, self.config.min_prob, stats)
            return drawn[0]

        source = self.source
        counters = {"fps": round(stats["fps"], 2), "frames_read": source.frames_read,
                    "frames_processed": len(self.inference_ms), "frames_dropped": source.frames_dropped,
                    "reconnects": source.reconnects, "min_prob": self.config.min_prob,
                    "captured_at": time.time() - (time.perf_counter() - result.frame.captured)}
        update = LiveUpdate(record, counters, draw)
        for sink in self.sinks:
            sink.publish(update)

    def _stats(self, result: Result) -> dict[str, float]:
        last = self.latency_ms[-1] if self.latency_ms else 0.0
        return {"fps": self._recent_fps(), "inference_ms": result.inference_ms, "latency_ms": last}

    def _recent_fps(self) -> float:
        times = self.result_times
        return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0

    def _record(self, result: Result, top: list[Any], latency_ms: float) -> dict[str, Any]:
        best = top[0]
        return {
            "frame": result.frame.index,
            "timestamp": round(result.frame.timestamp, 4),
            "label": best.label if best.probability >= self.config.min_prob else UNCERTAIN,
            "top": [{"label": p.label, "probability": round(p.probability, 5)} for p in top],
            "inference_ms": round(result.inference_ms, 3),
            "latency_ms": round(latency_ms, 3),
        }

    def _summary(self, source: VideoSource, seconds: float) -> CameraSummary:
        processed = len(self.inference_ms)
        inference, latency = np.asarray(self.inference_ms or [0.0]), np.asarray(self.latency_ms or [0.0])
        return CameraSummary(
            source=source.spec.name, frames_read=source.frames_read, frames_processed=processed,
            frames_dropped=source.frames_dropped, mean_fps=processed / seconds if seconds > 0 else 0.0,
            inference_ms_median=float(np.median(inference)),
            inference_ms_p95=float(np.percentile(inference, 95)),
            latency_ms_median=float(np.median(latency)), latency_ms_p95=float(np.percentile(latency, 95)),
            backend=str(self.engine.backend), device=str(self.engine.device), reconnects=source.reconnects,
            stopped_by=self.stopped_by,
            recognised=tuple((label, n / processed) for label, n in self.shown.most_common(TOP_SHOWN)))


def summary_table(summary: CameraSummary) -> Any:
    """The end-of-run summary as a Rich table."""
    from rich.table import Table

    table = Table(title=f"camera: {summary.source}", show_header=False)
    rows = [("frames read / processed / dropped",
             f"{summary.frames_read} / {summary.frames_processed} / {summary.frames_dropped}"),
            ("mean FPS", f"{summary.mean_fps:.1f}"),
            ("inference ms (median / p95)",
             f"{summary.inference_ms_median:.1f} / {summary.inference_ms_p95:.1f}"),
            ("camera-to-result ms (median / p95)",
             f"{summary.latency_ms_median:.1f} / {summary.latency_ms_p95:.1f}"),
            ("backend / device", f"{summary.backend} / {summary.device}"),
            ("reconnects", str(summary.reconnects)), ("stopped by", summary.stopped_by)]
    if summary.recognised:
        rows.insert(0, ("recognised (share of frames)",
                        ", ".join(f"{label} {share:.0%}" for label, share in summary.recognised)))
    for name, value in rows:
        table.add_row(name, value)
    return table
