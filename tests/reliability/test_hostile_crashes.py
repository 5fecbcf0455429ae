"""Crashes, second pass: decompression bombs of every format, huge (sparse) files, malformed metadata and
report.json, ONNX graphs outside what we run: each one line (or a skipped, counted image), no traceback."""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.images import read_image
from edgecnn.runtime.core.metadata import ModelMeta, Preprocess

from tests.reliability.conftest import LABELS, assert_user_error, colour_onnx, run_cli

SIDE = 16384  # 268 megapixels claimed: over the 100 megapixel limit in every format


# -- decompression bombs: a small file whose header claims a huge image -----------------------------
def _webp(path: Path) -> Path:
    """A real lossless WebP whose VP8L header is patched to claim SIDE x SIDE."""
    from PIL import Image

    Image.new("RGB", (16, 16), (200, 10, 10)).save(path, "WEBP", lossless=True)
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"VP8L" and data[20] == 0x2F
    bits = struct.unpack("<I", data[21:25])[0]
    bits = (bits & ~0xFFFFFFF) | (SIDE - 1) | ((SIDE - 1) << 14)
    data[21:25] = struct.pack("<I", bits)
    path.write_bytes(bytes(data))
    return path


def _tiff(path: Path) -> Path:
    """A baseline grey TIFF: one IFD claiming SIDE x SIDE, one strip of 100 bytes."""
    entries = [
        (256, 4, SIDE),
        (257, 4, SIDE),
        (258, 3, 8),
        (259, 3, 1),
        (262, 3, 1),
        (273, 4, 0),
        (277, 3, 1),
        (278, 4, SIDE),
        (279, 4, 100),
    ]
    ifd_size = 2 + 12 * len(entries) + 4
    data_offset = 8 + ifd_size
    ifd = struct.pack("<H", len(entries))
    for tag, kind, value in entries:
        value = data_offset if tag == 273 else value
        ifd += struct.pack("<HHI", tag, kind, 1) + (
            struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        )
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00" * 4 + b"\x80" * 100)
    return path


def _bmp(path: Path) -> Path:
    header = struct.pack("<2sIHHI", b"BM", 54 + 300, 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, SIDE, SIDE, 1, 24, 0, 0, 2835, 2835, 0, 0)
    path.write_bytes(header + info + b"\x00" * 300)
    return path


def _pnm(path: Path, magic: bytes) -> Path:
    path.write_bytes(magic + b"\n%d %d\n255\n" % (SIDE, SIDE) + b"\x00" * 300)
    return path


