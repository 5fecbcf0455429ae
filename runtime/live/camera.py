"""The live camera loop: one or many sources, batched inference, recording and display off the hot path.

    summary = run_camera(load("bundles/imagenet"), CameraConfig(sources=("cam1.mp4", "rtsp://cam2/live")))

Each source is read on its own thread (`VideoSource`: newest frame for live sources), which also fits
the frame to the model, so decoding overlaps inference. One loop batches the frames that are ready
across the sources and keeps `engine.streams` batches running; results are handled in order
(per-source smoothing, overlay, statistics). Video and JSONL are written on their own threads through
bounded queues (`edgecnn.runtime.live.recording`), dropping and counting what they cannot keep up with,
so they never stall inference. A source that fails (a stream down past its --reconnect-timeout) is
reported and the others go on. Each `Sink` (the --serve page) is handed every result.
Camera-to-result latency runs from the moment a frame is read to the moment its result is ready.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.outputs import check_distinct, check_output_path, check_writable
from edgecnn.runtime.core.preprocess import fit_frame
from edgecnn.runtime.live.camera_report import CameraSummary, SourceSummary, summarise, summary_table
from edgecnn.runtime.live.overlay import Display, draw_overlay, shown_label, tile
from edgecnn.runtime.live.recording import AnnotatedVideo, BackgroundWriter, JsonlWriter, h264_fourcc
from edgecnn.runtime.live.video import Frame, VideoOptions, VideoSource, check_source

__all__ = ["CameraConfig", "CameraSummary", "FrameResult", "LiveUpdate", "Sink", "SourceSummary", "Smoother",
           "camera_engine", "check_outputs", "read_sources_file", "run_camera", "summary_table"]
RESULT_TIMEOUT = 30.0  # seconds one inference may take before we call it stuck
VIDEO_QUEUE = 32  # annotated frames waiting for the encoder (per source), ~30 MB at 640x480
JSONL_QUEUE = 4096


@dataclass(frozen=True)
class CameraConfig:
    source: str | int | Path = 0
    sources: tuple[str | int | Path, ...] = ()  # several sources; `source` is used when empty
    top_k: int = 3
    min_prob: float = 0.2  # top-1 below this is shown as "uncertain"; "unknown" is the model's detector
    smooth: float = 0.6  # EMA weight of the past probabilities (and unknown score); 0 = off
    headless: bool = False
    save: Path | None = None  # annotated .mp4 (one per source: name-1.mp4, name-2.mp4, ...)
    jsonl: Path | None = None  # one record per processed frame
    max_frames: int | None = None  # processed frames, all sources together
    video: VideoOptions = field(default_factory=VideoOptions)  # vid_stride: every Nth frame of a file
    force: bool = False  # replace existing --save / --jsonl files
    snapshot_dir: Path = Path(".")
    window_title: str = "edgecnn camera"

    @property
    def source_list(self) -> tuple[str | int | Path, ...]:
        return tuple(self.sources) or (self.source,)

    def video_paths(self) -> list[Path]:
        """The --save file of each source: the name itself for one, NAME-1.mp4, NAME-2.mp4... for more."""
        if self.save is None:
            return []
        path, count = Path(self.save), len(self.source_list)
        return [path] if count == 1 else [path.with_name(f"{path.stem}-{i}{path.suffix}")
                                          for i in range(1, count + 1)]


@dataclass(frozen=True)
class FrameResult:
    """One frame's result, as the loop hands it to the display, the recorders and a `sink`."""

    source_index: int
    source: str  # credentials masked
    frame: Frame
    top: list[Any]  # Predictions, best first
    probabilities: np.ndarray  # smoothed
    inference_ms: float  # the batch this frame was in
    latency_ms: float  # camera-to-result
    fps: float  # this source's recent results per second
    annotated: np.ndarray | None = None  # drawn when a window shows it
    unknown_score: float | None = None  # smoothed like the probabilities; None: the model has no detector
    unknown: bool = False  # the smoothed score above the model's unknown threshold


@dataclass(frozen=True)
class LiveUpdate:
    """What the loop hands a sink for each result: the --jsonl record, run counters, and the frame."""

    record: dict[str, Any]
    stats: dict[str, Any]  # fps, frames_read/processed/dropped, reconnects, min_prob, captured_at
    draw: Callable[[], np.ndarray]  # the annotated BGR frame (several sources: the grid), drawn on first call
    image: np.ndarray | None = None  # this source's frame as captured (BGR), for sinks that keep frames


