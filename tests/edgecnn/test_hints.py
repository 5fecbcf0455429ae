"""Usage slips get one line ending in the corrected command, exit 2, no Rich box (issue 30, item 5)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgecnn.cli import app
from tests.reliability.conftest import ROOT

runner = CliRunner()
BUNDLE = "bundles/tour"  # never opened: the command line is refused before any model is loaded


@pytest.mark.parametrize(("args", "expected"), [
    (["camera", BUNDLE, "video.mp4"],
     "error: camera takes its sources with --source: edgecnn camera bundles/tour --source video.mp4"),
    (["camera", BUNDLE, "rtsp://cam:hunter2@10.0.0.5/live", "b.mp4", "--headless"],
     "error: camera takes its sources with --source: edgecnn camera bundles/tour "
     "--source rtsp://***@10.0.0.5/live --source b.mp4 --headless"),
    (["capture", "--source", "0", "--out", "data", "--label", "cup"],
     "error: capture takes its source as its argument, not --source: "
     "edgecnn capture 0 --out data --label cup"),
    (["capture", "--source=0"],
     "error: capture takes its source as its argument, not --source: "
     "edgecnn capture 0 --out OUT --label LABEL"),
    (["predict", BUNDLE, "--source", "cat.jpg"],
     "error: predict takes its images as arguments, not --source: edgecnn predict bundles/tour cat.jpg"),
    (["eval", BUNDLE, "--source", "samples/photos"],
     "error: eval takes its data as its argument, not --source: edgecnn eval bundles/tour samples/photos"),
    (["bench", BUNDLE, "--source", "cup.mp4", "--seconds", "2"],
     "error: bench reads no source (it times the model on generated images): "
     "edgecnn bench bundles/tour --seconds 2"),
    (["bench", BUNDLE, "cup.mp4"],
     "error: bench reads no source (it times the model on generated images): edgecnn bench bundles/tour"),
    (["serve", BUNDLE, "--source", "cup.mp4"],
     "error: serve reads no source (clients send it their images): edgecnn serve bundles/tour"),
    (["camera", "--model", BUNDLE, "--source", "0"],
     "error: camera takes its model as its argument, not --model: edgecnn camera bundles/tour --source 0"),
    (["run", "--config", "box.toml"],
     "error: run takes its config as its argument, not --config: edgecnn run box.toml"),
])
def test_a_usage_slip_is_one_line_ending_in_the_command_to_run(args: list[str], expected: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.output.strip() == expected, result.output


@pytest.mark.parametrize("args", [["camera", BUNDLE, "--frobnicate"], ["info", BUNDLE, "extra"],
                                  ["capture", "--out", "data", "--label", "cup"]])
def test_other_usage_errors_stay_click_s(args: list[str]) -> None:
    result = runner.invoke(app, args)
    output = result.output
    assert result.exit_code == 2 and "error:" not in output and "Usage:" in output, output


def test_the_edgecnn_process_prints_the_hint_on_stderr_alone(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "edgecnn", "camera", str(tmp_path), "cup.mp4"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == "", done
    assert done.stderr == (f"error: camera takes its sources with --source: edgecnn camera {tmp_path} "
                           "--source cup.mp4\n"), done.stderr

