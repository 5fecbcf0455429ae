"""`edgecnn finetune` on bad folders, bad files and bad options: exit 2, one line, nothing written.

Plus the decoding table (odd formats converted correctly, damaged files refused in one line, a huge
header refused without the memory it claims) and one real training run on a messy folder.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.images import read_image

from tests.reliability.conftest import (
    assert_user_error,
    damaged_images,
    huge_png,
    left_behind,
    odd_images,
    run_cli,
)


def _class_folder(data: Path, name: str, source: Path, count: int = 3) -> None:
    (data / name).mkdir(parents=True)
    for image in sorted(source.iterdir())[:count]:
        shutil.copy(image, data / name / image.name)


def _two_classes(tmp: Path, tiny: Path) -> Path:
    data = tmp / "data"
    _class_folder(data, "fishes", tiny / "fishes")
    _class_folder(data, "tools", tiny / "tools")
    return data


def _evil_pickle(path: Path, marker: Path) -> Path:
    """A checkpoint-looking torch file whose unpickling would create `marker` (it must never run)."""
    import torch

    class Evil:
        def __reduce__(self) -> tuple:
            return (Path.touch, (marker,))

    torch.save({"format": "edgecnn-checkpoint", "state_dict": Evil()}, path)
    return path


Case = Callable[[Path, Path], list[object]]  # (tmp_path, tiny_data) -> CLI args after `finetune`
CASES: dict[str, tuple[Case, tuple[str, ...], bool]] = {
    # name: (make the args, words the message must hold, one line (ours) or Typer's boxed usage error)
    "data folder missing": (lambda t, d: [t / "nope"], ("nope", "does not exist"), True),
    "data folder empty": (
        lambda t, d: [(t / "data").mkdir() or t / "data"],
        ("holds no class folders",),
        True,
    ),
    "data is a file": (lambda t, d: [(t / "f").write_text("x") and t / "f"], ("is a file",), True),
    "data is a symlink loop": (
        lambda t, d: [os.symlink(t / "loop", t / "loop") or t / "loop"],
        ("loop", "looping symlink"),
        True,
    ),
    "one class": (
        lambda t, d: [_class_folder(t / "data", "fishes", d / "fishes") or t / "data"],
        ("one class (fishes)", "at least two"),
        True,
    ),
    "empty class folder": (
        lambda t, d: [(_two_classes(t, d) / "boats").mkdir() or t / "data"],
        ("boats holds no images", "add some or remove the folder"),
        True,
    ),
    "class of non-image files only": (
        lambda t, d: [
            (_two_classes(t, d) / "boats").mkdir()
            or (t / "data/boats/readme.txt").write_text("x")
            and t / "data"
        ],
        ("boats holds no images",),
        True,
    ),
    "class of zero-byte images only": (
        lambda t, d: [
            (_two_classes(t, d) / "boats").mkdir() or (t / "data/boats/a.jpg").write_bytes(b"") or t / "data"
        ],
        ("no readable training images left for class 'boats'",),
        True,
    ),
    "negative epochs": (
        lambda t, d: [_two_classes(t, d), "--epochs", "-1"],
        ("--epochs -1 is out of range; give 0 to 10000",),
        False,
    ),
    "val split out of range": (
        lambda t, d: [_two_classes(t, d), "--val-split", "1.5"],
        ("--val-split",),
        False,
    ),
    "batch size 0": (
        lambda t, d: [_two_classes(t, d), "--batch-size", "0"],
        ("--batch-size 0 is out of range; give 1 to 4096",),
        False,
    ),
    "unknown device": (
        lambda t, d: [_two_classes(t, d), "--device", "tpu"],
        ("unknown device 'tpu'; choose one of auto, cpu, gpu (cuda is taken as gpu)",),
        True,
    ),
    "nothing to train": (
        lambda t, d: [_two_classes(t, d), "--head-epochs", "0"],
        ("nothing to train",),
        True,
    ),
    "unknown architecture": (
        lambda t, d: [_two_classes(t, d), "--arch", "nosuchnet"],
        ("unknown architecture 'nosuchnet'", "timm.list_models()"),
        True,
    ),
    "weights file missing": (
        lambda t, d: [_two_classes(t, d), "--weights", t / "w.pt"],
        ("w.pt does not exist",),
        True,
    ),
    "weights of another network": (
        lambda t, d: [_two_classes(t, d), "--weights", _state_dict_of("resnet18", t / "r18.pt")],
        ("r18.pt does not fit efficientnet_lite0",),
        True,
    ),
    "weights: pickle carrying code": (
        lambda t, d: [_two_classes(t, d), "--weights", _evil_pickle(t / "evil.pt", t / "PWNED")],
        ("evil.pt is not a loadable state dict",),
        True,
    ),
    "resume without last.pt": (
        lambda t, d: ["--resume", (t / "run").mkdir() or t / "run"],
        ("no", "last.pt to resume from"),
        True,
    ),
    "resume from truncated last.pt": (
        lambda t, d: ["--resume", _truncated_run(t / "run")],
        ("cannot load checkpoint", "last.pt"),
        True,
    ),
    "resume from pickle carrying code": (
        lambda t, d: ["--resume", (t / "run").mkdir() or _evil_pickle(t / "run/last.pt", t / "PWNED").parent],
        ("holds pickled code, refused",),
        True,
    ),
    "out is a file": (
        lambda t, d: [_two_classes(t, d), "--out", (t / "o").write_text("x") and t / "o"],
        ("--out", "is a file"),
        True,
    ),
    "out not empty": (
        lambda t, d: [
            _two_classes(t, d),
            "--out",
            (t / "o").mkdir() or (t / "o/notes.txt").write_text("keep") and t / "o",
        ],
        ("is not empty", "--force", "--resume"),
        True,
    ),
    # found by this suite: `_prepare_out` let OSError through (a traceback) before checking writability
    "out under a regular file": (
        lambda t, d: [_two_classes(t, d), "--out", _file_parent(t)],
        ("cannot write",),
        True,
    ),
    "out in /proc (unwritable)": (
        lambda t, d: [_two_classes(t, d), "--out", "/proc/edgecnn-run"],
        ("cannot write",),
        True,
    ),
}


def _state_dict_of(arch: str, path: Path) -> Path:
    import timm
    import torch

    torch.save(timm.create_model(arch, pretrained=False).state_dict(), path)
    return path


def _truncated_run(run: Path) -> Path:
    run.mkdir()
    _evil = b"PK\x03\x04" + os.urandom(2000)  # the start of a zip, as a copy cut short leaves it
    (run / "last.pt").write_bytes(_evil)
    return run


def _file_parent(tmp: Path) -> Path:
    (tmp / "plain.txt").write_text("a file, not a folder")
    return tmp / "plain.txt" / "run"


def _run_case(make: Case, tmp_path: Path, tiny_data: Path) -> tuple[object, set[Path]]:
    """Run `finetune` on the case's inputs; also the files that existed before it ran."""
    args = make(tmp_path, tiny_data)
    if "--out" not in args and "--resume" not in args:
        args += ["--out", tmp_path / "run"]
    before = set(tmp_path.rglob("*"))
    return run_cli("finetune", *args, "--workers", "0"), before


