"""Streams that connect but never yield a whole frame: an MJPEG part that claims 2 GB and trickles.

OpenCV's timeouts interrupt FFmpeg mid-part, and OpenCV then calls the capture opened (or the read good)
with a frame made up from the bytes so far; such a stream used to reconnect forever, one made-up frame
per connection, whatever --reconnect-timeout said. Every server here runs on 127.0.0.1 in the test, and
every wait is bounded (BOUND is a hang guard, far above what any case takes, not a speed check).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.live.video import VideoOptions, VideoSource

from tests.reliability.conftest import assert_user_error, run_cli
from tests.reliability.test_camera_inputs import QuietHandler, loopback_camera

BOUND = 60.0
GREY = 80  # the value of every pixel of a whole frame the servers send
WHOLE = cv2.imencode(".jpg", np.full((96, 128, 3), GREY, np.uint8))[1].tobytes()
NOISE = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8))[1].tobytes()
CLAIMED = 2_000_000_000  # bytes the endless part says it has
Plan = Callable[[int], int]  # connection number (1, 2, ...) -> whole frames sent before the endless part


@contextmanager
def trickling_stream(plan: Plan) -> Iterator[str]:
    """A loopback MJPEG camera: each connection sends `plan(n)` whole frames, then a part whose header
    claims 2 GB, its first 2000 real JPEG bytes, and then one byte every 50 ms."""
    connections: list[int] = []
    stop = threading.Event()

    class Handler(QuietHandler):
        def do_GET(self) -> None:  # http.server's name
            connections.append(1)
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            try:
                for _ in range(plan(len(connections))):
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                     b"%s\r\n" % (len(WHOLE), WHOLE))
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s"
                                 % (CLAIMED, NOISE[:2000]))
                while not stop.wait(0.05):
                    self.wfile.write(b"\x00")
                    self.wfile.flush()
            except OSError:  # the reader hung up
                pass

    with loopback_camera(Handler, stop) as url:
        yield url


FAST = VideoOptions(reconnect_timeout=2.0, open_timeout=1.0, read_timeout=1.0)
# name -> (whole frames per connection, started waiting for the open, words of the error)
SOURCE_CASES: dict[str, tuple[Plan, bool, tuple[str, ...]]] = {
    "never a whole frame": (lambda n: 0, True, ("cannot open stream",)),
    "never a whole frame, opened on the thread": (lambda n: 0, False, ("cannot open stream", "gave up")),
    "three frames, then only endless parts": (lambda n: 3 if n == 1 else 0, True, ("could not reconnect",)),
}


@pytest.mark.parametrize("name", SOURCE_CASES)
def test_stream_without_whole_frames_gives_up_with_one_line(name: str) -> None:
    """Only whole frames are handed out, and the source ends in one line instead of reconnecting forever."""
    plan, wait_for_open, words = SOURCE_CASES[name]
    frames: list[np.ndarray] = []
    started = time.perf_counter()
    with trickling_stream(plan) as url, pytest.raises(EdgecnnError) as error:
        source = VideoSource(url, FAST, say=lambda m: None)
        try:
            source.start(wait_for_open=wait_for_open)
            while time.perf_counter() - started < BOUND and (frame := source.get()) is not None:
                frames.append(frame.image)
        finally:
            source.close()
    message = str(error.value)
    assert all(word in message for word in words) and "\n" not in message and "secret" not in message
    assert all(int(np.median(image)) in (GREY - 1, GREY, GREY + 1) for image in frames)  # no made-up frame
    assert time.perf_counter() - started < BOUND


def test_camera_on_a_stream_without_whole_frames_exits_2(hand_bundle: Path, tmp_path: Path) -> None:
    """The whole command, with --reconnect-timeout 2: one line, exit 2, no JSONL line of a made-up frame."""
    jsonl = tmp_path / "frames.jsonl"
    box: list = []
    with trickling_stream(lambda n: 0) as url:
        thread = threading.Thread(target=lambda: box.append(run_cli(
            "camera", hand_bundle, "--source", url, "--headless", "--device", "cpu",
            "--reconnect-timeout", "2", "--jsonl", jsonl)), daemon=True)
        thread.start()
        thread.join(BOUND)
    assert not thread.is_alive(), f"camera still running after {BOUND:.0f} s"
    assert_user_error(box[0], "cannot open stream")
    assert "secret" not in box[0].output and not (jsonl.exists() and jsonl.read_text())
