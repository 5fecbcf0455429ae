"""`edgecnn capture`: frames of a real sample video saved as training images, and the ways it can fail."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from edgecnn.runtime.core.images import read_image
from edgecnn.runtime.live.capture import CaptureConfig, capture, change, thumbnail
from typer.testing import CliRunner

from edgecnn.cli import app
from tests.runtime.test_video import mjpeg_server

ROOT = Path(__file__).resolve().parents[2]
CUP = ROOT / "samples" / "videos" / "cup.mp4"
BOX = ROOT / "samples" / "videos" / "box.mp4"
runner = CliRunner()


def video_size(path: Path) -> tuple[int, int]:
    capture = cv2.VideoCapture(str(path))
    try:
        return int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    finally:
        capture.release()


def test_saves_full_frames_into_the_finetune_layout(tmp_path: Path) -> None:
    result = runner.invoke(app, ["capture", str(CUP), "--out", str(tmp_path), "--label", "cup",
                                 "--count", "5"])
    assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "cup").glob("*.jpg"))
    assert len(files) == 5
    assert "saved 5 of 5 frames" in result.output
    for file in files:
        assert read_image(file).shape[:2] == video_size(CUP)  # the whole frame, not the model's crop
    assert not [p for p in (tmp_path / "cup").iterdir() if p.name.startswith(".")]  # no temporary files


def test_a_second_capture_adds_and_never_overwrites(tmp_path: Path) -> None:
    first = capture(CaptureConfig(str(CUP), tmp_path, "cup", count=4))
    before = {Path(f).name: Path(f).read_bytes() for f in first.files}
    second = capture(CaptureConfig(str(CUP), tmp_path, "cup", count=4))
    assert len(list((tmp_path / "cup").glob("*.jpg"))) == 8
    assert not set(before) & {Path(f).name for f in second.files}
    assert all((tmp_path / "cup" / name).read_bytes() == data for name, data in before.items())


def test_a_label_with_spaces_around_names_the_folder_and_the_files_alike(tmp_path: Path) -> None:
    summary = capture(CaptureConfig(str(CUP), tmp_path, " cup ", count=2))
    assert [Path(f).parent.name for f in summary.files] == ["cup", "cup"]
    assert all(Path(f).name.startswith("cup-") for f in summary.files)


def test_near_identical_frames_are_skipped(tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    still = cv2.imread(str(ROOT / "samples" / "photos" / "tools" / next(
        p.name for p in (ROOT / "samples" / "photos" / "tools").iterdir())))
    assert still is not None
    noise = np.random.default_rng(0)
    for i in range(6):  # the same picture with sensor-like noise, then a different picture
        noisy = np.clip(still.astype(np.int16) + noise.integers(-3, 4, still.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(frames / f"{i}.png"), noisy)
    cv2.imwrite(str(frames / "9.png"), 255 - still)
    summary = capture(CaptureConfig(str(frames), tmp_path / "data", "tool", count=10, min_change=0.02))
    assert (summary.saved, summary.skipped_similar) == (2, 5)
    assert summary.ended_early


def test_every_spaces_the_saved_frames_in_media_time(tmp_path: Path) -> None:
    fps = cv2.VideoCapture(str(CUP)).get(cv2.CAP_PROP_FPS)
    summary = capture(CaptureConfig(str(CUP), tmp_path, "cup", count=1000, every=1.0, min_change=0.0))
    indices = sorted(int(Path(f).stem.rsplit("-", 1)[1]) for f in summary.files)
    assert len(indices) >= 5 and summary.skipped_interval > 0
    assert min(np.diff(indices)) / fps >= 1.0 - 1.0 / fps


def test_duration_stops_at_that_media_time(tmp_path: Path) -> None:
    fps = cv2.VideoCapture(str(CUP)).get(cv2.CAP_PROP_FPS)
    summary = capture(CaptureConfig(str(CUP), tmp_path, "cup", count=1000, min_change=0.0, duration=3.0))
    assert summary.duration_reached and not summary.ended_early
    before = math.ceil(3.0 * fps)  # frames 0 .. before-1 start before 3.0 s
    assert (summary.saved, summary.frames_read) == (before, before + 1)  # the next is read, not saved


def test_thumbnail_difference_tells_a_moved_object_from_the_same_frame() -> None:
    frames = cv2.VideoCapture(str(BOX))
    first, later = frames.read()[1], None
    for _ in range(120):
        later = frames.read()[1]
    frames.release()
    assert change(thumbnail(first), thumbnail(first)) == 0.0
    assert change(thumbnail(first), thumbnail(later)) > 0.02


def test_a_source_that_ends_early_says_how_many_and_exits_0(tmp_path: Path) -> None:
    result = runner.invoke(app, ["capture", str(CUP), "--out", str(tmp_path), "--label", "cup",
                                 "--count", "100000", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["ended_early"] and record["frames_read"] == 217
    assert record["saved"] == len(list((tmp_path / "cup").glob("*.jpg"))) > 0


@pytest.mark.parametrize("label", ["../up", "a/b", "..", ".hidden", "a\x1b[2Jb", "tab\there", "", "x" * 101,
                                   "back\\slash"])
def test_bad_labels_are_refused_before_anything_is_written(tmp_path: Path, label: str) -> None:
    out = tmp_path / "data"
    result = runner.invoke(app, ["capture", str(CUP), "--out", str(out), "--label", label])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and "--label" in result.output
    assert "\x1b" not in result.output
    assert not out.exists() and not (tmp_path / "up").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--out", "/proc/edgecnn-capture"], "cannot write --out"),
    (["--count", "0"], "--count"),
    (["--every", "nan"], "--every"),
    (["--min-change", "2"], "--min-change"),
])
def test_bad_options_are_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    base = ["capture", str(CUP), "--label", "cup"]
    if "--out" not in args:
        base += ["--out", str(tmp_path)]
    result = runner.invoke(app, base + args)
    assert result.exit_code == 2 and message in result.output
    assert not list(tmp_path.rglob("*.jpg"))


@pytest.fixture
def small_disk(tmp_path: Path) -> Path:
    """A real 18 MiB filesystem (tmpfs): the capture must stop before it fills, keeping what it saved."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=18m", "tmpfs", str(disk)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_a_filling_disk_stops_with_an_error_and_keeps_every_saved_frame(small_disk: Path) -> None:
    result = runner.invoke(app, ["capture", str(BOX), "--out", str(small_disk), "--label", "box",
                                 "--count", "100000", "--min-change", "0"])
    assert result.exit_code == 2
    error = result.output.strip().splitlines()[-1]
    files = list((small_disk / "box").iterdir())
    assert error.startswith("error: ") and "almost full" in error and "choose another folder" in error
    assert f"the {len(files)} frames saved" in error
    assert len(files) > 10
    assert all(f.suffix == ".jpg" and read_image(f).shape[:2] == video_size(BOX) for f in files)


def test_ctrl_c_keeps_the_saved_frames_and_says_how_many(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "grey"
    with mjpeg_server(frames_per_connection=100_000, connections=1) as url:
        process = subprocess.Popen(  # a live stream, a frame saved every 0.3 s: running when interrupted
            [sys.executable, "-m", "edgecnn", "capture", url, "--out", str(tmp_path / "data"),
             "--label", "grey", "--every", "0.3", "--min-change", "0", "--headless"], cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (folder.is_dir() and list(folder.glob("*.jpg"))):
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    saved = len(list(folder.glob("*.jpg")))
    assert 1 <= saved < 100
    assert f"saved {saved} of 100 frames" in stdout and "interrupted" in stdout
    assert "Traceback" not in stderr and "secret" not in stdout + stderr