@pytest.mark.parametrize("name", list(CASES))
def test_finetune_bad_input(name: str, tmp_path: Path, tiny_data: Path) -> None:
    make, words, one_line = CASES[name]
    result, before = _run_case(make, tmp_path, tiny_data)
    assert_user_error(result, *words, one_line=one_line)
    written = sorted(str(p) for p in set(tmp_path.rglob("*")) - before if p.is_file())
    assert not written and not left_behind(tmp_path), written  # nothing half-written
    assert not (tmp_path / "PWNED").exists()  # pickled code never ran


ODD_CHECKS = {
    # name: (expected pixels from the RGB photo, mean absolute tolerance)
    "grayscale": (lambda p: np.repeat(np.round(p @ [0.299, 0.587, 0.114])[..., None], 3, axis=2), 1.0),
    "cmyk": (lambda p: p, 6.0),
    "rgba": (lambda p: p, 0.0),
    "palette": (lambda p: p, 25.0),
    "16-bit": (lambda p: p, 0.0),
    "exif-rotated": (lambda p: np.rot90(p, -1), 4.0),  # orientation 6: rotated 90 degrees clockwise
    "spaces and non-ASCII": (lambda p: p, 4.0),
}


@pytest.mark.parametrize("name", list(ODD_CHECKS))
def test_odd_formats_decode_to_the_right_rgb_pixels(name: str, photo: np.ndarray, tmp_path: Path) -> None:
    image = read_image(odd_images(tmp_path, photo)[name])
    expected, tolerance = ODD_CHECKS[name]
    want = expected(photo.astype(np.float64))
    assert image.dtype == np.uint8 and image.shape == want.shape
    assert np.abs(image - want).mean() <= tolerance
    if name == "exif-rotated":  # the un-rotated photo must be far off: the orientation really was applied
        assert np.abs(image.astype(np.float64) - np.rot90(photo, 1)).mean() > 20


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("zero-byte", "is empty (0 bytes)"),
        ("truncated JPEG", "truncated JPEG"),
        ("truncated PNG", "not a readable image"),
        ("text named .png", "not a readable image"),
        ("huge PNG header", "claims 20000x20000 pixels"),
        ("huge JPEG header", "claims 20000x20000 pixels"),
    ],
)
def test_damaged_files_are_refused_in_one_line(
    name: str, words: str, photo: np.ndarray, tmp_path: Path
) -> None:
    path = damaged_images(tmp_path, photo)[name]
    with pytest.raises(EdgecnnError) as error:
        read_image(path)
    assert words in str(error.value) and str(path) in str(error.value) and "\n" not in str(error.value)


