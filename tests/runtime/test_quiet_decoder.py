"""No FFmpeg decoder chatter on the terminal (issue 30, item 9): `make demo`'s camera step on box.mp4
printed "[h264 @ 0x...] A non-intra slice in an IDR NAL unit." twice, because the --save codec probe
was the process's first use of OpenCV's FFmpeg, before the runtime set FFmpeg's log level."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.reliability.conftest import ROOT, colour_onnx

BOX = ROOT / "samples" / "videos" / "box.mp4"


@pytest.mark.parametrize("save", [False, True])
def test_camera_with_a_seek_prints_no_decoder_lines(tmp_path: Path, save: bool) -> None:
    model = colour_onnx(tmp_path / "model.onnx")
    command = [sys.executable, "-m", "edgecnn", "camera", str(model), "--source", str(BOX), "--start", "9",
               "--headless", "--max-frames", "20", "--device", "cpu"]
    command += ["--save", str(tmp_path / "out.mp4")] if save else []
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "[h264 @" not in done.stderr and "NAL unit" not in done.stderr, done.stderr
