"""The camera loop, headless, on the real sample clips with the real ImageNet INT8 bundle."""

from __future__ import annotations

import _thread
import json
import math
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from edgecnn.runtime.core.engine import Prediction
from edgecnn.runtime.live.camera import CameraConfig, Smoother, run_camera
from edgecnn.runtime.live.h264 import pyav_available
from edgecnn.runtime.live.overlay import draw_overlay
from edgecnn.runtime.live.recording import h264_fourcc
from edgecnn.runtime.live.video import VideoOptions
from typer.testing import CliRunner

from edgecnn.cli import app
from tests.runtime.test_video import decoded_frames, mjpeg_server

ROOT = Path(__file__).resolve().parents[2]
CUP = ROOT / "samples" / "videos" / "cup.mp4"
# The "cup" is a black travel tumbler held in a hand. ImageNet has no such class: the model's top-5 holds
# a container (shaker, dispenser, beaker, mug...) on ~58% of frames in INT8 (~85% in FP32), never a box.
CONTAINERS = {"cocktail shaker", "soap dispenser", "beaker", "water bottle", "pop bottle", "pill bottle",
              "water jug", "coffee mug", "cup", "vase", "coffeepot", "saltshaker", "lotion", "sunscreen",
              "hair spray", "perfume", "milk can", "measuring cup", "pitcher", "whiskey jug"}
BOXES = {"chest", "crate", "carton", "cassette", "packet", "envelope", "tray", "pencil box"}


@pytest.fixture(scope="module")
def engine(imagenet_bundle: Path) -> Any:
    from edgecnn.runtime import load

    with load(imagenet_bundle, device="cpu", precision="int8") as engine:
        yield engine


class SlowBackend:
    """The engine's own backend made slower than the source, behind a real `Engine` (its `submit` path)."""

    streams = 1  # one worker thread below

    def __init__(self, backend: Any, delay: float) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.backend, self.delay = backend, delay
        self.name, self.device, self.input = backend.name, backend.device, backend.input
        self.num_outputs, self.load_seconds = backend.num_outputs, backend.load_seconds
        self.output_names, self.compile_seconds = backend.output_names, backend.compile_seconds
        self.pool = ThreadPoolExecutor(max_workers=1)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.infer_all(batch)[0]

    def infer_all(self, batch: np.ndarray) -> list[np.ndarray]:
        time.sleep(self.delay)
        return self.backend.infer_all(batch)

    def submit(self, batch: np.ndarray) -> Any:
        return self.pool.submit(self.infer, batch)

    def submit_all(self, batch: np.ndarray) -> Any:
        return self.pool.submit(self.infer_all, batch)

    def close(self) -> None:  # the wrapped backend belongs to the module's engine
        self.pool.shutdown(wait=True)


def slow_engine(engine: Any, delay: float) -> Any:
    """`engine` slowed down: a real `Engine` over the module's backend with a delay in each batch."""
    from edgecnn.runtime.core.engine import Engine

    return Engine(SlowBackend(engine._backend, delay), engine.meta, engine.model_path, engine.reason)


class CountingBackend(SlowBackend):
    """Two streams, and a count of the batches submitted and not yet finished (most at once)."""

    streams = 2

    def __init__(self, backend: Any, delay: float) -> None:
        from concurrent.futures import ThreadPoolExecutor

        super().__init__(backend, delay)
        self.pool = ThreadPoolExecutor(max_workers=2)
        self.lock = threading.Lock()
        self.outstanding = self.most = 0

    def submit_all(self, batch: np.ndarray) -> Any:
        with self.lock:
            self.outstanding += 1
            self.most = max(self.most, self.outstanding)
        future = self.pool.submit(self.infer_all, batch)
        future.add_done_callback(self._finished)  # before the engine's own: down before the loop hears
        return future

    def _finished(self, _: Any) -> None:
        with self.lock:
            self.outstanding -= 1


