"""`predict`, `eval`, `bench`, `info` on damaged, foreign and mismatched models and bad options.

The bundle here is made by hand in a second (a real uint8 NHWC ONNX model with edgecnn metadata,
its OpenVINO IR, labels.txt), so every damage can be applied to a fresh copy.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.reliability.conftest import assert_user_error, colour_onnx, left_behind, run_cli


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Labelled solid-colour photos: red/ and blue/ class folders."""
    root = tmp_path_factory.mktemp("colours")
    for name, bgr in (("red", (0, 0, 255)), ("blue", (255, 0, 0))):
        (root / name).mkdir()
        for i in range(2):
            cv2.imwrite(str(root / name / f"{i}.png"), np.full((40, 50, 3), bgr, np.uint8))
    return root


def test_the_hand_made_bundle_works(hand_bundle: Path, images: Path) -> None:
    """The control: before any damage, predict and eval succeed on both backends."""
    for backend in ("onnxruntime", "openvino"):
        result = run_cli(
            "predict", hand_bundle, images / "red" / "0.png", "--backend", backend, "--json", "--top-k", "1"
        )
        assert result.exit_code == 0 and '"label": "red"' in result.stdout, result.output
    assert run_cli("eval", hand_bundle, images, "--out", images.parent / "eval").exit_code == 0


def _copy(bundle: Path, tmp: Path) -> Path:
    shutil.copytree(bundle, tmp / "b")
    return tmp / "b"