class Sink(Protocol):
    """A live consumer of results (the web page). `publish` must return at once: the loop waits for it."""

    def publish(self, update: LiveUpdate) -> None: ...


def camera_engine(cores: int | None = None) -> dict[str, int]:
    """`load()` settings for camera use on the CPU: two single-thread streams on a 2-core machine, and
    one infer request more than streams (see `_Loop.depth`).

    Measured (benchmarks/camera.py, 2 cores): two 1-thread requests in flight keep both cores busy
    while a capture thread decodes; one 2-thread request leaves a core idle whenever decoding holds
    it. More cores get more threads per stream.
    """
    cores = cores or os.cpu_count() or 1
    streams, threads = (2, max(2, cores)) if cores >= 2 else (1, 1)
    return {"streams": streams, "threads": threads, "requests": streams + 1}


def read_sources_file(path: Path) -> tuple[str, ...]:
    """--sources FILE: one source a line; blank lines and # comments skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgecnnError(f"cannot read --sources {path}: {exc}; give a text file, one source a line"
                           ) from exc
    sources = tuple(line.strip() for line in lines if line.strip() and not line.strip().startswith("#"))
    if not sources:
        raise EdgecnnError(f"--sources {path} lists no source; write one source a line")
    return sources


def run_camera(engine: Any, config: CameraConfig, say: Callable[[str], None] = print,
               sinks: Sequence[Sink] = ()) -> CameraSummary:
    """Run the loop until every source ends, `max_frames`, q/Esc, window close or Ctrl-C."""
    _check(engine, config)
    return _Loop(engine, config, say, tuple(sinks)).run()


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
    if not 1 <= video.vid_stride <= 1_000_000:
        raise EdgecnnError(f"--vid-stride {video.vid_stride} is out of range; give 1 (every frame) to "
                           "1000000")
    check_outputs(config)


def check_outputs(config: CameraConfig) -> None:
    """--save and --jsonl, before anything starts (the CLI calls it before the model loads): each a
    writable file that is not an input, and new unless `force`; the sources named exist."""
    if config.save is not None and Path(config.save).suffix.lower() != ".mp4":
        raise EdgecnnError(f"--save {config.save}: give a file name ending in .mp4")
    for option, path, suffix in (("--save", config.save, ".mp4"), ("--jsonl", config.jsonl, ".jsonl")):
        if path is not None:
            check_output_path(Path(path), option, suffix=suffix)
            check_writable(Path(path), option)
    for source in config.source_list:
        check_source(source)  # a path that does not exist is a typo: say so before anything starts
    files = [Path(str(s)) for s in config.source_list if Path(str(s)).is_file()]
    named = {"--source": files[0]} if len(files) == 1 else {f"--source {f}": f for f in files}
    videos = config.video_paths()
    written = {"--save": videos[0]} if len(videos) == 1 else {
        f"--save (source {i})": path for i, path in enumerate(videos, 1)}  # NAME-1.mp4 may be an input
    written["--jsonl"] = None if config.jsonl is None else Path(config.jsonl)
    check_distinct(written, named)  # even --force never writes over an input
    for option, path in written.items():
        if path is None:
            continue
        if path.exists() and not config.force:
            raise EdgecnnError(f"{option} {path} already exists; pass --force to overwrite it or choose "
                               f"another {option.split()[0]}")


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


def _outputs(output: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """(probabilities, unknown scores or None) from `submit_scored`'s Scored or a bare probabilities array."""
    if isinstance(output, np.ndarray):
        return output, None
    return output.probabilities, output.unknown_score


class Inference:
    """The engine's overlapped API (`submit_scored`: probabilities and unknown scores) when it has one,
    else worker threads over `infer`."""

    def __init__(self, engine: Any, depth: int) -> None:
        self._submit = getattr(engine, "submit_scored", None)
        self._infer, self._depth = engine.infer, depth
        self._pool: ThreadPoolExecutor | None = None

    def submit(self, batch: np.ndarray, done: Callable[[], None]) -> tuple[Future[np.ndarray], list[float]]:
        """Start a batch; the list gets [start, end] perf_counter times; `done()` is called at the end."""
        times = [time.perf_counter()]
        if self._submit is not None:
            future = self._submit(batch)
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self._depth, thread_name_prefix="edgecnn-infer")
            future = self._pool.submit(self._infer, batch)

        def finished(_: Future[np.ndarray]) -> None:
            times.append(time.perf_counter())
            done()

        future.add_done_callback(finished)
        return future, times

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