@pytest.mark.parametrize(("realtime", "most"), [(False, 3), (True, 2)])
def test_files_keep_one_batch_more_than_streams_in_flight(engine: Any, realtime: bool, most: int) -> None:
    """A file read frame by frame keeps a batch waiting inside the engine, so a freed stream starts at
    once; a live (or realtime) source never queues a frame behind the running ones."""
    from edgecnn.runtime.core.engine import Engine

    backend = CountingBackend(engine._backend, 0.05)
    counted = Engine(backend, engine.meta, engine.model_path, engine.reason)
    run_camera(counted, CameraConfig(source=CUP, headless=True, max_frames=12,
                                     video=VideoOptions(realtime=realtime)))
    backend.close()
    assert backend.most == most if not realtime else backend.most <= most


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_cup_clip_jsonl_and_video(engine: Any, tmp_path: Path) -> None:
    jsonl, video = tmp_path / "cup.jsonl", tmp_path / "cup.mp4"
    summary = run_camera(engine, CameraConfig(source=CUP, top_k=5, headless=True, save=video, jsonl=jsonl))
    records = read_jsonl(jsonl)
    assert summary.frames_read == summary.frames_processed == len(records) == 217
    assert [r["frame"] for r in records] == list(range(217)) and summary.frames_dropped == 0
    assert all(len(r["top"]) == 5 and r["inference_ms"] > 0 and r["latency_ms"] > 0 for r in records)
    labels = [{t["label"] for t in r["top"]} for r in records]
    assert sum(bool(top & CONTAINERS) for top in labels) >= 0.45 * len(records)
    assert sum(bool(top & BOXES) for top in labels) <= 0.05 * len(records)
    capture = cv2.VideoCapture(str(video))
    (row,) = summary.sources  # a file read frame by frame: the loop waits for the encoder, nothing dropped
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == row.recorded == 217 and row.recording_dropped == 0
    assert summary.jsonl_written == 217 and summary.jsonl_dropped == 0
    ok, first = capture.read()
    assert ok and first.shape == (480, 640, 3)
    assert not list(tmp_path.glob(".*tmp*"))  # temporary names renamed away
    shown = Counter(r["label"] for r in records)  # what each frame showed, "uncertain" included
    assert summary.recognised == tuple((label, count / 217) for label, count in shown.most_common(3))


def test_vid_stride_processes_every_third_frame_numbered_like_the_clip(engine: Any, tmp_path: Path) -> None:
    jsonl = tmp_path / "cup.jsonl"
    summary = run_camera(engine, CameraConfig(source=CUP, headless=True, jsonl=jsonl,
                                              video=VideoOptions(vid_stride=3)))
    records = read_jsonl(jsonl)
    frames = int(cv2.VideoCapture(str(CUP)).get(cv2.CAP_PROP_FRAME_COUNT))
    assert summary.frames_processed == len(records) == math.ceil(frames / 3) == 73
    assert [r["frame"] for r in records] == list(range(0, frames, 3))
    assert summary.frames_read == frames and summary.frames_skipped == frames - 73
    assert summary.frames_dropped == 0 and summary.sources[0].frames_skipped == frames - 73


def test_box_clip_is_told_apart(engine: Any, tmp_path: Path) -> None:
    jsonl = tmp_path / "box.jsonl"
    run_camera(engine, CameraConfig(source=CUP.with_name("box.mp4"), top_k=5, headless=True, jsonl=jsonl,
                                    max_frames=40))
    labels = [{t["label"] for t in r["top"]} for r in read_jsonl(jsonl)]
    assert len(labels) == 40 and sum(bool(top & BOXES) for top in labels) >= 0.6 * len(labels)


def test_realtime_drops_frames_and_results_are_at_most_one_inference_old(engine: Any, tmp_path: Path) -> None:
    """A model slower than the clip's 27 FPS: frames are dropped, never queued, results stay fresh."""
    jsonl = tmp_path / "realtime.jsonl"
    config = CameraConfig(source=CUP, headless=True, jsonl=jsonl, max_frames=12,
                          video=VideoOptions(realtime=True))
    slow = slow_engine(engine, 0.12)
    summary = run_camera(slow, config)
    slow.close()  # its own worker only: the wrapped backend is the module's engine's
    records = read_jsonl(jsonl)
    frames = [r["frame"] for r in records]
    assert summary.frames_dropped > 20 and len(records) == 12
    assert all(b - a >= 2 for a, b in zip(frames, frames[1:], strict=False))
    # Captured at most one frame interval before inference started, plus scheduling slack.
    assert all(r["latency_ms"] <= r["inference_ms"] + 37 + 80 for r in records)
    assert summary.latency_ms_median <= 1.5 * summary.inference_ms_median