def _cut(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _only_onnx(b: Path) -> Path:
    shutil.rmtree(b / "openvino")
    return b


def _with(b: Path, damage: Callable[[Path], object]) -> Path:
    damage(b)
    return b


Damage = Callable[[Path, Path], list[object]]  # (bundle copy, images) -> args after the command name
PREDICT: dict[str, tuple[Damage, tuple[str, ...]]] = {
    "model path missing": (lambda b, i: [b / "nope", i], ("nope does not exist",)),
    "folder without models": (
        lambda b, i: [b / "openvino" / "x", i] if (b / "openvino/x").mkdir() is None else [],
        ("holds no model.onnx",),
    ),
    "not a model file": (lambda b, i: [b / "labels.txt", i], ("labels.txt is not a model file",)),
    "ONNX truncated": (
        lambda b, i: [_with(_only_onnx(b), lambda b: _cut(b / "model.onnx")), i],
        ("model.onnx is not a loadable ONNX model",),
    ),
    "ONNX zero bytes": (
        lambda b, i: [b / "model.onnx", i] if (b / "model.onnx").write_bytes(b"") == 0 else [],
        ("model.onnx is empty (0 bytes)",),
    ),
    "ONNX wrong input type (int32)": (
        lambda b, i: [colour_onnx(b / "int.onnx", input_type=6), i],
        ("int.onnx", "input"),
    ),
    "ONNX wrong input type (string)": (
        lambda b, i: [colour_onnx(b / "str.onnx", input_type=8), i],
        ("str.onnx", "input"),
    ),
    "ONNX external data outside its folder": (
        lambda b, i: [colour_onnx(b / "ext.onnx", external="../../outside.bin"), i],
        ("ext.onnx", "outside its folder"),
    ),
    "ONNX external data, absolute path": (
        lambda b, i: [colour_onnx(b / "abs.onnx", external="/etc/hostname"), i],
        ("abs.onnx", "outside"),
    ),
    "OpenVINO .xml without its .bin": (
        lambda b, i: [(b / "openvino/model.bin").unlink() or b / "openvino/model.xml", i],
        ("model.xml has no weights file model.bin",),
    ),
    "OpenVINO .xml truncated": (
        lambda b, i: [_with(b, lambda b: _cut(b / "openvino/model.xml")) / "openvino/model.xml", i],
        ("model.xml is not a loadable OpenVINO IR", "truncated or not a model"),
    ),
    "labels.txt count mismatch": (
        lambda b, i: [b, i] if (b / "labels.txt").write_text("a\nb\nc\n") else [],
        ("labels.txt lists 3 labels",),
    ),
    "metadata labels mismatch the output": (
        lambda b, i: [colour_onnx(b / "m.onnx", labels=("a", "b", "c")), i],
        ("m.onnx outputs 4 classes but has 3 labels",),
    ),
    "--labels file with the wrong count": (
        lambda b, i: [b / "model.onnx", i, "--labels", (b / "l.txt").write_text("x\n") and b / "l.txt"],
        ("outputs 4 classes but has 1 labels",),
    ),
    "metadata not JSON": (
        lambda b, i: [colour_onnx(b / "j.onnx", meta="{not json"), i],
        ("j.onnx has unreadable edgecnn metadata", "re-export"),
    ),
    "metadata from a newer edgecnn": (
        lambda b, i: [colour_onnx(b / "v.onnx", meta='{"schema_version": 99, "labels": ["a"]}'), i],
        ("newer edgecnn",),
    ),
    "foreign model without labels": (
        lambda b, i: [colour_onnx(b / "f.onnx", labels=()), i],
        ("f.onnx has no edgecnn metadata", "--labels"),
    ),
    "report.json unreadable": (
        lambda b, i: [b, i] if (b / "report.json").write_text("{oops") else [],
        ("report.json is unreadable", "export the bundle again"),
    ),
    "top-k larger than the classes": (lambda b, i: [b, i, "--top-k", "9"], ("--top-k 9", "4 classes")),
    "top-k 0": (lambda b, i: [b, i, "--top-k", "0"], ("--top-k 0",)),
    "unknown device": (lambda b, i: [b, i, "--device", "tpu"], ("unknown device 'tpu'", "cpu")),
    "unknown backend": (
        lambda b, i: [b, i, "--backend", "tensorflow"],
        ("unknown backend 'tensorflow'", "onnxruntime"),
    ),
    "unknown precision": (lambda b, i: [b, i, "--precision", "int4"], ("unknown precision 'int4'", "fp32")),
    "image missing": (lambda b, i: [b, i / "nope.jpg"], ("nope.jpg does not exist",)),
    "image zero bytes (named)": (
        lambda b, i: [b, (b / "e.jpg").write_bytes(b"") == 0 and b / "e.jpg"],
        ("e.jpg is empty",),
    ),
    "bad --mean": (
        lambda b, i: [
            colour_onnx(b / "f.onnx", labels=()),
            i,
            "--labels",
            b / "labels.txt",
            "--mean",
            "a,b,c",
        ],
        ("--mean takes three numbers",),
    ),
}


@pytest.mark.parametrize("name", list(PREDICT))
def test_predict_bad_input(name: str, hand_bundle: Path, images: Path, tmp_path: Path) -> None:
    make, words = PREDICT[name]
    args = make(_copy(hand_bundle, tmp_path), images)
    result = run_cli("predict", *args, *([] if "--device" in args else ["--device", "cpu"]))
    assert_user_error(result, *words)


OTHERS: dict[str, tuple[Damage, tuple[str, ...]]] = {
    "eval: data folder missing": (lambda b, i: ["eval", b, i / "nope"], ("nope is not a folder",)),
    "eval: classes the model does not know": (
        lambda b, i: ["eval", b, (b / "d/cats").mkdir(parents=True) or b / "d"],
        ("cats", "not labels of this model"),
    ),
    "eval: class folders without images": (
        lambda b, i: ["eval", b, (b / "d/red").mkdir(parents=True) or b / "d"],
        ("holds no images",),
    ),
    "eval: --out under a regular file": (
        lambda b, i: ["eval", b, i, "--out", b / "labels.txt" / "eval"],
        ("labels.txt", "--out"),
    ),
    "bench: unknown baseline": (
        lambda b, i: ["bench", b, "--baseline", "tensorflow"],
        ("unknown baseline 'tensorflow'", "torch"),
    ),
    "bench: batch 0": (lambda b, i: ["bench", b, "--batch", "0"], ("--batch 0 is out of range", "1 to 4096")),
    "bench: unknown hint": (
        lambda b, i: [
            "bench",
            b,
            "--hint",
            "fastest",
            "--backend",
            "openvino",
            "--seconds",
            "0.2",
            "--no-cold-start",
        ],
        ("unknown performance hint",),
    ),
    "bench: truncated model": (
        lambda b, i: ["bench", _with(_only_onnx(b), lambda b: _cut(b / "model.onnx"))],
        ("not a loadable ONNX model",),
    ),
    "info: model missing": (lambda b, i: ["info", b / "nope.onnx"], ("nope.onnx does not exist",)),
    "info: folder without models": (
        lambda b, i: ["info", b / "openvino" / "x"] if (b / "openvino/x").mkdir() is None else [],
        ("holds no model.onnx",),
    ),
    "info: truncated model": (
        lambda b, i: ["info", _with(b, lambda b: _cut(b / "model.onnx")) / "model.onnx"],
        ("not a loadable ONNX model",),
    ),
}


@pytest.mark.parametrize("name", list(OTHERS))
def test_eval_bench_info_bad_input(name: str, hand_bundle: Path, images: Path, tmp_path: Path) -> None:
    make, words = OTHERS[name]
    args = make(_copy(hand_bundle, tmp_path), images)
    extra = ["--device", "cpu"] if args[0] in ("eval", "bench") else []
    result = run_cli(*args, *extra)
    assert_user_error(result, *words)
    assert not left_behind(tmp_path)
