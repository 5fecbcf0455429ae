"""`edgecnn export` on bad checkpoints, options and output folders: exit 2, one line, no bundle written."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.reliability.conftest import assert_user_error, left_behind, run_cli


def _torch_file(path: Path, payload: object) -> Path:
    import torch

    torch.save(payload, path)
    return path


def _checkpoint_like(path: Path, **changes: object) -> Path:
    import torch

    payload = {
        "format": "edgecnn-checkpoint",
        "format_version": 1,
        "arch": "efficientnet_lite0",
        "labels": ["a", "b"],
        "preprocess": {},
        "state_dict": {"w": torch.zeros(2, 2)},
    }
    return _torch_file(path, {**payload, **changes})


def _truncated(path: Path) -> Path:
    import torch

    _torch_file(path, {"format": "edgecnn-checkpoint", "state_dict": {"w": torch.randn(256, 256)}})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _evil(path: Path, marker: Path) -> Path:
    class Evil:
        def __reduce__(self) -> tuple:
            return (Path.touch, (marker,))

    return _torch_file(path, {"format": "edgecnn-checkpoint", "state_dict": Evil()})


class _RunsCommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def _dummy(t: Path) -> Path:
    """A file that exists: option checks run before the checkpoint is read."""
    (t / "best.pt").write_bytes(b"checked later")
    return t / "best.pt"


Case = Callable[[Path], list[object]]
CASES: dict[str, tuple[Case, tuple[str, ...], bool]] = {
    "checkpoint missing": (lambda t: [t / "nope.pt"], ("nope.pt does not exist", "best.pt"), True),
    "neither checkpoint nor --pretrained": (
        lambda t: [],
        ("give either a CHECKPOINT or --pretrained",),
        True,
    ),
    "checkpoint and --pretrained": (lambda t: [_dummy(t), "--pretrained"], ("not both",), True),
    "checkpoint truncated": (
        lambda t: [_truncated(t / "cut.pt")],
        ("cut.pt", "truncated or not a checkpoint"),
        True,
    ),
    "checkpoint is random bytes": (
        lambda t: [(t / "r.pt").write_bytes(os.urandom(4096)) and t / "r.pt"],
        ("r.pt", "truncated or not a checkpoint"),
        True,
    ),
    "checkpoint from another program (plain state dict)": (
        lambda t: [_torch_file(t / "sd.pt", {"conv.weight": __import__("torch").zeros(3)})],
        ("sd.pt is not an edgecnn checkpoint",),
        True,
    ),
    "checkpoint: pickle carrying code": (
        lambda t: [_evil(t / "evil.pt", t / "PWNED")],
        ("evil.pt", "holds pickled code, refused"),
        True,
    ),
    "checkpoint: pickle calling os.system": (
        lambda t: [
            _torch_file(t / "system.pt", {"format": "edgecnn-checkpoint", "x": _RunsCommand(t / "PWNED")})
        ],
        ("system.pt", "holds pickled code, refused"),
        True,
    ),
    "checkpoint from a newer edgecnn": (
        lambda t: [_checkpoint_like(t / "new.pt", format_version=99)],
        ("newer edgecnn", "upgrade edgecnn: git pull, then pip install . (in the edgecnn clone)"),
        True,
    ),
    "checkpoint incomplete": (
        lambda t: [
            _checkpoint_like(t / "part.pt", arch=None)
            and _torch_file(t / "part.pt", {"format": "edgecnn-checkpoint"})
        ],
        ("part.pt is an incomplete edgecnn checkpoint",),
        True,
    ),
    "unknown format": (
        lambda t: [_dummy(t), "--format", "tflite"],
        ("unknown format tflite", "onnx, openvino"),
        True,
    ),
    "opset out of range": (lambda t: [_dummy(t), "--opset", "5"], ("opset",), True),
    "unknown calibration method": (lambda t: [_dummy(t), "--calibration-method", "magic"], ("magic",), True),
    "batch not a number": (lambda t: [_dummy(t), "--batch", "many"], ("--batch", "'dynamic'"), True),
    "batch 0": (lambda t: [_dummy(t), "--batch", "0"], ("--batch", "positive"), True),
    "calibration size 0": (lambda t: [_dummy(t), "--calibration-size", "0"], ("--calibration-size",), True),
    "calibration folder missing": (lambda t: [_dummy(t), "--calibration", t / "cal"], ("cal",), True),
    "calibration folder without images": (
        lambda t: [
            _dummy(t),
            "--calibration",
            (t / "cal").mkdir() or (t / "cal/a.txt").write_text("x") and t / "cal",
        ],
        ("cal",),
        True,
    ),
    "out exists": (
        lambda t: [_dummy(t), "--out", (t / "b").mkdir() or t / "b"],
        ("already exists", "--force"),
        True,
    ),
    "out is a file (with --force)": (
        lambda t: [_dummy(t), "--force", "--out", (t / "b").write_text("x") and t / "b"],
        ("is not a folder",),
        True,
    ),
    "out under a regular file": (
        lambda t: [_dummy(t), "--out", (t / "f").write_text("x") and t / "f" / "b"],
        ("cannot write --out", "choose another --out"),
        True,
    ),
    "out in /proc (unwritable)": (
        lambda t: [_dummy(t), "--out", "/proc/edgecnn-bundle"],
        ("cannot write --out",),
        True,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_export_bad_input(name: str, tmp_path: Path) -> None:
    make, words, one_line = CASES[name]
    args = make(tmp_path)
    if "--out" not in args:
        args += ["--out", tmp_path / "bundle"]
    before = set(tmp_path.rglob("*"))
    result = run_cli("export", *args)
    assert_user_error(result, *words, one_line=one_line)
    assert set(tmp_path.rglob("*")) == before and not left_behind(tmp_path)  # no bundle, no partial folder
    assert not (tmp_path / "PWNED").exists()  # the pickled code never ran
    assert not Path("/proc/edgecnn-bundle").exists()
