"""The camera loop itself: sources read on their own threads, batches kept in flight on the engine,
results smoothed, recorded and handed to the window and the sinks in order (see camera.py)."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from edgecnn.runtime.core.engine import Engine, Prediction, Scored
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.preprocess import fit_frame
from edgecnn.runtime.live.camera_report import CameraSummary, summarise
from edgecnn.runtime.live.frames import FrameRecord, FrameResult, LiveUpdate, Sink
from edgecnn.runtime.live.h264 import pyav_available
from edgecnn.runtime.live.overlay import Display, draw_overlay, shown_label, tile
from edgecnn.runtime.live.recording import AnnotatedVideo, BackgroundWriter, JsonlWriter, h264_fourcc
from edgecnn.runtime.live.video import Frame, VideoSource

if TYPE_CHECKING:
    from edgecnn.runtime.live.camera import CameraConfig

RESULT_TIMEOUT = 30.0  # seconds one inference may take before we call it stuck
VIDEO_QUEUE = 32  # annotated frames waiting for the encoder (per source), ~30 MB at 640x480
JSONL_QUEUE = 4096
# Frames a source may have fitted ahead (its queue, a region's queue, one being fitted): after a swap to a
# model with another preprocess, each stream fits that many again
FITTED_AHEAD = 5


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


class _Stream:
    """One source in the loop: its capture thread, smoothing, outputs and measurements."""

    def __init__(self, index: int, source: VideoSource, smoother: Smoother, camera: str = "") -> None:
        self.index, self.source, self.smoother, self.camera = index, source, smoother, camera
        self.score_smoother = Smoother(smoother.weight)  # the unknown score, averaged like the probabilities
        self.name = source.spec.name
        self.inference_ms: list[float] = []
        self.latency_ms: list[float] = []
        self.result_times: deque[float] = deque(maxlen=30)
        self.first_result = self.last_result = 0.0
        self.video: BackgroundWriter | None = None
        self.annotated: np.ndarray | None = None  # the newest drawn frame, for the window's grid
        # The newest (frame, top, stats, unknown), from which a sink's grid is drawn.
        self.latest: tuple[np.ndarray, list[Prediction], dict[str, float], bool] | None = None
        self.shown: Counter[str] = Counter()  # the label each processed frame showed
        self.error = ""
        self.model = ""  # the model version of this stream's last result: its smoothing restarts on a swap
        self.refit = 0  # frames still to fit again (maybe fitted for the model before a swap)

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
    future: Future[Scored]
    times: list[float]
    engine: Engine  # the engine it runs on: after a swap, batches in flight finish on the old one
    model: str  # that engine's version (ModelMeta.version), for the records


class CameraLoop:
    """One camera run: owns the sources, the outputs and the measurements."""

    def __init__(self, engine: Engine, config: CameraConfig, say: Callable[[str], None],
                 sinks: tuple[Sink, ...]) -> None:
        self.engine, self.config, self.say, self.sinks = engine, config, say, sinks
        # Live: only as many batches as the engine really runs at once (a frame queued behind a running
        # inference would age by a whole inference while the source has a newer one); files: one more.
        self.streams_run = max(1, engine.streams)
        self.depth = self.streams_run  # batches in flight; set again once the sources are open
        self.wake = threading.Event()
        self.streams: list[_Stream] = []
        self.in_flight: deque[_Batch] = deque()
        self.jsonl: BackgroundWriter | None = None
        self.display: Display | None = None
        self.submitted = self.batches = 0
        self.stopped_by = "end"
        self.started = time.perf_counter()
        self.max_batch = engine.fixed_batch or len(config.source_list)
        self.changes: deque[Callable[[CameraLoop], None]] = deque()  # `request`: applied between batches
        self.model = engine.meta.version  # the live model's version, in every record
        self.retired: list[Engine] = []  # swapped out, closed once their batches in flight are handled
        self.offered: list[Engine] = []  # given by offer_engine: the loop closes them

    def prepare(self, image: np.ndarray) -> np.ndarray:
        return fit_frame(image, self.engine.preprocess, bgr=True)

    def run(self) -> CameraSummary:
        failed = True
        try:
            config = self.config
            if config.save is not None and not pyav_available():
                h264_fourcc()  # probed before the capture threads start: it silences stderr for a moment
            self._open_sources()  # a bad source fails here, before any output file exists
            if config.jsonl:
                self.jsonl = BackgroundWriter("--jsonl", JsonlWriter(config.jsonl, config.append),
                                              JSONL_QUEUE,
                                              wait=not any(stream.source.drops for stream in self.streams))
            self.display = Display(config.window_title, config.headless, config.snapshot_dir, self.say)
            for sink in self.sinks:  # a sink that changes the run (the box's SIGHUP reload) gets the loop
                if hasattr(sink, "attach"):
                    sink.attach(self)
            self.started = time.perf_counter()
            self._pump()
            failed = False
        except KeyboardInterrupt:
            self.stopped_by, failed = "interrupt", False
        finally:
            try:
                self._close()
            finally:
                for sink in self.sinks:
                    sink.finish("error" if failed else self.stopped_by)
        try:
            return self._finish()
        finally:
            for engine in self.offered:  # the live one too; one never swapped in (the run ended first) also
                engine.close()

    def _open_sources(self) -> None:
        from edgecnn.runtime.live.regions import open_sources  # --region: crops, one decoder per source

        many, cameras = len(self.config.source_list) > 1, self.config.camera_names
        opened = open_sources(self.config, self.prepare, self.say, self.wake.set)
        for index, (spec, source) in enumerate(zip(self.config.source_list, opened, strict=True)):
            smooth = 0.0 if Path(str(spec)).is_dir() else self.config.smooth  # slideshow frames are unrelated
            stream = _Stream(index, source, Smoother(smooth), cameras[index])
            self.streams.append(stream)
            # Several sources: a network camera that is down is retried in the background, the rest go on.
            source.start(wait_for_open=not many)
        if not any(stream.source.drops for stream in self.streams):
            # Files read frame by frame have no newer frame to lose: one batch more than the engine runs
            # at once waits inside it and starts the moment a stream frees, not when this thread gets a
            # core back (a stream sat idle 12 % of the time with frames ready; benchmarks/README.md).
            self.depth = self.streams_run + 1

    def request(self, change: Callable[[CameraLoop], None]) -> None:
        """Run `change` on the loop's thread between two batches (cameras added or removed on SIGHUP);
        safe from a signal handler: a deque append, no lock (the loop looks at least every 0.1 s)."""
        self.changes.append(change)

    def offer_engine(self, engine: Engine) -> None:
        """Swap to `engine` (a hot model swap) between two batches; batches in flight finish on the old
        engine, which is closed once they are handled. Safe from any thread; the loop owns `engine` now."""
        self.offered.append(engine)
        self.request(lambda loop: loop._swap(engine))
        self.wake.set()

    def _swap(self, engine: Engine) -> None:
        old, self.engine = self.engine, engine
        extra = self.depth - self.streams_run  # files keep one batch more than the engine runs at once
        self.streams_run = max(1, engine.streams)
        self.depth = self.streams_run + extra
        self.max_batch = engine.fixed_batch or len(self.config.source_list)
        if engine.preprocess != old.preprocess:
            for stream in self.streams:
                stream.refit = FITTED_AHEAD
        self.retired.append(old)
        self.model = engine.meta.version
        self.say(f"model {self.model} is live: {engine.describe()}")

    def _close_retired(self, wait: bool = False) -> None:
        """Close the swapped-out engines no batch in flight still runs on (`wait`: every one, at the end)."""
        busy = {id(batch.engine) for batch in self.in_flight}
        for engine in list(self.retired):
            if wait or id(engine) not in busy:
                self.retired.remove(engine)
                engine.close()
                if any(offered is engine for offered in self.offered):  # let its session go: a box that
                    self.offered.remove(engine)  # swaps for months would keep every model it ever ran

    def add_camera(self, source: str, camera: str, region: object = None) -> None:
        """A new camera, started beside the running ones (which go on untouched)."""
        from edgecnn.runtime.live.regions import open_one

        if self.config.save is not None:
            raise EdgecnnError(f"camera {camera} not added: a run with --save keeps its cameras; restart it")
        opened = open_one(source, region, camera, self.config.video, self.prepare, self.say, self.wake.set)
        smooth = 0.0 if Path(str(source)).is_dir() else self.config.smooth
        index = max((stream.index for stream in self.streams), default=-1) + 1
        opened.start(wait_for_open=False)
        self.streams.append(_Stream(index, opened, Smoother(smooth), camera))

    def remove_camera(self, camera: str) -> bool:
        """Stop one camera (its batches in flight are still handled); False when none has that name."""
        for stream in self.streams:
            if stream.camera == camera:
                self.streams.remove(stream)
                stream.source.close()
                return True
        return False

    def _pump(self) -> None:
        """Submit what is ready (keeping up to `depth` batches in flight), then handle what finished."""
        while True:
            self.wake.clear()
            while self.changes:
                self.changes.popleft()(self)
            progressed = self._submit_ready()
            while self.in_flight and self.in_flight[0].future.done():
                if not self._handle(self.in_flight.popleft()):
                    self.stopped_by = "quit"
                    return
                progressed = True
            if self.retired:
                self._close_retired()
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
            if len(batch) < self.max_batch and self.engine.fixed_batch:
                batch = np.concatenate([batch, np.repeat(batch[-1:], self.max_batch - len(batch), axis=0)])
            future, times = self._start(batch)
            self.in_flight.append(_Batch(frames, future, times, self.engine, self.model))
            self.submitted += len(frames)
            self.batches += 1
            submitted = True
        return submitted

    def _start(self, batch: np.ndarray) -> tuple[Future[Scored], list[float]]:
        """Submit a batch; the list gets its [start, end] perf_counter times; the loop wakes at the end."""
        times = [time.perf_counter()]
        future = self.engine.submit_scored(batch)

        def finished(_: Future[Scored]) -> None:
            times.append(time.perf_counter())
            self.wake.set()

        future.add_done_callback(finished)
        return future, times

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
                refit, stream.refit = stream.refit > 0, max(0, stream.refit - 1)
                if frame.prepared is None or refit:
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
        scored = batch.future.result()
        probabilities, scores = scored.probabilities, scored.unknown_score
        ended = batch.times[1] if len(batch.times) > 1 else time.perf_counter()
        inference_ms = (ended - batch.times[0]) * 1000.0
        keep = True
        engine = batch.engine
        for row, (stream, frame) in enumerate(batch.frames):
            if stream.model != batch.model:  # a new model's probabilities are not averaged with the old's
                stream.model, stream.smoother.state, stream.score_smoother.state = batch.model, None, None
            now = time.perf_counter()
            latency_ms = (now - frame.captured) * 1000.0
            smoothed = stream.smoother(probabilities[row])
            score = None if scores is None else float(stream.score_smoother(scores[row:row + 1])[0])
            stream.result_times.append(now)
            stream.first_result = stream.first_result or now
            stream.last_result = now
            stream.inference_ms.append(inference_ms)
            stream.latency_ms.append(latency_ms)
            top = engine.top(smoothed, self.config.top_k)
            result = FrameResult(stream.index, stream.name, frame, top, smoothed, inference_ms, latency_ms,
                                 stream.recent_fps(), unknown_score=score,
                                 unknown=engine.is_unknown(score), camera=stream.camera, model=batch.model)
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
            record = FrameRecord.of(result, self.config.min_prob)
            if self.jsonl is not None:
                self.jsonl.put(record.to_json())
            if self.sinks:
                self._publish(stream, result, record, stats)
        if display is None or not display.shows:
            return True
        if len(self.streams) == 1:
            return display.show(stream.annotated)
        return display.show(tile([(s.name, s.annotated, s.error) for s in self.streams]))

    def _publish(self, stream: _Stream, result: FrameResult, record: FrameRecord,
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

    def _close(self) -> None:
        """Stop the sources and the engine's work; flush and rename every output, even after an error."""
        for stream in self.streams:
            stream.source.close()
        for batch in self.in_flight:  # the engine may still write into its requests: let them end
            try:
                batch.future.exception(timeout=RESULT_TIMEOUT)
            except Exception:  # noqa: BLE001 - a stuck or cancelled request must not hide the real error
                pass
        writers = [s.video for s in self.streams if s.video is not None] + [self.jsonl]
        errors = []
        for writer in writers:
            if writer is not None:
                try:
                    writer.close()
                except EdgecnnError as exc:  # a full disk: the other outputs are still closed and kept
                    errors.append(exc)
        if self.display is not None:
            self.display.close()
        self._close_retired(wait=True)
        if errors:
            raise errors[0]

    def _finish(self) -> CameraSummary:
        if len(self.streams) == 1 and self.streams[0].source.frames_read == 0 and self.stopped_by == "end":
            if self.streams[0].error:
                raise EdgecnnError(self.streams[0].error)
            raise EdgecnnError(f"{self.streams[0].name} gave no frames; check that it is a readable video")
        return summarise(self.engine, self.streams, self.started, self.stopped_by, self.batches, self.jsonl)