def test_stream_dying_midway_is_reconnected_and_the_loop_goes_on(engine: Any) -> None:
    messages: list[str] = []
    with mjpeg_server(frames_per_connection=10, connections=4) as url:
        # 30 s, not 5: under load 12 (a local CI beside six engineers) FFmpeg's reopen took longer than 5 s
        config = CameraConfig(source=url, headless=True, max_frames=18,
                              video=VideoOptions(reconnect_timeout=30))
        summary = run_camera(engine, config, say=messages.append)
    assert summary.frames_processed == 18 and summary.reconnects >= 1 and summary.stopped_by == "max_frames"
    assert "secret" not in summary.source and any("reconnect" in m for m in messages)


def test_ctrl_c_ends_cleanly_and_keeps_the_outputs(engine: Any, tmp_path: Path) -> None:
    jsonl, video = tmp_path / "cut.jsonl", tmp_path / "cut.mp4"
    config = CameraConfig(source=CUP, headless=True, jsonl=jsonl, save=video,
                          video=VideoOptions(realtime=True))
    # Python's own Ctrl-C handler, whatever an earlier test of the session left installed (in the full
    # suite something did, and interrupt_main then raised nothing: the clip played to its end).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(1.0, _thread.interrupt_main)  # what Ctrl-C does, one second into an 8 s clip
    timer.start()
    try:
        summary = run_camera(engine, config)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped run_camera")
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert summary.stopped_by == "interrupt" and 5 < summary.frames_processed < 150, (
        summary.stopped_by, summary.frames_processed, previous)
    assert len(read_jsonl(jsonl)) == summary.frames_processed
    recorded = summary.sources[0].recorded
    assert int(cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FRAME_COUNT)) == recorded
    assert recorded + summary.sources[0].recording_dropped == summary.frames_processed
    assert not list(tmp_path.glob(".*tmp*"))


def test_folder_slideshow_of_mixed_sizes(engine: Any, sample_photos: Path, tmp_path: Path) -> None:
    photos = sorted((sample_photos / "tools").iterdir())[:4]
    for photo in photos:
        (tmp_path / "show").mkdir(exist_ok=True)
        (tmp_path / "show" / photo.name).write_bytes(photo.read_bytes())
    video, jsonl = tmp_path / "show.mp4", tmp_path / "show.jsonl"
    config = CameraConfig(source=tmp_path / "show", headless=True, save=video, jsonl=jsonl)
    summary = run_camera(engine, config)
    assert summary.frames_processed == 4 and [r["timestamp"] for r in read_jsonl(jsonl)] == [0, 1, 2, 3]
    assert int(cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FRAME_COUNT)) == 4


def test_min_prob_marks_uncertain_frames(engine: Any, tmp_path: Path) -> None:
    jsonl = tmp_path / "uncertain.jsonl"
    run_camera(engine, CameraConfig(source=CUP, headless=True, jsonl=jsonl, max_frames=5, min_prob=0.999))
    records = read_jsonl(jsonl)  # the ImageNet model's unknown state (1 - max softmax) goes before uncertain
    assert len(records) == 5 and [r["label"] for r in records] == [
        "unknown" if r["unknown"] else "uncertain" for r in records]


def test_smoother_is_an_exponential_moving_average() -> None:
    smooth = Smoother(0.6)
    first, second = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    assert np.allclose(smooth(first), first) and np.allclose(smooth(second), [0.6, 0.4])
    assert np.allclose(Smoother(0.0)(first), first)


def test_overlay_draws_on_a_copy() -> None:
    frame = np.full((480, 640, 3), 200, np.uint8)
    top = [Prediction(1, "coffee mug", 0.7), Prediction(2, "cup", 0.2)]
    drawn = draw_overlay(frame, top, 0.2, {"fps": 25.0, "inference_ms": 9.0, "latency_ms": 14.0})
    assert drawn.shape == frame.shape and np.all(frame == 200)
    assert np.abs(drawn[:120, :300].astype(int) - 200).mean() > 50 and np.all(drawn[300:, 400:] == 200)


