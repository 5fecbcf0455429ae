"""An MJPEG stream whose part claims 2 GB and then trickles a byte at a time (issue 31 item 4, issue 25
item 6), from a real loopback HTTP server: the camera gives up within its time limits with one line
and exit 2, both when the stall comes first and when the stream is several sources' one."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.reliability.conftest import ROOT
from tests.reliability.test_camera_inputs import flaky_camera
from tests.runtime.test_camera import CUP


def trickling_stream() -> Any:
    """test_camera_inputs' loopback camera, each connection one trickling 2 GB part."""
    return flaky_camera(lambda connection: ["trickle"])


def run_camera(bundle: Path, *sources: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    command = [sys.executable, "-m", "edgecnn", "camera", str(bundle), *sources, "--headless",
               "--reconnect-timeout", "2", "--device", "cpu"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    return done, time.monotonic() - started


def test_a_trickling_2gb_part_ends_in_one_line(hand_bundle: Path) -> None:
    with trickling_stream() as url:
        done, seconds = run_camera(hand_bundle, "--source", url)
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "127.0.0.1" in errors[0], done.stderr[-2000:]
    assert seconds < 60, seconds  # open (10 s) + read (5 s) + reconnect (2 s) limits, with room


def test_beside_a_file_the_trickling_stream_gives_up_and_the_file_goes_on(hand_bundle: Path) -> None:
    """Several sources: the stalled one is given up within its limits, said in one line, and the file
    plays on to --max-frames (900 frames at the clip's 27 FPS: about 33 s)."""
    with trickling_stream() as url:
        done, _ = run_camera(hand_bundle, "--source", url, "--source", str(CUP), "--realtime", "--loop",
                             "--max-frames", "900")
    assert done.returncode == 0, done.stderr[-2000:]
    said = " ".join(done.stderr.split())  # Rich wraps the line on the terminal
    assert said.count("the other sources go on") == 1 and "gave up after 2 s" in said, done.stderr[-2000:]