class _Stream:
    """One source in the loop: its capture thread, smoothing, outputs and measurements."""

    def __init__(self, index: int, source: VideoSource, smoother: Smoother) -> None:
        self.index, self.source, self.smoother = index, source, smoother
        self.score_smoother = Smoother(smoother.weight)  # the unknown score, averaged like the probabilities
        self.name = source.spec.name
        self.inference_ms: list[float] = []
        self.latency_ms: list[float] = []
        self.result_times: deque[float] = deque(maxlen=30)
        self.first_result = self.last_result = 0.0
        self.video: BackgroundWriter | None = None
        self.annotated: np.ndarray | None = None  # the newest drawn frame, for the window's grid
        self.latest: tuple[np.ndarray, list[Any], dict[str, float], bool] | None = None  # a sink's grid
        self.shown: Counter[str] = Counter()  # the label each processed frame showed
        self.error = ""

    @property
    def done(self) -> bool:
        return bool(self.error) or self.source.finished

    def take(self) -> Frame | None:
        """The next frame when one is ready now; None otherwise (also when the source has failed)."""
        if self.error or not self.source.ready():
            return None
        try:
            return self.source.get()
        except EdgecnnError as exc:
            self.error = str(exc)
            raise

    def recent_fps(self) -> float:
        times = self.result_times
        return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0


@dataclass
class _Batch:
    frames: list[tuple[_Stream, Frame]]
    future: Future[np.ndarray]
    times: list[float]