def test_cli_camera_json_summary(imagenet_bundle: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["camera", str(imagenet_bundle), "--source", str(CUP), "--headless",
                                      "--max-frames", "8", "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["frames_processed"] == 8 and summary["stopped_by"] == "max_frames"
    labels, shares = zip(*summary["recognised"], strict=True)  # what it saw, not only timings
    assert 0 < len(labels) <= 3 and 0 < sum(shares) <= 1.0 + 1e-9
    table = CliRunner().invoke(app, ["camera", str(imagenet_bundle), "--source", str(CUP), "--headless",
                                     "--max-frames", "8", "--device", "cpu"])
    assert f"{labels[0]} {shares[0]:.0%}" in " ".join(table.stdout.split()), table.stdout


@pytest.mark.parametrize(("option", "name", "sources", "said"), [
    ("--save", "cup.mp4", 1, "--save"), ("--jsonl", "cup.jsonl", 1, "--jsonl"),
    ("--save", "cup-2.mp4", 2, "--save (source 2)")])  # two sources: --save cup.mp4 writes cup-1, cup-2
def test_cli_refuses_to_overwrite_save_or_jsonl_without_force(tmp_path: Path, option: str, name: str,
                                                              sources: int, said: str) -> None:
    """Before anything starts: the model path does not even exist, the refusal comes first."""
    existing = tmp_path / name
    existing.write_bytes(b"yesterday's recording")
    given = str(tmp_path / name.replace("-2", "")) if sources == 2 else str(existing)
    result = CliRunner().invoke(app, ["camera", str(tmp_path / "no-model"), *["--source", str(CUP)] * sources,
                                      "--headless", option, given])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error:") and "Traceback" not in result.output
    assert f"{said} {existing} already exists; pass --force" in " ".join(result.output.split())
    assert existing.read_bytes() == b"yesterday's recording"


def test_cli_never_overwrites_a_source_even_with_force(tmp_path: Path) -> None:
    """Two sources and --save v.mp4 write v-1.mp4 and v-2.mp4: a source named v-1.mp4 is refused."""
    import shutil

    source = tmp_path / "v-1.mp4"
    shutil.copy(CUP, source)
    result = CliRunner().invoke(app, ["camera", str(tmp_path / "no-model"), "--source", str(source),
                                      "--source", str(CUP), "--headless", "--save", str(tmp_path / "v.mp4"),
                                      "--force"])
    assert result.exit_code == 2 and "is the --source" in result.output and "itself" in result.output
    assert source.read_bytes() == CUP.read_bytes()


def test_cli_force_overwrites_save_and_jsonl(imagenet_bundle: Path, tmp_path: Path) -> None:
    video, jsonl = tmp_path / "cup.mp4", tmp_path / "cup.jsonl"
    for path in (video, jsonl):
        path.write_bytes(b"old")
    result = CliRunner().invoke(app, ["camera", str(imagenet_bundle), "--source", str(CUP), "--headless",
                                      "--max-frames", "6", "--device", "cpu", "--save", str(video),
                                      "--jsonl", str(jsonl), "--force", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(read_jsonl(jsonl)) == 6 and [r["frame"] for r in read_jsonl(jsonl)] == list(range(6))
    assert decoded_frames(video) == summary["sources"][0]["recorded"] > 0
    if pyav_available():  # H.264 through PyAV: plays in a browser, no note
        assert video_codec(video) == "h264" and "may not play" not in result.output
    elif h264_fourcc() is None:  # pip's OpenCV: the file is mp4v, and the run says so in one line
        assert "may not play in a browser" in result.output


def video_codec(path: Path) -> str:
    capture = cv2.VideoCapture(str(path))
    fourcc = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode("ascii", "replace").lower()
    capture.release()
    return {"avc1": "h264"}.get(fourcc, fourcc)


@pytest.mark.parametrize(("source", "message"), [
    ("no/such/clip.mp4", "does not exist"),
    ("42", "camera 42 cannot be opened"),
    ("http://me:secret@127.0.0.1:9/live.mjpg", "cannot open stream http://***@127.0.0.1:9/live.mjpg"),
    ("gopher://host/x", "unsupported URL scheme"),
])
def test_cli_bad_source_exits_2_with_one_line(imagenet_bundle: Path, source: str, message: str) -> None:
    result = CliRunner().invoke(app, ["camera", str(imagenet_bundle), "--source", source, "--headless"])
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0] and "secret" not in result.output


@pytest.mark.parametrize(("options", "message"), [
    (["--smooth", "1.5"], "--smooth 1.5 is out of range"),
    (["--top-k", "0"], "--top-k 0 is out of range"),
    (["--save", "out.avi"], "ending in .mp4"),
    (["--fps", "0"], "--fps 0.0 must be positive"),
])
def test_cli_bad_options_exit_2(imagenet_bundle: Path, options: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["camera", str(imagenet_bundle), "--source", str(CUP), "--headless",
                                      *options])
    assert result.exit_code == 2 and message in result.output
