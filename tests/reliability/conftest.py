"""Reliability helpers: run the CLI, check a user error is one clean line, make damaged and odd inputs."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from edgecnn.runtime.core.metadata import META_KEY, ModelMeta, Preprocess
from typer.testing import CliRunner

from edgecnn.cli import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def run_cli(*args: object) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def flat(text: str) -> str:
    """Output with Rich's box drawing and line wrapping removed, for word checks."""
    return " ".join(text.replace("│", " ").replace("╭", " ").replace("╰", " ").replace("─", " ").split())


def assert_user_error(result: Any, *words: str, one_line: bool = True) -> str:
    """Exit code 2, no traceback, every word in the message; EdgecnnErrors print exactly one line."""
    output = result.output
    assert result.exit_code == 2, output
    assert "Traceback" not in output, output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in output.splitlines() if line.strip()]
    if one_line:
        errors = [line for line in lines if line.startswith("error:")]
        assert len(errors) == 1, output
        message = errors[0]
    else:
        message = flat(output)
    for word in words:
        assert word in flat(message), f"{word!r} not in {message!r}"
    if os.environ.get("EDGECNN_RELIABILITY_LOG"):  # collects what users see, for docs/reliability.md
        with open(os.environ["EDGECNN_RELIABILITY_LOG"], "a", encoding="utf-8") as log:
            test = os.environ.get("PYTEST_CURRENT_TEST", "")
            log.write(json.dumps({"test": test, "message": message}) + "\n")
    return message


def left_behind(folder: Path) -> list[str]:
    """Temporary or partial files an interrupted or failed command must not leave."""
    if not folder.exists():
        return []
    return sorted(
        p.name for p in folder.rglob("*") if ".tmp" in p.name or ".partial" in p.name or ".old-" in p.name
    )


