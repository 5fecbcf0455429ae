"""Hostile data folders, the rest of issue 25 item 5: `café` written in two Unicode forms, class names
carrying terminal escape sequences, and the metadata files a Mac leaves beside the photos; and full disks
(issue 25 item 6) during `camera --jsonl`, `capture` and `export`."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from edgecnn.runtime.measure.plots import save_confusion

from edgecnn.data import scan_folder
from tests.reliability.conftest import ROOT, assert_user_error, run_cli
from tests.runtime.test_camera import CUP

OSC_TITLE = "\x1b]0;owned\x07fish"  # retitles the terminal when printed raw
SGR_RED = "\x1b[31mred"  # turns the rest of the terminal red
RAW = ("\x1b", "\x07")


def _jpegs(folder: Path, count: int = 3) -> None:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        jpeg = cv2.imencode(".jpg", np.full((16, 16, 3), 60 * i + 30 + len(folder.name), np.uint8))[1]
        (folder / f"{i}.jpg").write_bytes(jpeg.tobytes())


def _macos_metadata(folder: Path) -> int:
    """What a Mac leaves on a FAT/exFAT/network disk: `._` AppleDouble twins and `.DS_Store`."""
    for image in sorted(p for p in folder.iterdir() if p.is_file()):
        (folder / f"._{image.name}").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X" + bytes(60))
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(60))
    return len(list(folder.glob("._*"))) + 1


def test_nfc_and_nfd_twins_are_refused_naming_both(tmp_path: Path) -> None:
    """`café` as é (NFC) and as e + U+0301 (NFD): two classes that print alike (were trained as two)."""
    _jpegs(tmp_path / "data" / "caf\u00e9")
    _jpegs(tmp_path / "data" / "cafe\u0301")
    _jpegs(tmp_path / "data" / "tea")
    result = run_cli("finetune", tmp_path / "data", "--out", tmp_path / "run", "--workers", "0")
    assert_user_error(result, "'caf\\xe9'", "'cafe\\u0301'", "two Unicode forms", "merge them")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", [OSC_TITLE, SGR_RED])
def test_escape_sequences_in_class_names_are_shown_escaped_in_errors(name: str, tmp_path: Path) -> None:
    """One class folder (refused) and an empty one: the error line names it with \\x1b, not ESC."""
    _jpegs(tmp_path / "one" / name)
    (tmp_path / "empty" / name).mkdir(parents=True)
    _jpegs(tmp_path / "empty" / "tea")
    for data, words in ((tmp_path / "one", "has one class"), (tmp_path / "empty", "holds no images")):
        result = run_cli("finetune", data, "--out", tmp_path / "run", "--workers", "0")
        assert_user_error(result, words, "\\x1b")
        assert not any(char in result.output for char in RAW), repr(result.output)


def test_escape_sequences_in_class_names_draw_without_reaching_the_terminal(tmp_path: Path) -> None:
    """matplotlib warned "Glyph 27 (ESC) missing from font", writing the raw ESC to the terminal."""
    matrix = np.array([[3, 1], [0, 2]])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        save_confusion(matrix, [OSC_TITLE, SGR_RED], [OSC_TITLE, SGR_RED], tmp_path / "m.png",
                       title=f"bundle {SGR_RED}")
    said = [str(w.message) for w in caught]
    assert not [line for line in said if any(char in line for char in RAW)], said
    assert (tmp_path / "m.png").stat().st_size > 1000


def test_macos_metadata_files_are_ignored_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                                     ) -> None:
    """`._0.jpg` was an "unreadable image"; now neither a sample nor a warning about damage."""
    data = tmp_path / "data"
    _jpegs(data / "cup")
    _jpegs(data / "box")
    count = _macos_metadata(data / "cup") + _macos_metadata(data / "box")
    with caplog.at_level(logging.WARNING, logger="edgecnn"):
        split = scan_folder(data, val_split=0.34)
    assert caplog.messages == [f"skipped {count} macOS metadata files (._*, .DS_Store) in {data}"]
    assert all(not Path(path).name.startswith("._") for path, _ in split.train + split.val)
    assert len(split.train + split.val) == 6


def test_finetune_on_a_mac_copied_folder_with_escaped_names(tmp_path: Path, tiny_data: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """End to end: metadata counted, not reported unreadable; every line shows the class names escaped."""
    import shutil

    data = tmp_path / "data"
    for name, source in ((OSC_TITLE, "fishes"), (SGR_RED, "tools")):
        shutil.copytree(tiny_data / source, data / name)
        _macos_metadata(data / name)
    (data / OSC_TITLE / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")  # named on the terminal
    with caplog.at_level(logging.WARNING, logger="edgecnn"):
        result = run_cli("finetune", data, "--out", tmp_path / "run", "--head-epochs", "1", "--epochs", "0",
                         "--batch-size", "8", "--workers", "0")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines() + caplog.messages
    assert not [line for line in lines if any(char in line for char in RAW)], lines
    assert "skipped 1 unreadable image: \\x1b]0;owned\\x07fish/cut.jpg" in caplog.messages
    assert any(message.startswith("skipped 18 macOS metadata files") for message in caplog.messages)


def _limited(size: int) -> Callable[[], None]:
    """A file-size limit for the child: a write past it fails with EFBIG, as on a full disk (Python ignores
    SIGXFSZ, so the process is not killed)."""
    import resource

    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


def _full_disk_run(command: list[object], size: int, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgecnn", *map(str, command)], cwd=cwd, capture_output=True,
                          text=True, timeout=180, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          preexec_fn=_limited(size), check=False)


def _assert_one_full_disk_line(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and all(w in errors[0] for w in ("File too large", *words)), done.stderr[-3000:]


def test_a_full_disk_during_camera_jsonl_is_one_line(hand_bundle: Path, tmp_path: Path) -> None:
    """200 records (~20 KB) against a 4 KB limit: was a traceback from close() and a .tmp file left."""
    out = tmp_path / "out"
    done = _full_disk_run(["camera", hand_bundle, "--source", CUP, "--headless", "--max-frames", "200",
                           "--jsonl", out / "frames.jsonl", "--device", "cpu"], 4096, tmp_path)
    _assert_one_full_disk_line(done, "--jsonl", "free some space")
    assert list(out.iterdir()) == []  # neither the half file nor its temporary name


def test_a_full_disk_during_capture_is_one_line(tmp_path: Path) -> None:
    """A 10 KB limit: the first ~20 KB frame does not fit; the class folder holds no half JPEG."""
    done = _full_disk_run(["capture", CUP, "--out", tmp_path / "data", "--label", "cup", "--count", "5",
                           "--min-change", "0", "--headless"], 10_000, tmp_path)
    _assert_one_full_disk_line(done, "cannot write")
    assert list((tmp_path / "data" / "cup").iterdir()) == []


def test_a_full_disk_during_export_is_one_line(tiny_run: Path, tmp_path: Path) -> None:
    """A 1 MB limit: torch.onnx's write of the 13 MB model failed with a traceback (nothing was left)."""
    done = _full_disk_run(["export", tiny_run / "best.pt", "--out", tmp_path / "bundle"], 1_000_000, tmp_path)
    _assert_one_full_disk_line(done, "--out", "free some space")
    assert list(tmp_path.iterdir()) == []  # no bundle, no temporary folder, no lock


def test_events_dash_writes_the_events_on_stdout(hand_bundle: Path, tmp_path: Path) -> None:
    """`--events -` (issue 25/31, like `--jsonl -`): was a file named `-`; the summary goes to stderr."""
    import json

    import cv2

    show = tmp_path / "show"
    show.mkdir()
    for i in range(30):  # red, green, blue: three state changes, ten frames each
        colour = ((0, 0, 220), (0, 200, 0), (220, 0, 0))[i // 10]
        cv2.imwrite(str(show / f"{i:03d}.png"), np.full((32, 32, 3), colour, np.uint8))
    command = [sys.executable, "-m", "edgecnn", "camera", str(hand_bundle), "--source", str(show),
               "--headless", "--events", "-", "--device", "cpu"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    events = [json.loads(line) for line in done.stdout.splitlines()]  # nothing but events on stdout
    assert [e["state"] for e in events] == ["red", "green", "blue"]
    assert "events 3, events written 3" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["show"]  # no file named `-`
