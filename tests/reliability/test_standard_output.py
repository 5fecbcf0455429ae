"""Standard output that is closed, full, a broken pipe or ASCII-only, and `--jsonl -` (issue 31 item 5),
through a real `python -m edgecnn` process: the guard sits in the process entry (cli/streams.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.reliability.conftest import ROOT
from tests.runtime.test_camera import CUP


def edgecnn(*args: object, stdout: object = subprocess.PIPE, env: dict[str, str] | None = None,
            close_stdout: bool = False) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "edgecnn", *map(str, args)]
    before = (lambda: os.close(1)) if close_stdout else None
    return subprocess.run(command, cwd=ROOT, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, preexec_fn=before, check=False)


def assert_one_error(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and all(w in errors[0] for w in words), done.stderr


@pytest.fixture()
def photo(tmp_path: Path) -> Path:
    folder = tmp_path / "fotos-ünï"
    folder.mkdir()
    path = folder / "fïsh-ß.jpg"
    cv2.imwrite(str(path), np.full((40, 40, 3), (20, 60, 200), np.uint8))
    return path


def test_closed_stdout_is_one_line_before_any_work(hand_bundle: Path, photo: Path) -> None:
    done = edgecnn("predict", hand_bundle, photo, stdout=None, close_stdout=True)
    assert_one_error(done, "standard output is closed", "> /dev/null")
    assert "on onnxruntime" not in done.stderr and "on openvino" not in done.stderr  # no model was loaded


def test_full_stdout_is_one_line(hand_bundle: Path, photo: Path) -> None:
    with open("/dev/full", "w") as full:
        done = edgecnn("predict", hand_bundle, photo, stdout=full)
    assert_one_error(done, "cannot write to standard output", "No space left on device")


def test_broken_pipe_ends_quietly(hand_bundle: Path, photo: Path) -> None:
    """`edgecnn ... | true`: the reader is gone before the first line (the model takes a second to load),
    so every write meets a broken pipe; the command ends as it would have, like `ls | head`."""
    command = f"{sys.executable} -m edgecnn predict {hand_bundle} {' '.join([str(photo)] * 40)} | true"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Broken pipe" not in done.stderr, done.stderr


def test_ascii_stdout_escapes_what_it_cannot_show(hand_bundle: Path, photo: Path) -> None:
    done = edgecnn("predict", hand_bundle, photo, env={"PYTHONIOENCODING": "ascii"})
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "f\\xefsh" in done.stdout  # the non-ASCII name, escaped instead of a UnicodeEncodeError


@pytest.mark.parametrize("name", ["-", "/dev/stdout"])
def test_jsonl_dash_writes_the_records_on_stdout(hand_bundle: Path, tmp_path: Path, name: str) -> None:
    done = subprocess.run([sys.executable, "-m", "edgecnn", "camera", str(hand_bundle), "--source", str(CUP),
                           "--headless", "--max-frames", "4", "--jsonl", name, "--device", "cpu"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]  # nothing but records on stdout
    assert [r["frame"] for r in records] == [0, 1, 2, 3]
    assert "4 / 4 / 0" in done.stderr  # the summary went to stderr
    assert not (tmp_path / "-").exists()


def test_events_dash_writes_the_events_on_stdout(hand_bundle: Path, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "edgecnn", "camera", str(hand_bundle), "--source", str(CUP),
               "--headless", "--max-frames", "30", "--device", "cpu", "--events", "-",
               "--jsonl", "frames.jsonl"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]  # nothing but events on stdout
    assert [e["state"] for e in events] == ["red"] and events[0]["previous"] is None, done.stdout
    assert "30 / 30 / 0" in done.stderr and not (tmp_path / "-").exists()
    assert (tmp_path / "frames.jsonl").read_text().count("\n") == 30
    both = subprocess.run([*command[:-1], "-"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          check=False)
    assert both.returncode == 2 and both.stdout == "", both.stderr
    assert both.stderr.strip() == ("error: --jsonl and --events cannot both go to standard output; "
                                   "send one to a file")
