"""The camera window as a person sees it: a real X server (Xvfb), keys typed with xdotool, a screenshot."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.runtime.cameras import mjpeg_camera, wait_for
from tests.runtime.test_camera import CUP

pytestmark = pytest.mark.skipif(not (shutil.which("Xvfb") and shutil.which("xdotool")),
                                reason="no X server to test on (apt-get install xvfb xdotool)")
TITLE = "edgecnn camera"


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    """A fresh Xvfb; -displayfd lets it pick a free display number and tell us."""
    read, write = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x800x24", "-nolisten",
                               "tcp"], pass_fds=(write,), stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as pipe:
        number = pipe.readline().strip()
    try:
        yield f":{number}"
    finally:
        server.kill()
        server.wait(timeout=10)


def xdotool(display: str, *args: str) -> str:
    done = subprocess.run(["xdotool", *args], env={**os.environ, "DISPLAY": display}, capture_output=True,
                          text=True, timeout=15)
    return done.stdout


def window(display: str, process: subprocess.Popen) -> str:
    """The camera's window, once its first frame is shown (a loaded machine may take a while)."""
    def found() -> list[str]:
        if process.poll() is not None:
            raise AssertionError(f"edgecnn camera ended ({process.returncode}): {process.stderr.read()}")
        return xdotool(display, "search", "--name", f"^{TITLE}$").split()

    return wait_for(found, timeout=90)[0]


def geometry(display: str, window_id: str) -> dict[str, str]:
    lines = xdotool(display, "getwindowgeometry", "--shell", window_id).split()
    return dict(line.split("=") for line in lines)


def size(geometry: dict[str, str]) -> tuple[int, int]:
    return int(geometry["WIDTH"]), int(geometry["HEIGHT"])


def press(display: str, window_id: str, key: str) -> None:
    xdotool(display, "windowfocus", "--sync", window_id)
    xdotool(display, "key", key)


def frame_index(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/state", timeout=5) as response:
        return json.load(response)["frame"] or -1


def start_camera(bundle: Path, display: str, source: str, folder: Path, *more: str
                 ) -> tuple[subprocess.Popen, int]:
    """`edgecnn camera` with a window on `display` and its page on a free port (to watch its frames)."""
    command = [sys.executable, "-m", "edgecnn", "camera", str(bundle), "--source", source, "--device", "cpu",
               "--serve", "0", "--json", *more]
    process = subprocess.Popen(command, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "DISPLAY": display, "COLUMNS": "200",
                                    "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    line = process.stderr.readline()
    assert line.startswith("camera page: http://127.0.0.1:"), line
    return process, int(line.rsplit(":", 1)[1].strip().strip("/"))


def test_window_fits_the_frame_shows_the_overlay_and_keys_work(imagenet_bundle: Path, display: str,
                                                              tmp_path: Path) -> None:
    from PIL import ImageGrab

    with mjpeg_camera(CUP) as url:
        process, port = start_camera(imagenet_bundle, display, url, tmp_path, "--snapshot-dir", "shots")
        try:
            window_id = window(display, process)
            wait_for(lambda: size(geometry(display, window_id)) == (640, 480), timeout=5)  # the frame's size
            wait_for(lambda: frame_index(port) > 10, timeout=60)
            where = geometry(display, window_id)
            assert size(where) == (640, 480)
            x, y = int(where["X"]), int(where["Y"])
            shot = np.asarray(ImageGrab.grab(xdisplay=display).convert("RGB"))[y:y + 480, x:x + 640]
            ImageGrab.grab(xdisplay=display).save(tmp_path / "window.png")
            panel, wall = shot[:60, :200].astype(int), shot[300:, 20:120].astype(int)
            assert wall.mean() > 150 and panel.mean() < wall.mean() - 60  # the dimmed results panel...
            white = panel.min(axis=2) > 200  # ...with white text on it, or the unknown state's orange
            red, green, blue = panel[..., 0], panel[..., 1], panel[..., 2]
            orange = (red > 200) & (green > 100) & (green < 180) & (blue < 80)
            assert (white | orange).mean() > 0.02

            press(display, window_id, "s")
            wait_for(lambda: list((tmp_path / "shots").glob("snapshot-*.png")), timeout=10)
            press(display, window_id, "space")  # pause: no new results, and the window says so
            time.sleep(0.5)
            paused = frame_index(port)
            assert_paused_mark(display, x, y, wall.mean())
            time.sleep(1.0)
            assert frame_index(port) == paused
            press(display, window_id, "space")
            wait_for(lambda: frame_index(port) > paused + 3, timeout=10)
            press(display, window_id, "q")
            out, err = process.communicate(timeout=20)
        finally:
            process.kill()
    assert process.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["stopped_by"] == "quit"


def assert_paused_mark(display: str, x: int, y: int, wall: float) -> None:
    """The held frame's PAUSED band: dimmed, with yellow-orange text on it."""
    from PIL import ImageGrab

    held = np.asarray(ImageGrab.grab(xdisplay=display).convert("RGB"))[y:y + 480, x:x + 640]
    band = held[-30:].astype(int)
    yellow = (band[..., 0] > 200) & (band[..., 1] > 150) & (band[..., 2] < 80)
    assert band.mean() < wall - 60 and yellow.mean() > 0.01


def test_escape_quits(imagenet_bundle: Path, display: str, tmp_path: Path) -> None:
    with mjpeg_camera(CUP) as url:
        process, port = start_camera(imagenet_bundle, display, url, tmp_path)
        try:
            window_id = window(display, process)
            wait_for(lambda: frame_index(port) > 2, timeout=60)
            press(display, window_id, "Escape")
            out, err = process.communicate(timeout=20)
        finally:
            process.kill()
    assert process.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["stopped_by"] == "quit"
