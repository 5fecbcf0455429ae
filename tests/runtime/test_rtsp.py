"""`edgecnn camera` on a real RTSP camera: GStreamer's RTSP server on loopback, with a user and password."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.runtime.cameras import wait_for
from tests.runtime.test_camera import CUP

SERVER = Path(__file__).with_name("rtsp_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"
PASSWORD = "Pa55-w0rd-x7"


def _gst_missing() -> str | None:
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} is missing"
    done = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=30)
    if done.returncode != 0:
        return ("GStreamer's RTSP server is not installed (apt-get install python3-gi "
                "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad "
                "gstreamer1.0-plugins-ugly gstreamer1.0-libav)")
    return None


pytestmark = pytest.mark.skipif(bool(reason := _gst_missing()), reason=reason or "")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def rtsp_camera(port: int) -> Iterator[subprocess.Popen]:
    """The RTSP server as its own process (the system python3 has gi, the venv has not)."""
    process = subprocess.Popen([SYSTEM_PYTHON, str(SERVER), str(CUP), str(port), "viewer", PASSWORD],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("ready rtsp://127.0.0.1:"), line
        yield process
    finally:
        process.kill()
        process.wait(timeout=10)


def api_state(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/state", timeout=2) as response:
            return json.load(response)
    except OSError:
        return None


def test_rtsp_camera_with_password_survives_a_server_restart(imagenet_bundle: Path, tmp_path: Path) -> None:
    rtsp_port, web_port = free_port(), free_port()
    url = f"rtsp://viewer:{PASSWORD}@127.0.0.1:{rtsp_port}/cam"
    command = [sys.executable, "-m", "edgecnn", "camera", str(imagenet_bundle), "--source", url, "--headless",
               "--device", "cpu", "--serve", str(web_port), "--jsonl", str(tmp_path / "rtsp.jsonl"),
               "--reconnect-timeout", "20", "--max-frames", "400", "--json"]
    started = time.perf_counter()
    with rtsp_camera(rtsp_port) as server:
        camera = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, "COLUMNS": "200"})
        try:
            first = wait_for(lambda: (s := api_state(web_port)) and s["frame"] is not None and s, timeout=30)
            assert first["source"] == f"rtsp://***@127.0.0.1:{rtsp_port}/cam"
            assert PASSWORD not in json.dumps(first)
            server.send_signal(signal.SIGKILL)  # the camera dies without a goodbye
            server.wait(timeout=10)
            time.sleep(1.0)
            with rtsp_camera(rtsp_port):  # ... and comes back on the same address
                state = wait_for(lambda: (s := api_state(web_port)) and s["stats"]["reconnects"] >= 1 and s,
                                 timeout=30)
                back = state["stats"]["frames_processed"]
                wait_for(lambda: api_state(web_port)["stats"]["frames_processed"] > back + 10, timeout=15)
                camera.send_signal(signal.SIGINT)  # Ctrl-C: ends cleanly with the summary
                out, err = camera.communicate(timeout=20)
        finally:
            camera.kill()
    assert time.perf_counter() - started < 90
    assert camera.returncode == 130, err  # Ctrl-C ends a camera run with its summary, exit 130
    assert state["source"] == f"rtsp://***@127.0.0.1:{rtsp_port}/cam"
    assert "lost rtsp://***@127.0.0.1" in err and "reconnected to rtsp://***@" in err
    assert PASSWORD not in out + err and PASSWORD not in (tmp_path / "rtsp.jsonl").read_text()
    records = [json.loads(line) for line in (tmp_path / "rtsp.jsonl").read_text().splitlines()]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["reconnects"] == 1 and summary["stopped_by"] == "interrupt"
    assert len(records) == summary["frames_processed"] > 10 and all(len(r["top"]) == 3 for r in records)