def python_cli(*args: object, env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.Popen:
    """`python -m edgecnn ARGS` in its own process (for signals and concurrency)."""
    return subprocess.Popen(
        [sys.executable, "-m", "edgecnn", *map(str, args)],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A real RGB photo (skimage's chelsea the cat, 300x451)."""
    from skimage import data

    return data.chelsea()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def huge_png(path: Path, side: int = 20000, rows: int = 20) -> Path:
    """A PNG whose header claims side x side RGB pixels, with a few real rows of data."""
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * (1 + 3 * side) * rows)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", pixels)
        + png_chunk(b"IEND", b"")
    )
    return path


def huge_jpeg(path: Path, photo: np.ndarray, side: int = 20000) -> Path:
    """A real JPEG whose frame header is rewritten to claim side x side pixels."""
    data = bytearray(cv2.imencode(".jpg", photo[:, :, ::-1])[1].tobytes())
    pos = 2
    while data[pos + 1] not in (0xC0, 0xC1, 0xC2):
        pos += 2 + struct.unpack(">H", data[pos + 2 : pos + 4])[0]
    data[pos + 5 : pos + 9] = struct.pack(">HH", side, side)
    path.write_bytes(bytes(data))
    return path


def odd_images(folder: Path, photo: np.ndarray) -> dict[str, Path]:
    """The same photo in every odd format a user's folder holds; name -> file."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    bgr = photo[:, :, ::-1]
    files = {
        "grayscale": folder / "gray.png",
        "cmyk": folder / "cmyk.jpg",
        "rgba": folder / "rgba.png",
        "palette": folder / "palette.png",
        "16-bit": folder / "deep.png",
        "exif-rotated": folder / "rotated.jpg",
        "spaces and non-ASCII": folder / "café crème – photo 1.jpg",
    }
    cv2.imwrite(str(files["grayscale"]), cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY))
    Image.fromarray(photo).convert("CMYK").save(files["cmyk"], quality=95)
    cv2.imwrite(str(files["rgba"]), cv2.cvtColor(photo, cv2.COLOR_RGB2BGRA))
    Image.fromarray(photo).convert("P").save(files["palette"])
    cv2.imwrite(str(files["16-bit"]), bgr.astype(np.uint16) * 257)
    image = Image.fromarray(photo)
    exif = image.getexif()
    exif[0x0112] = 6  # orientation: the camera was turned; viewers rotate 90 degrees clockwise
    image.save(files["exif-rotated"], exif=exif.tobytes(), quality=95)
    files["spaces and non-ASCII"].write_bytes(cv2.imencode(".jpg", bgr)[1].tobytes())
    return files


def damaged_images(folder: Path, photo: np.ndarray) -> dict[str, Path]:
    """Files that look like images but cannot be decoded; name -> file."""
    folder.mkdir(parents=True, exist_ok=True)
    jpeg = cv2.imencode(".jpg", photo[:, :, ::-1])[1].tobytes()
    png = cv2.imencode(".png", photo[:, :, ::-1])[1].tobytes()
    files = {
        "zero-byte": folder / "empty.jpg",
        "truncated JPEG": folder / "cut.jpg",
        "truncated PNG": folder / "cut.png",
        "text named .png": folder / "notes.png",
        "huge PNG header": folder / "huge.png",
        "huge JPEG header": folder / "huge.jpg",
    }
    files["zero-byte"].write_bytes(b"")
    files["truncated JPEG"].write_bytes(jpeg[: len(jpeg) // 2])
    files["truncated PNG"].write_bytes(png[: len(png) // 2])
    files["text named .png"].write_text("not an image")
    huge_png(files["huge PNG header"])
    huge_jpeg(files["huge JPEG header"], photo)
    return files


@pytest.fixture(scope="session")
def two_class_data(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two classes of four sample photos each: the smallest real training set."""
    root = tmp_path_factory.mktemp("two_classes")
    for name in ("fishes", "tools"):
        (root / name).mkdir()
        for image in sorted((tiny_data / name).iterdir())[:4]:
            shutil.copy(image, root / name / image.name)
    return root


LABELS = ("red", "green", "blue", "gray")
WEIGHTS = np.array([[4, -2, -2, 0], [-2, 4, -2, 0], [-2, -2, 4, 0]], np.float32) / 64.0


def colour_onnx(
    path: Path,
    labels: tuple[str, ...] = LABELS,
    input_type: int | None = None,
    external: str | None = None,
    meta: str | None = None,
    classes: int = 4,
) -> Path:
    """uint8 NHWC [N,32,32,3] -> softmax(mean colour @ W): an edgecnn-shaped model, metadata inside."""
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.resize(WEIGHTS, (3, classes)).astype(np.float32), "weights")
    if external is not None:
        weights.ClearField("raw_data")
        weights.data_location = TensorProto.EXTERNAL
        for key, value in (("location", external), ("offset", "0"), ("length", str(12 * classes))):
            entry = weights.external_data.add()
            entry.key, entry.value = key, value
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["images"], ["pixels"], to=TensorProto.FLOAT),
            helper.make_node("ReduceMean", ["pixels"], ["means"], axes=[1, 2], keepdims=0),
            helper.make_node("MatMul", ["means", "weights"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        "colour",
        [helper.make_tensor_value_info("images", input_type or TensorProto.UINT8, ["N", 32, 32, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", classes])],
        initializer=[weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if meta is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = META_KEY, meta
    elif labels:
        ModelMeta(labels=labels, preprocess=Preprocess(input_size=(32, 32)), arch="colour").write_onnx(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


@pytest.fixture(scope="session")
def hand_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import openvino as ov

    bundle = tmp_path_factory.mktemp("hand") / "bundle"
    onnx_path = colour_onnx(bundle / "model.onnx")
    model = ov.convert_model(str(onnx_path))
    ModelMeta(labels=LABELS, preprocess=Preprocess(input_size=(32, 32)), arch="colour").write_openvino(model)
    (bundle / "openvino").mkdir()
    ov.save_model(model, str(bundle / "openvino" / "model.xml"))
    (bundle / "labels.txt").write_text("\n".join(LABELS) + "\n")
    return bundle
