"""Outputs, second pass: an output that is an input (or another output) is refused, one --out is written
by one export at a time, and awkward output paths fail in one line before any work, leaving nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import SAMPLE_VIDEOS
from tests.reliability.conftest import LABELS, ROOT, assert_user_error, left_behind, run_cli


def _video(tmp: Path) -> Path:
    video = tmp / "v.mp4"
    shutil.copy(SAMPLE_VIDEOS / "cup.mp4", video)
    return video


def _data(tmp: Path) -> Path:
    for label in LABELS:
        (tmp / "data" / label).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp / "data" / label / "a.png"), np.full((8, 8, 3), 99, np.uint8))
    return tmp / "data"


def _hardlink(tmp: Path) -> list[object]:
    os.link(_video(tmp), tmp / "link.mp4")
    return ["--source", tmp / "v.mp4", "--save", tmp / "link.mp4"]


def _symlink(tmp: Path) -> list[object]:
    os.symlink(_video(tmp), tmp / "sym.mp4")
    return ["--source", tmp / "v.mp4", "--save", tmp / "sym.mp4"]


def _checkpoint(tmp: Path) -> Path:
    (tmp / "run").mkdir(exist_ok=True)
    (tmp / "run" / "best.pt").write_bytes(b"a checkpoint the user needs")
    return tmp / "run" / "best.pt"


Case = Callable[[Path], list[object]]
CLASHES: dict[str, tuple[str, Case, tuple[str, ...]]] = {  # name -> (command, args, words)
    "camera --save is the --source video": (
        "camera",
        lambda t: ["--source", _video(t), "--save", t / "v.mp4"],
        ("--save", "is the --source itself"),
    ),
    "camera --save is the --source as ./v.mp4": (
        "camera",
        lambda t: ["--source", _video(t), "--save", t / "." / "v.mp4"],
        ("is the --source itself",),
    ),
    "camera --save is a hard link to the --source": ("camera", _hardlink, ("is the --source itself",)),
    "camera --save is a symlink to the --source": ("camera", _symlink, ("is the --source itself",)),
    "camera --save and --jsonl on one file": (
        "camera",
        lambda t: ["--source", _video(t), "--save", t / "o.mp4", "--jsonl", t / "o.mp4"],
        ("--jsonl and --save name the same file",),
    ),
    "eval --out inside the data folder": (
        "eval",
        lambda t: [_data(t), "--out", t / "data" / "red" / "eval"],
        ("--out", "inside the DATA folder"),
    ),
    "export --out holds the checkpoint (--force)": (
        "export",
        lambda t: [_checkpoint(t), "--out", t / "run", "--force"],
        ("--out", "holds the CHECKPOINT"),
    ),
    "export --out is the calibration folder (--force)": (
        "export",
        lambda t: [_checkpoint(t), "--out", _data(t), "--calibration", t / "data", "--force", "--int8"],
        ("is the --calibration itself",),
    ),
}


@pytest.mark.parametrize("name", list(CLASHES))
def test_output_that_is_an_input_is_refused(name: str, hand_bundle: Path, tmp_path: Path) -> None:
    command, make, words = CLASHES[name]
    args = make(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    model = [hand_bundle] if command in ("camera", "eval") else []
    extra = (
        ["--headless", "--device", "cpu"]
        if command == "camera"
        else ["--device", "cpu"] * (command == "eval")
    )
    assert_user_error(run_cli(command, *model, *args, *extra), *words)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before  # nothing touched
    assert not left_behind(tmp_path)


def test_finetune_out_inside_the_data_folder_is_refused(two_class_data: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(two_class_data, data)
    result = run_cli(
        "finetune", data, "--out", data / "fishes" / "run", "--head-epochs", "1", "--workers", "0"
    )
    assert_user_error(result, "--out", "inside the DATA folder")
    assert not (data / "fishes" / "run").exists()


LOCKED_OUT: dict[str, Callable[..., list[object]]] = {  # command -> its arguments, writing into `out`
    "export": lambda tmp, out, bundle, data: ["export", _checkpoint(tmp), "--out", out],
    "eval (issue 31)": lambda tmp, out, bundle, data: ["eval", bundle, data, "--out", out],
    "finetune (issue 31)": lambda tmp, out, bundle, data: [
        "finetune", data, "--out", out, "--head-epochs", "1", "--epochs", "0", "--workers", "0"],
}


@pytest.mark.parametrize("command", list(LOCKED_OUT))
def test_second_writer_to_a_locked_out_gets_one_line(command: str, tmp_path: Path, hand_bundle: Path,
                                                     two_class_data: Path) -> None:
    """Another process (a real second edgecnn process holding the lock) is writing --out: the command
    stops in one line at once and leaves the folder, the lock and the other process alone."""
    out = tmp_path / "bundle"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom pathlib import Path\n"
            "from edgecnn.runtime.core.outputs import output_lock\n"
            "with output_lock(Path(sys.argv[1]), '--out'):\n"
            "    print('locked', flush=True)\n    time.sleep(60)\n",
            str(out),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.perf_counter()
        result = run_cli(*LOCKED_OUT[command](tmp_path, out, hand_bundle, two_class_data))
        assert_user_error(result, "another edgecnn process is writing --out", "wait for it")
        assert time.perf_counter() - started < 10 and not out.exists()
        assert holder.poll() is None and (tmp_path / ".bundle.lock").exists()
    finally:
        holder.kill()
        holder.wait()


def test_lock_is_free_again_after_an_export_step(tmp_path: Path) -> None:
    from edgecnn.runtime.core.outputs import output_lock

    for _ in range(2):  # taken, released (lock file removed), taken again
        with output_lock(tmp_path / "b", "--out"):
            assert (tmp_path / ".b.lock").exists()
        assert not (tmp_path / ".b.lock").exists()


# -- awkward output paths ---------------------------------------------------------------------------
def _loop(tmp: Path, name: str) -> Path:
    os.symlink(tmp / name, tmp / name)
    return tmp / name


AWKWARD: dict[str, tuple[str, Case, tuple[str, ...]]] = {
    "camera --save names a folder": (
        "camera",
        lambda t: ["--source", _video(t), "--save", (t / "out.mp4").mkdir() or t / "out.mp4"],
        ("--save", "is a folder; give a file name inside it", "out.mp4/out.mp4"),
    ),
    "camera --jsonl names a folder": (
        "camera",
        lambda t: ["--source", _video(t), "--jsonl", (t / "out").mkdir() or t / "out"],
        ("--jsonl", "is a folder", "out.jsonl"),
    ),
    "camera --save is a symlink loop": (
        "camera",
        lambda t: ["--source", _video(t), "--save", _loop(t, "o.mp4")],
        ("broken or looping symlink",),
    ),
    "export --out names an existing file": (
        "export",
        lambda t: [_checkpoint(t), "--out", (t / "f").write_text("x") and t / "f"],
        ("exists and is not a folder",),
    ),
    "export --out is a symlink loop": (
        "export",
        lambda t: [_checkpoint(t), "--out", _loop(t, "b")],
        ("--out", "broken or looping symlink"),
    ),
    "export --out . (--force)": (
        "export",
        lambda t: [_checkpoint(t), "--out", ".", "--force"],
        ("current folder or one above it",),
    ),
    "export --out .. (--force)": (
        "export",
        lambda t: [_checkpoint(t), "--out", "..", "--force"],
        ("current folder or one above it",),
    ),
    "eval --out names an existing file": (
        "eval",
        lambda t: [_data(t), "--out", (t / "f").write_text("x") and t / "f"],
        ("exists and is not a folder",),
    ),
    "eval --out is a symlink loop": (
        "eval",
        lambda t: [_data(t), "--out", _loop(t, "e")],
        ("looping symlink",),
    ),
}


@pytest.mark.parametrize("name", list(AWKWARD))
def test_awkward_output_path_fails_before_any_work(
    name: str, hand_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    command, make, words = AWKWARD[name]
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # `--out .` names this folder
    args = make(work)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    model = [hand_bundle] if command in ("camera", "eval") else []
    extra = (
        ["--headless", "--device", "cpu"]
        if command == "camera"
        else ["--device", "cpu"] * (command == "eval")
    )
    assert_user_error(run_cli(command, *model, *args, *extra), *words)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before and not left_behind(tmp_path)


def test_finetune_out_symlink_loop(two_class_data: Path, tmp_path: Path) -> None:
    result = run_cli("finetune", two_class_data, "--out", _loop(tmp_path, "run"), "--head-epochs", "1")
    assert_user_error(result, "--out", "broken or looping symlink")
