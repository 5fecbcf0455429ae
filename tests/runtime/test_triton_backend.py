"""The triton:// backend against a real `edgecnn serve` on loopback: predict and camera as a user runs them.

Runs in the serve venv (`make test-serve`): nvidia-pytriton needs numpy<2.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runtime.test_serve import HOST, NAME, Server, needs_server, served

ROOT = Path(__file__).resolve().parents[2]
VIDEOS = ROOT / "samples" / "videos"


def edgecnn(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The CLI in a fresh process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "edgecnn", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})


def rows(stdout: str) -> dict[str, tuple[str, bool]]:
    """predict --json lines -> {file name: (top-1 label, unknown)}."""
    found = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return {Path(r["file"]).name: (r["predictions"][0]["label"], r["unknown"]) for r in found}


@pytest.fixture(scope="module")
def server(imagenet_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with served(imagenet_bundle, tmp_path_factory.mktemp("triton-backend") / "server.log") as running:
        yield running


def test_predict_through_triton_gives_the_local_bundles_answers(server: Server, imagenet_bundle: Path,
                                                                 sample_photos: Path) -> None:
    """Labels, preprocessing and the unknown threshold come from the server: the caller passes images."""
    local = edgecnn("predict", str(imagenet_bundle), str(sample_photos), "--json")
    served = edgecnn("predict", f"triton://{HOST}:{server.http}/{NAME}", str(sample_photos), "--json")
    assert local.returncode == 0, local.stderr
    assert served.returncode == 0, served.stderr
    expected, answered = rows(local.stdout), rows(served.stdout)
    assert len(expected) >= 20 and answered == expected
    scores = [json.loads(line)["unknown_score"] for line in served.stdout.splitlines()]
    assert all(score is not None for score in scores)  # the bundle's detector, its threshold from the server
    assert f"on triton {HOST}:{server.http}" in served.stderr  # the model line names the server


def test_camera_runs_a_video_through_triton(server: Server, tmp_path: Path) -> None:
    jsonl = tmp_path / "cup.jsonl"
    done = edgecnn("camera", f"triton://{HOST}:{server.http}/{NAME}", "--source", str(VIDEOS / "cup.mp4"),
                   "--headless", "--max-frames", "40", "--jsonl", str(jsonl))
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(records) == 40 and all(r["top"] and r["unknown_score"] is not None for r in records)
    assert "Traceback" not in done.stderr


def test_bench_measures_the_served_model(server: Server) -> None:
    done = edgecnn("bench", f"triton://{HOST}:{server.http}/{NAME}", "--seconds", "1", "--json",
                   "--no-cold-start")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["backend"] == "triton" and report["latency_ms"]["median"] > 0


@pytest.mark.skipif(importlib.util.find_spec("tritonclient") is None,
                    reason="triton:// needs the [serve] extra's client; make test-serve's venv has it")
@pytest.mark.parametrize(("model", "words"), [
    (f"triton://{HOST}:9/{NAME}", f"cannot reach the Triton server {HOST}:9"),
    ("triton://user:s3cret@127.0.0.1:8000/m", "a Triton model is written triton://HOST:PORT/MODEL"),
])
def test_a_server_that_is_not_there_is_one_line(model: str, words: str, sample_photos: Path) -> None:
    done = edgecnn("predict", model, str(sample_photos))
    assert done.returncode == 2
    assert words in done.stderr and "s3cret" not in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_unknown_model_name_is_one_line(server: Server, sample_photos: Path) -> None:
    done = edgecnn("predict", f"triton://{HOST}:{server.http}/nope", str(sample_photos))
    assert done.returncode == 2 and "has no model nope ready" in done.stderr, done.stderr


def test_server_stopped_mid_run_gives_the_cameras_reconnect_then_stop(imagenet_bundle: Path,
                                                                      tmp_path: Path) -> None:
    """The camera says it lost the server and retries, then stops with one line and exit 2: no traceback."""
    needs_server()
    running = Server(imagenet_bundle, tmp_path / "server.log")
    jsonl = tmp_path / "box.jsonl"
    try:
        running.wait_ready()
        command = [sys.executable, "-m", "edgecnn", "camera", f"triton://{HOST}:{running.http}/{NAME}",
                   "--source", str(VIDEOS / "box.mp4"), "--realtime", "--headless", "--jsonl", str(jsonl)]
        camera = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        time.sleep(5.0)  # started, connected and classifying: the clip plays for 15 s
        assert camera.poll() is None, camera.communicate()
        running.stop(timeout=45)  # with requests in flight, its exit code is test_serve's matter
        _, stderr = camera.communicate(timeout=90)
    finally:
        running.stop()
    assert camera.returncode == 2, stderr
    assert f"lost the Triton server {HOST}:{running.http}/{NAME}" in stderr
    assert "reconnecting (giving up after 15 s)" in stderr
    assert "could not reconnect within 15 s" in stderr and "check the server and start again" in stderr
    assert "Traceback" not in stderr