class _Loop:
    """One camera run: owns the sources, the outputs and the measurements."""

    def __init__(self, engine: Any, config: CameraConfig, say: Callable[[str], None],
                 sinks: tuple[Sink, ...]) -> None:
        self.engine, self.config, self.say, self.sinks = engine, config, say, sinks
        # Live: only as many batches as the engine really runs at once (a frame queued behind a running
        # inference would age by a whole inference while the source has a newer one); files: one more.
        self.streams_run = max(1, int(getattr(engine, "streams", 1)))
        self.depth = self.streams_run  # batches in flight; set again once the sources are open
        self.inference = Inference(engine, self.streams_run)
        self.wake = threading.Event()
        self.streams: list[_Stream] = []
        self.in_flight: deque[_Batch] = deque()
        self.jsonl: BackgroundWriter | None = None
        self.display: Display | None = None
        self.submitted = self.batches = 0
        self.stopped_by = "end"
        self.started = time.perf_counter()
        fixed = getattr(engine, "fixed_batch", None)
        self.max_batch = fixed or len(config.source_list)

    def prepare(self, image: np.ndarray) -> np.ndarray:
        return fit_frame(image, self.engine.preprocess, bgr=True)

    def run(self) -> CameraSummary:
        try:
            config = self.config
            if config.save is not None:
                h264_fourcc()  # probed before the capture threads start: it silences stderr for a moment
            self._open_sources()  # a bad source fails here, before any output file exists
            if config.jsonl:
                self.jsonl = BackgroundWriter("--jsonl", JsonlWriter(config.jsonl), JSONL_QUEUE,
                                              wait=not any(stream.source.drops for stream in self.streams))
            self.display = Display(config.window_title, config.headless, config.snapshot_dir, self.say)
            self.started = time.perf_counter()
            self._pump()
        except KeyboardInterrupt:
            self.stopped_by = "interrupt"
        finally:
            self._close()
        return self._finish()

    def _open_sources(self) -> None:
        many = len(self.config.source_list) > 1
        for index, spec in enumerate(self.config.source_list):
            smooth = 0.0 if Path(str(spec)).is_dir() else self.config.smooth  # slideshow frames are unrelated
            source = VideoSource(spec, self.config.video, prepare=self.prepare, say=self.say,
                                 on_ready=self.wake.set)
            stream = _Stream(index, source, Smoother(smooth))
            self.streams.append(stream)
            # Several sources: a network camera that is down is retried in the background, the rest go on.
            source.start(wait_for_open=not many)
        if not any(stream.source.drops for stream in self.streams):
            # Files read frame by frame have no newer frame to lose: one batch more than the engine runs
            # at once waits inside it and starts the moment a stream frees, not when this thread gets a
            # core back (a stream sat idle 12 % of the time with frames ready; benchmarks/README.md).
            self.depth = self.streams_run + 1

    def _pump(self) -> None:
        """Submit what is ready (keeping up to `depth` batches in flight), then handle what finished."""
        while True:
            self.wake.clear()
            progressed = self._submit_ready()
            while self.in_flight and self.in_flight[0].future.done():
                if not self._handle(self.in_flight.popleft()):
                    self.stopped_by = "quit"
                    return
                progressed = True
            if self._budget_spent() and not self.in_flight:
                self.stopped_by = "max_frames"
                return
            if not self.in_flight and all(stream.done for stream in self.streams):
                return
            if not progressed:
                self._check_stuck()
                self.wake.wait(0.1)

    def _budget_spent(self) -> bool:
        return self.config.max_frames is not None and self.submitted >= self.config.max_frames

    def _submit_ready(self) -> bool:
        submitted = False
        while self._running() < self.depth and not self._budget_spent():
            frames = self._gather()
            if not frames:
                break
            batch = np.stack([frame.prepared for _, frame in frames])
            if len(batch) < self.max_batch and getattr(self.engine, "fixed_batch", None):
                batch = np.concatenate([batch, np.repeat(batch[-1:], self.max_batch - len(batch), axis=0)])
            future, times = self.inference.submit(batch, self.wake.set)
            self.in_flight.append(_Batch(frames, future, times))
            self.submitted += len(frames)
            self.batches += 1
            submitted = True
        return submitted

    def _running(self) -> int:
        return sum(not batch.future.done() for batch in self.in_flight)

    def _gather(self) -> list[tuple[_Stream, Frame]]:
        """One ready frame from each source that has one (at most the batch the model takes)."""
        frames = []
        left = None if self.config.max_frames is None else self.config.max_frames - self.submitted
        for stream in self.streams:
            if len(frames) >= self.max_batch or (left is not None and len(frames) >= left):
                break
            try:
                frame = stream.take()
            except EdgecnnError:
                self._source_failed(stream)
                continue
            if frame is not None:
                if frame.prepared is None:
                    frame = Frame(frame.image, frame.index, frame.timestamp, frame.captured,
                                  self.prepare(frame.image))
                frames.append((stream, frame))
        return frames

    def _source_failed(self, stream: _Stream) -> None:
        if len(self.streams) == 1:
            raise EdgecnnError(stream.error)
        others = [s for s in self.streams if not s.error]
        self.say(f"{stream.error}" + ("; the other sources go on" if others else ""))
        if not others:
            raise EdgecnnError(f"every source failed; the last: {stream.error}")

    def _check_stuck(self) -> None:
        if self.in_flight and time.perf_counter() - self.in_flight[0].times[0] > RESULT_TIMEOUT:
            raise EdgecnnError(f"one inference took over {RESULT_TIMEOUT:.0f} s; the device seems stuck: "
                               "try --device cpu")

    def _handle(self, batch: _Batch) -> bool:
        """Smooth, record and show the results of one batch, in source order; False when the user quits."""
        probabilities, scores = _outputs(batch.future.result())
        threshold = getattr(self.engine, "unknown_threshold", None)
        ended = batch.times[1] if len(batch.times) > 1 else time.perf_counter()
        inference_ms = (ended - batch.times[0]) * 1000.0
        keep = True
        for row, (stream, frame) in enumerate(batch.frames):
            now = time.perf_counter()
            latency_ms = (now - frame.captured) * 1000.0
            smoothed = stream.smoother(probabilities[row])
            score = None if scores is None else float(stream.score_smoother(scores[row:row + 1])[0])
            stream.result_times.append(now)
            stream.first_result = stream.first_result or now
            stream.last_result = now
            stream.inference_ms.append(inference_ms)
            stream.latency_ms.append(latency_ms)
            top = self.engine.top(smoothed, self.config.top_k)
            result = FrameResult(stream.index, stream.name, frame, top, smoothed, inference_ms, latency_ms,
                                 stream.recent_fps(), unknown_score=score,
                                 unknown=score is not None and threshold is not None and score > threshold)
            keep = self._deliver(stream, result) and keep
        return keep

    def _deliver(self, stream: _Stream, result: FrameResult) -> bool:
        """Hand one result to the window, the recorders and the sink; only the window is drawn here."""
        stats = {"fps": result.fps, "inference_ms": result.inference_ms, "latency_ms": result.latency_ms}
        display = self.display
        if display is not None and display.shows:
            stream.annotated = draw_overlay(result.frame.image, result.top, self.config.min_prob, stats,
                                            result.unknown)
            result = replace(result, annotated=stream.annotated)
        if self.config.save is not None:
            self._video(stream).put((result.frame.image, result.annotated, result.top, stats, result.unknown))
        stream.shown[shown_label(result.top, self.config.min_prob, result.unknown)] += 1
        if self.jsonl is not None or self.sinks:
            record = self._record(result)
            if self.jsonl is not None:
                self.jsonl.put(record)
            if self.sinks:
                self._publish(stream, result, record, stats)
        if display is None or not display.shows:
            return True
        if len(self.streams) == 1:
            return display.show(stream.annotated)
        return display.show(tile([(s.name, s.annotated, s.error) for s in self.streams]))

    def _publish(self, stream: _Stream, result: FrameResult, record: dict[str, Any],
                 stats: dict[str, float]) -> None:
        """Hand the result to every sink; the picture is drawn only if and when a sink asks for it."""
        stream.latest = (result.frame.image, result.top, stats, result.unknown)
        drawn: list[np.ndarray | None] = [result.annotated]
        min_prob, streams = self.config.min_prob, list(self.streams)

        def draw() -> np.ndarray:  # on the sink's thread, at most once per update
            if drawn[0] is None:
                pictures = [(s.name, draw_overlay(*s.latest[:2], min_prob, *s.latest[2:]) if s.latest
                             else None, s.error) for s in streams]
                drawn[0] = pictures[0][1] if len(pictures) == 1 else tile(pictures)
            return drawn[0]

        source = stream.source
        counters = {"fps": round(result.fps, 2), "frames_read": source.frames_read,
                    "frames_processed": len(stream.latency_ms), "frames_dropped": source.frames_dropped,
                    "reconnects": source.reconnects, "min_prob": self.config.min_prob,
                    "captured_at": time.time() - (time.perf_counter() - result.frame.captured)}
        update = LiveUpdate(record, counters, draw, result.frame.image)
        for sink in self.sinks:
            sink.publish(update)

    def _video(self, stream: _Stream) -> BackgroundWriter:
        if stream.video is None:
            path = self.config.video_paths()[stream.index]
            video = AnnotatedVideo(path, stream.source.fps, self.config.min_prob, self.say)
            stream.video = BackgroundWriter("--save", video, VIDEO_QUEUE, wait=not stream.source.drops)
        return stream.video

    def _record(self, result: FrameResult) -> dict[str, Any]:
        return {
            "source": result.source,
            "frame": result.frame.index,
            "timestamp": round(result.frame.timestamp, 4),
            "label": shown_label(result.top, self.config.min_prob, result.unknown),
            "top": [{"label": p.label, "probability": round(p.probability, 5)} for p in result.top],
            "unknown_score": None if result.unknown_score is None else round(result.unknown_score, 5),
            "unknown": result.unknown,
            "inference_ms": round(result.inference_ms, 3),
            "latency_ms": round(result.latency_ms, 3),
        }

    def _close(self) -> None:
        """Stop the sources and the engine's work; flush and rename every output, even after an error."""
        for stream in self.streams:
            stream.source.close()
        for batch in self.in_flight:  # the engine may still write into its requests: let them end
            try:
                batch.future.exception(timeout=RESULT_TIMEOUT)
            except Exception:  # noqa: BLE001 - a stuck or cancelled request must not hide the real error
                pass
        self.inference.close()
        writers = [s.video for s in self.streams if s.video is not None] + [self.jsonl]
        for writer in writers:
            if writer is not None:
                writer.close()
        if self.display is not None:
            self.display.close()

    def _finish(self) -> CameraSummary:
        if len(self.streams) == 1 and self.streams[0].source.frames_read == 0 and self.stopped_by == "end":
            if self.streams[0].error:
                raise EdgecnnError(self.streams[0].error)
            raise EdgecnnError(f"{self.streams[0].name} gave no frames; check that it is a readable video")
        return summarise(self.engine, self.streams, self.started, self.stopped_by, self.batches, self.jsonl)