def test_huge_image_is_refused_without_using_its_memory(tmp_path: Path) -> None:
    """A complete, valid 20000x20000 PNG (1.2 GB of pixels, 1 MB on disk): peak RSS stays far below."""
    import zlib

    path = tmp_path / "huge.png"
    huge_png(path, rows=1)
    head = path.read_bytes()[:33]  # signature + IHDR; then the real pixels, compressed row by row
    packer, row = zlib.compressobj(1), b"\x00" * (1 + 3 * 20000)
    pixels = b"".join(packer.compress(row) for _ in range(20000)) + packer.flush()
    from tests.reliability.conftest import png_chunk

    path.write_bytes(head + png_chunk(b"IDAT", pixels) + png_chunk(b"IEND", b""))
    # VmHWM: this process's own peak (ru_maxrss would include the forking pytest's)
    code = (
        "import re, sys\nfrom edgecnn.runtime.core.images import read_image\n"
        "try:\n    read_image(sys.argv[1])\nexcept Exception as e:\n    print(e)\n"
        "print(int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1]) // 1024)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
        check=True,
    )
    message, peak_mb = done.stdout.strip().splitlines()
    assert "claims 20000x20000 pixels" in message and int(peak_mb) < 300, done.stdout


def test_training_goes_on_over_a_messy_folder(
    tmp_path: Path, two_class_data: Path, photo: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    """Odd formats used, damaged files skipped and counted, non-images and a symlink loop ignored."""
    data = tmp_path / "data"
    shutil.copytree(two_class_data, data)
    odd = odd_images(data / "tools", photo)
    damaged = damaged_images(data / "fishes", photo)
    (data / "fishes" / "README.txt").write_text("photos of fish")
    os.symlink("..", data / "tools" / "loop")  # tools/loop/tools/loop/... forever, if followed
    with caplog.at_level(logging.WARNING, logger="edgecnn"):
        result = run_cli(
            "finetune",
            data,
            "--out",
            tmp_path / "run",
            "--head-epochs",
            "1",
            "--batch-size",
            "8",
            "--workers",
            "0",
        )
    assert result.exit_code == 0, result.output
    assert caplog.messages[0].startswith(f"skipped {len(damaged)} unreadable images")
    from edgecnn.checkpoint import load_checkpoint

    split = load_checkpoint(tmp_path / "run" / "best.pt").split
    assert split is not None
    used = set(split.train + split.val)
    assert {f"tools/{p.name}" for p in odd.values()} <= used
    assert set(split.skipped) == {f"fishes/{p.name}" for p in damaged.values()}
    assert not any("loop" in p or p.endswith(".txt") for p in used)
