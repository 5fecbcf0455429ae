"""A live camera on loopback for tests: the sample clip as an endless MJPEG stream, and a camera run on it.

    with mjpeg_camera(CUP) as url, live_run(engine, url, server) as run: ...
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.live.camera import CameraConfig, run_camera
from edgecnn.runtime.live.video import VideoOptions


def clip_jpegs(clip: Path, every: int = 1) -> list[bytes]:
    capture = cv2.VideoCapture(str(clip))
    jpegs, index = [], 0
    while True:
        ok, image = capture.read()
        if not ok:
            return jpegs
        if index % every == 0:
            jpegs.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())
        index += 1


@contextmanager
def mjpeg_camera(clip: Path, fps: float = 25.0, every: int = 1) -> Iterator[str]:
    """The clip's frames in a loop at `fps` over HTTP, until the block ends (then 503: the camera is gone)."""
    jpegs, stop = clip_jpegs(clip, every), threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's name
            if stop.is_set():
                self.send_error(503)
                return
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            index = 0
            while not stop.is_set():
                jpeg = jpegs[index % len(jpegs)]
                try:
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                     % len(jpeg) + jpeg + b"\r\n")
                except OSError:
                    return
                index += 1
                stop.wait(1.0 / fps)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://cam:hunter2@127.0.0.1:{server.server_address[1]}/live.mjpg"
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


class LiveRun:
    """`run_camera` on its own thread; it ends when its camera goes away."""

    def __init__(self, engine: Any, url: str, sinks: list[Any], **config: Any) -> None:
        self.config = CameraConfig(source=url, headless=True, video=VideoOptions(reconnect_timeout=1.0),
                                   **config)
        self.engine, self.sinks, self.messages = engine, sinks, []
        self.summary: Any = None
        self.error: EdgecnnError | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.summary = run_camera(self.engine, self.config, say=self.messages.append, sinks=self.sinks)
        except EdgecnnError as exc:  # the camera went away at the end of the test: expected
            self.error = exc


@contextmanager
def served_camera(engine: Any, clip: Path, server: Any, fps: float = 25.0,
                  **config: Any) -> Iterator[LiveRun]:
    """A loopback camera, a started `LiveServer` and a camera run feeding it; all stopped at the end."""
    with server, mjpeg_camera(clip, fps) as url:
        run = LiveRun(engine, url, [server], **config)
        run.thread.start()
        yield run
    run.thread.join(timeout=10.0)  # the camera has gone: the run gives up reconnecting within 1 s
    assert not run.thread.is_alive(), "the camera run did not end after its camera went away"


def wait_for(condition: Any, timeout: float = 15.0, every: float = 0.05) -> Any:
    """Poll until `condition()` is truthy; its value, or AssertionError after `timeout`."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {condition}")