def _progressive_jpeg(path: Path, photo: np.ndarray) -> Path:
    """A real progressive JPEG (SOF2) whose frame header claims SIDE x SIDE."""
    ok, encoded = cv2.imencode(".jpg", photo[:, :, ::-1], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    data = bytearray(encoded.tobytes())
    pos = 2
    while data[pos + 1] != 0xC2:
        pos += 2 + struct.unpack(">H", data[pos + 2 : pos + 4])[0]
    data[pos + 5 : pos + 9] = struct.pack(">HH", SIDE, SIDE)
    path.write_bytes(bytes(data))
    return path


BOMBS: dict[str, Callable[[Path, np.ndarray], Path]] = {
    "WebP (VP8L header)": lambda t, p: _webp(t / "bomb.webp"),
    "WebP named .png": lambda t, p: (_webp(t / "w.webp").rename(t / "bomb.png"), t / "bomb.png")[1],
    "TIFF": lambda t, p: _tiff(t / "bomb.tif"),
    "BMP": lambda t, p: _bmp(t / "bomb.bmp"),
    "PPM (P6)": lambda t, p: _pnm(t / "bomb.ppm", b"P6"),
    "PGM (P5)": lambda t, p: _pnm(t / "bomb.pgm", b"P5"),
    "progressive JPEG (SOF2)": lambda t, p: _progressive_jpeg(t / "bomb.jpg", p),
}


@pytest.mark.parametrize("name", list(BOMBS))
def test_decompression_bomb_is_refused_from_its_header(name: str, photo: np.ndarray, tmp_path: Path) -> None:
    path = BOMBS[name](tmp_path, photo)
    assert path.stat().st_size < 100_000
    with pytest.raises(EdgecnnError, match=rf"claims {SIDE}x{SIDE} pixels, over the 100 megapixel limit"):
        read_image(path)


def test_bombs_are_skipped_and_counted_by_predict_and_eval(
    hand_bundle: Path, photo: np.ndarray, tmp_path: Path
) -> None:
    """One of each bomb among real images: predict and eval go on, naming and counting every bomb."""
    red = tmp_path / "data" / "red"
    red.mkdir(parents=True)
    for index, make in enumerate(BOMBS.values()):
        folder = red / str(index)
        folder.mkdir()
        make(folder, photo)
    cv2.imwrite(str(red / "good.png"), np.full((32, 32, 3), (0, 0, 255), np.uint8))
    bombs = sorted(str(p) for p in red.rglob("bomb*"))
    result = run_cli("predict", hand_bundle, red, "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    assert (
        '"label": "red"' in result.output and result.output.count("megapixel limit") == 3
    )  # first three named
    assert f"skipped {len(bombs)} unreadable image(s)" in result.output
    result = run_cli(
        "eval", hand_bundle, tmp_path / "data", "--out", tmp_path / "eval", "--device", "cpu", "--json"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["images"] == 1 and len(report["skipped"]) == len(bombs)


def test_calibration_and_training_skip_bombs(photo: np.ndarray, tmp_path: Path) -> None:
    """Calibration images and training images are read through the same gate: bombs are left out."""
    from edgecnn.export.images import fitted_images, folder_images
    from edgecnn.runtime.core.images import is_readable

    for make in BOMBS.values():
        make(tmp_path, photo)
    cv2.imwrite(str(tmp_path / "good.png"), photo[:, :, ::-1])
    assert [p.name for p in sorted(tmp_path.iterdir()) if is_readable(p)] == ["good.png"]
    frames = list(fitted_images(folder_images(tmp_path), Preprocess(input_size=(32, 32))))
    assert len(frames) == 1  # the good photo; every bomb skipped


# -- sizes bounded before reading -------------------------------------------------------------------
def _sparse(path: Path, size: int = 40 * 10**9) -> Path:
    with open(path, "wb") as file:
        file.truncate(size)  # 40 GB on paper, no disk used
    return path


SPARSE: dict[str, tuple[Callable[[Path, Path], list[object]], tuple[str, ...]]] = {
    "40 GB sparse image": (
        lambda t, b: ["predict", b, _sparse(t / "big.jpg"), "--device", "cpu"],
        (
            "image",
            "big.jpg is 40.0 GB, over the 500.0 MB limit",
        ),
    ),
    "40 GB sparse model.onnx": (
        lambda t, b: [
            "predict",
            _sparse(t / "big.onnx"),
            _sparse(t / "x.png", 10),
            "--backend",
            "onnxruntime",
            "--device",
            "cpu",
        ],
        ("big.onnx is over 2 GB",),
    ),
    "40 GB sparse --labels file": (
        lambda t, b: [
            "predict",
            b / "model.onnx",
            _sparse(t / "x.png", 10),
            "--labels",
            _sparse(t / "l.txt"),
            "--device",
            "cpu",
        ],
        ("l.txt is 40.0 GB",),
    ),
}


@pytest.mark.parametrize("name", list(SPARSE))
def test_huge_files_are_refused_before_reading(name: str, hand_bundle: Path, tmp_path: Path) -> None:
    make, words = SPARSE[name]
    assert_user_error(run_cli(*make(tmp_path, hand_bundle)), *words)


# -- model metadata: every field checked once, on load ----------------------------------------------
def _meta(**changes: object) -> str:
    data = json.loads(
        ModelMeta(labels=LABELS, preprocess=Preprocess(input_size=(32, 32)), arch="c").to_json()
    )
    for key, value in changes.items():
        (data["preprocess"] if key in data["preprocess"] else data)[key] = value
    return json.dumps(data)


METADATA: dict[str, tuple[str, tuple[str, ...]]] = {
    "a list where the object belongs": ("[1, 2, 3]", ("the metadata is list, not an object",)),
    "preprocess is a list": (_meta(preprocess=[224, 224]), ("preprocess is list, not an object",)),
    "deep nesting": ('{"labels": ' + "[" * 100_000 + "]" * 100_000 + "}", ("nested too deeply",)),
    "input_size 0": (_meta(input_size=[0, 32]), ("preprocess.input_size is [0, 32]", "1 to 16384")),
    "input_size negative": (_meta(input_size=[-32, 32]), ("preprocess.input_size",)),
    "input_size huge": (_meta(input_size=[10**9, 32]), ("preprocess.input_size",)),
    "input_size NaN": (_meta(input_size=[32, 32]).replace("[32, 32]", "[NaN, 32]"), ("NaN is not a number",)),
    "input_size strings": (_meta(input_size=["32", "32"]), ("preprocess.input_size is ['32', '32']",)),
    "input_size one number": (_meta(input_size=32), ("preprocess.input_size is 32",)),
    "crop_fraction 0": (_meta(crop_fraction=0), ("preprocess.crop_fraction is 0", "above 0.0")),
    "crop_fraction infinite (1e999)": (
        _meta(crop_fraction=2.0).replace("2.0", "1e999"),
        ("preprocess.crop_fraction is inf",),
    ),
    "schema_version infinite (1e999)": (
        _meta(schema_version=5).replace(": 5", ": 1e999"),
        ("schema_version is inf",),
    ),
    "schema_version a string": (_meta(schema_version="1"), ("schema_version is '1'",)),
    "labels a string": (_meta(labels="red,green,blue,gray"), ("labels must be a list",)),
    "labels holding an object": (_meta(labels=["red", {"x": 1}, "blue", "gray"]), ("labels[1] is {'x': 1}",)),
    "labels duplicated": (_meta(labels=["red", "red", "blue", "gray"]), ("lists 'red' twice",)),
    "label with a newline": (_meta(labels=["red\nx", "green", "blue", "gray"]), ("holds a line break",)),
    "mean a string": (_meta(mean="0.5"), ("preprocess.mean is '0.5'", "3 finite numbers")),
    "std zero": (_meta(std=[0, 0, 0]), ("preprocess.std is [0, 0, 0]", "above 0")),
    "layout unknown": (_meta(layout="NWHC"), ("preprocess.layout is 'NWHC'", "'NHWC', 'NCHW'")),
    "normalize_in_graph a string": (_meta(normalize_in_graph="yes"), ("normalize_in_graph is 'yes'",)),
    "accuracy a list": (_meta(accuracy=[1, 2]), ("accuracy is [1, 2]",)),
    "precision unknown": (_meta(precision="int4"), ("precision is 'int4'",)),
    "metadata of 70 MB": ('{"labels": ["' + "x" * 70_000_000 + '"]}', ("over the 64 MB limit",)),
}


@pytest.mark.parametrize("name", list(METADATA))
def test_bad_metadata_names_the_field(name: str, tmp_path: Path) -> None:
    text, words = METADATA[name]
    model = colour_onnx(tmp_path / "m.onnx", meta=text)
    cv2.imwrite(str(tmp_path / "x.png"), np.zeros((8, 8, 3), np.uint8))
    assert_user_error(run_cli("predict", model, tmp_path / "x.png", "--device", "cpu"), "m.onnx", *words)


def _report(bundle: Path, edit: Callable[[dict], object]) -> None:
    path = bundle / "report.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


REPORTS: dict[str, tuple[Callable[[Path], object], tuple[str, ...]]] = {
    "report.json a list": (lambda b: (b / "report.json").write_text("[1, 2]"), ("the report is list",)),
    "report.json deeply nested": (
        lambda b: (b / "report.json").write_text("[" * 100_000 + "]" * 100_000),
        ("nested too deeply",),
    ),
    "models an object of numbers": (
        lambda b: _report(b, lambda d: d.update(models={"a": 1})),
        ("models is {'a': 1}", "expected a list of objects"),
    ),
    "latency a string": (
        lambda b: _report(b, lambda d: d["models"][0].update(latency_ms="fast")),
        ("models[0].latency_ms is 'fast'", "a finite number or null"),
    ),
    "status a number": (
        lambda b: _report(b, lambda d: d["models"][0].update(status=1)),
        ("models[0].status is 1", "one of 'ok', 'failed'"),
    ),
    "schema_version infinite": (
        lambda b: (b / "report.json").write_text(
            re.sub(r'"schema_version": \d+', '"schema_version": 1e999', (b / "report.json").read_text())
        ),
        ("schema_version is inf",),
    ),
    "NaN latency": (
        lambda b: (b / "report.json").write_text(
            (b / "report.json").read_text().replace('"latency_ms": ', '"latency_ms": NaN, "x": ', 1)
        ),
        ("NaN is not a number",),
    ),
}


@pytest.mark.parametrize("name", list(REPORTS))
def test_bad_report_names_the_field(name: str, tiny_bundle: Path, tmp_path: Path) -> None:
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    edit, words = REPORTS[name]
    edit(bundle)
    cv2.imwrite(str(tmp_path / "x.png"), np.zeros((8, 8, 3), np.uint8))
    assert_user_error(
        run_cli("predict", bundle, tmp_path / "x.png", "--device", "cpu"), "report.json", *words
    )


def test_report_json_is_strict_json(tiny_bundle: Path) -> None:
    """Other tools read report.json: no NaN/Infinity tokens, ever (a missing figure is null)."""
    json.loads((tiny_bundle / "report.json").read_text(), parse_constant=lambda name: pytest.fail(name))


# -- ONNX graphs outside what the runtime supports ---------------------------------------------------
def _graph(
    path: Path, inputs: int = 1, symbolic_classes: bool = False, size: tuple[object, object] = (32, 32)
) -> Path:
    """The colour classifier, varied: a second input, or a class count only known at run time
    (logits tiled N times: [N, 4N]; with a batch of one that is 4)."""
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.full((3, 4), 0.1, np.float32), "weights")
    nodes = [
        helper.make_node("Cast", ["images"], ["pixels"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["pixels"], ["means"], axes=[1, 2], keepdims=0),
        helper.make_node("MatMul", ["means", "weights"], ["logits"]),
    ]
    initializers = [weights]
    if symbolic_classes:
        initializers += [
            numpy_helper.from_array(np.array([0], np.int64), "first"),
            numpy_helper.from_array(np.array([1], np.int64), "one"),
        ]
        nodes += [
            helper.make_node("Shape", ["images"], ["shape"]),
            helper.make_node("Gather", ["shape", "first"], ["batch"]),
            helper.make_node("Concat", ["one", "batch"], ["repeats"], axis=0),
            helper.make_node("Tile", ["logits", "repeats"], ["tiled"]),
        ]
    nodes.append(
        helper.make_node("Softmax", ["tiled" if symbolic_classes else "logits"], ["probabilities"], axis=1)
    )
    graph_inputs = [helper.make_tensor_value_info("images", TensorProto.UINT8, ["N", *size, 3])]
    if inputs == 2:
        graph_inputs.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, ["N", 1]))
    output = helper.make_tensor_value_info(
        "probabilities", TensorProto.FLOAT, ["N", "C" if symbolic_classes else 4]
    )
    graph = helper.make_graph(nodes, "g", graph_inputs, [output], initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    ModelMeta(labels=LABELS, preprocess=Preprocess(input_size=(32, 32)), arch="g").write_onnx(model)
    path.write_bytes(model.SerializeToString())
    return path


GRAPHS = {
    "two inputs (onnxruntime)": (lambda p: _graph(p, inputs=2), "onnxruntime", ("has 2 inputs",)),
    "two inputs (openvino)": (lambda p: _graph(p, inputs=2), "openvino", ("has 2 inputs",)),
    "symbolic class dimension (onnxruntime)": (
        lambda p: _graph(p, symbolic_classes=True),
        "onnxruntime",
        ("symbolic class dimension ('C')",),
    ),
    "symbolic class dimension (openvino)": (
        lambda p: _graph(p, symbolic_classes=True),
        "openvino",
        ("symbolic class dimension ('?')",),
    ),
}


@pytest.mark.parametrize("name", list(GRAPHS))
def test_unsupported_graph_says_what_is_supported(name: str, tmp_path: Path) -> None:
    make, backend, words = GRAPHS[name]
    model = make(tmp_path / "g.onnx")
    cv2.imwrite(str(tmp_path / "x.png"), np.zeros((8, 8, 3), np.uint8))
    result = run_cli("predict", model, tmp_path / "x.png", "--backend", backend, "--device", "cpu")
    assert_user_error(result, *words, "edgecnn runs image classifiers: one image input")


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_dynamic_height_and_width_run(backend: str, tmp_path: Path) -> None:
    """[N, H, W, 3] with symbolic H and W: frames are fitted to the metadata's size and classified."""
    model = _graph(tmp_path / "g.onnx", size=("H", "W"))
    cv2.imwrite(str(tmp_path / "x.png"), np.zeros((8, 8, 3), np.uint8))
    result = run_cli("predict", model, tmp_path / "x.png", "--backend", backend, "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["predictions"][0][
        "probability"
    ] == pytest.approx(0.25)


def test_fifo_named_as_the_bundle_report_is_not_opened(hand_bundle: Path, tmp_path: Path) -> None:
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(hand_bundle, bundle)
    os.mkfifo(bundle / "report.json")
    cv2.imwrite(str(tmp_path / "x.png"), np.zeros((8, 8, 3), np.uint8))
    result = run_cli("predict", bundle, tmp_path / "x.png", "--device", "cpu")
    assert result.exit_code == 0, result.output  # not a file: the bundle reads as one without a report
