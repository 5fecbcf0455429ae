"""Hangs, second pass: a FIFO (or other non-regular file) never blocks a read, and every number an option
takes is finite and in a sane range, so no loop runs forever and no command starts 10000 threads."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tests.reliability.conftest import assert_user_error, run_cli

BOUND = 60.0  # seconds: far above what any of these takes; a hang fails the test instead of the suite


def run_bounded(*args: object) -> Any:
    """`run_cli` on a thread, failing the test if it has not returned within BOUND seconds."""
    box: list[Any] = []
    thread = threading.Thread(target=lambda: box.append(run_cli(*args)), daemon=True)
    thread.start()
    thread.join(BOUND)
    if thread.is_alive():
        _unblock_fifos()
        pytest.fail(f"edgecnn {' '.join(map(str, args))} still running after {BOUND:.0f} s")
    return box[0]


FIFOS: list[Path] = []


def _fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    FIFOS.append(path)
    return path


def _unblock_fifos() -> None:
    """Open each FIFO for writing (non-blocking) so a reader stuck in open() returns and the thread ends."""
    for path in FIFOS:
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass


def _image(tmp: Path) -> Path:
    cv2.imwrite(str(tmp / "red.png"), np.full((8, 8, 3), (0, 0, 255), np.uint8))
    return tmp / "red.png"


Case = Callable[[Path, Path], list[object]]  # (tmp, bundle) -> CLI arguments
FIFO_CASES: dict[str, tuple[Case, tuple[str, ...]]] = {
    "FIFO named as an image": (
        lambda t, b: ["predict", b, _fifo(t / "cam.jpg"), "--device", "cpu"],
        ("cam.jpg is a FIFO (named pipe), not a regular file",),
    ),
    "FIFO named as the model": (
        lambda t, b: ["predict", _fifo(t / "m.onnx"), _image(t), "--device", "cpu"],
        ("m.onnx", "FIFO"),
    ),
    "FIFO as the --labels file": (
        lambda t, b: [
            "predict",
            b / "model.onnx",
            _image(t),
            "--labels",
            _fifo(t / "l.txt"),
            "--device",
            "cpu",
        ],
        ("l.txt is a FIFO",),
    ),
    "character device as an image (/dev/zero)": (
        lambda t, b: ["predict", b, Path("/dev/zero"), "--device", "cpu"],
        ("/dev/zero", "character device"),
    ),
    "FIFO as --weights": (lambda t, b: ["finetune", t, "--weights", _fifo(t / "w.pt")], ("w.pt is a FIFO",)),
}


@pytest.mark.parametrize("name", list(FIFO_CASES))
def test_non_regular_file_fails_at_once(
    name: str, hand_bundle: Path, two_class_data: Path, tmp_path: Path
) -> None:
    make, words = FIFO_CASES[name]
    if "weights" in name:
        import shutil

        shutil.copytree(two_class_data, tmp_path, dirs_exist_ok=True)
    assert_user_error(run_bounded(*make(tmp_path, hand_bundle)), *words)


def test_fifo_in_a_folder_is_passed_over(hand_bundle: Path, tmp_path: Path) -> None:
    """A FIFO among the images of a folder is not an image file: predict classifies the rest."""
    folder = tmp_path / "photos"
    folder.mkdir()
    _image(folder)
    _fifo(folder / "pipe.png")
    result = run_bounded("predict", hand_bundle, folder, "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    assert "red.png" in result.output and "pipe.png" not in result.output


def test_read_image_refuses_a_fifo_without_opening_it(tmp_path: Path) -> None:
    """The validation images a checkpoint lists and calibration images go through read_image too."""
    from edgecnn.runtime.core.images import is_readable

    fifo = _fifo(tmp_path / "val.jpg")
    box: list[bool] = []
    thread = threading.Thread(target=lambda: box.append(is_readable(fifo)), daemon=True)
    thread.start()
    thread.join(BOUND)
    if thread.is_alive():
        _unblock_fifos()
    assert box == [False]


# -- every number finite, every count in range ------------------------------------------------------
NUMBERS: dict[str, tuple[Case, tuple[str, ...]]] = {
    "camera --reconnect-timeout nan": (
        lambda t, b: ["camera", b, "--source", _image(t), "--headless", "--reconnect-timeout", "nan"],
        ("--reconnect-timeout nan is not a usable number", "0 to 86400"),
    ),
    "camera --fps inf": (
        lambda t, b: ["camera", b, "--source", _image(t), "--headless", "--fps", "inf"],
        ("--fps inf is not a usable number", "0 to 1000"),
    ),
    "camera --smooth nan": (
        lambda t, b: ["camera", b, "--source", _image(t), "--headless", "--smooth", "nan"],
        ("--smooth nan", "finite number"),
    ),
    "bench --seconds inf": (
        lambda t, b: ["bench", b, "--seconds", "inf"],
        ("--seconds inf", "0.01 to 86400"),
    ),
    "bench --seconds nan": (lambda t, b: ["bench", b, "--seconds", "nan"], ("--seconds nan",)),
    "bench --seconds 10^9": (
        lambda t, b: ["bench", b, "--seconds", "1e9"],
        ("--seconds 1000000000 is out of",),
    ),
    "bench --batch 10^22": (
        lambda t, b: ["bench", b, "--batch", str(10**22)],
        ("--batch 10000000000000000000000 is out of range",),
    ),
    "bench --nireq 100000 (issue 31)": (
        lambda t, b: ["bench", b, "--nireq", "100000"], ("--nireq 100000 is out of range", "1 to 1024")),
    "bench --nstreams 0": (lambda t, b: ["bench", b, "--nstreams", "0"], ("--nstreams 0 is out of range",)),
    "predict --threads 10000": (
        lambda t, b: ["predict", b, _image(t), "--threads", "10000"],
        ("--threads 10000 is out of range", "1 to"),
    ),
    "predict --threads 0": (lambda t, b: ["predict", b, _image(t), "--threads", "0"], ("--threads 0",)),
    "eval --threads -1": (lambda t, b: ["eval", b, t, "--threads", "-1"], ("--threads -1 is out of range",)),
    "export --batch 10^22": (
        lambda t, b: ["export", b / "model.onnx", "--batch", str(10**22)],
        ("--batch 10000000000000000000000 is out of range",),
    ),
    "export --batch '²' (a Unicode digit)": (
        lambda t, b: ["export", b / "model.onnx", "--batch", "²"],
        ("--batch must be 'dynamic' or a positive",),
    ),
    "export --max-drop nan": (
        lambda t, b: ["export", b / "model.onnx", "--max-drop", "nan"],
        ("--max-drop nan", "-100 to 100"),
    ),
    "export --calibration-size 10^22": (
        lambda t, b: ["export", b / "model.onnx", "--calibration-size", str(10**22)],
        ("--calibration-size",),
    ),
    "finetune --seed 10^22": (
        lambda t, b: ["finetune", t, "--seed", str(10**22)],
        ("--seed 10000000000000000000000", "0 to 4294967295"),
    ),
    "finetune --lr inf": (lambda t, b: ["finetune", t, "--lr", "inf"], ("--lr inf is not a usable number",)),
    "finetune --lr nan (Typer's min=0 check: usage box)": (
        lambda t, b: ["finetune", t, "--lr", "nan"], ("Invalid value for '--lr'",)),
    "finetune --dist-timeout inf": (
        lambda t, b: ["finetune", t, "--dist-timeout", "inf"],
        ("--dist-timeout inf",),
    ),
    "finetune --workers 10000": (lambda t, b: ["finetune", t, "--workers", "10000"], ("--workers 10000",)),
    "serve --instances 10000": (
        lambda t, b: ["serve", b, "--instances", "10000"],
        ("--instances 10000", "1 to 64"),
    ),
    "serve --http-port 70000": (
        lambda t, b: ["serve", b, "--http-port", "70000"],
        ("--http-port 70000", "65535"),
    ),
    "triton --max-batch 10^22": (
        lambda t, b: ["triton", b, t / "repo", "--max-batch", str(10**22)],
        ("--max-batch 10000000000000000000000",),
    ),
}


@pytest.mark.parametrize("name", list(NUMBERS))
def test_numbers_are_finite_and_in_range(name: str, hand_bundle: Path, tmp_path: Path) -> None:
    make, words = NUMBERS[name]
    assert_user_error(run_bounded(*make(tmp_path, hand_bundle)), *words, one_line="usage box" not in name)
    assert not (tmp_path / "repo").exists()


def test_unicode_digit_source_is_a_file_name(hand_bundle: Path) -> None:
    """'²' passes str.isdigit() but int('²') fails: as --source it is a (missing) file, not a camera."""
    assert_user_error(
        run_bounded("camera", hand_bundle, "--source", "²", "--headless"), "video file ² does not exist"
    )
