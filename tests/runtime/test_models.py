"""Foreign models, bad model files and device requests: each a one-line EdgecnnError or a working engine."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from edgecnn.runtime import EdgecnnError, load
from edgecnn.runtime.core.devices import available, place

from tests.runtime.conftest import mean_colour_onnx

COLOURS = ["red", "green", "blue"]


@pytest.fixture()
def colour_model(tmp_path: Path) -> tuple[Path, Path]:
    labels = tmp_path / "colours.txt"
    labels.write_text("\n".join(COLOURS) + "\n")
    return mean_colour_onnx(tmp_path / "colour.onnx", np.eye(3)), labels


def solid(rgb: tuple[int, int, int]) -> np.ndarray:
    return np.full((40, 60, 3), rgb, np.uint8)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_foreign_float_model_runs_with_labels_mean_std(colour_model: tuple[Path, Path], backend: str) -> None:
    model, labels = colour_model
    engine = load(model, backend=backend, labels=labels, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert engine.input_size == (32, 32) and engine.labels == tuple(COLOURS)
    results = engine.classify([solid((250, 10, 10)), solid((10, 10, 250)), solid((10, 250, 10))], top_k=3)
    assert [r[0].label for r in results] == ["red", "blue", "green"]
    assert abs(sum(p.probability for p in results[0]) - 1.0) < 1e-5  # softmax applied to logits
    bgr = engine.classify(solid((250, 10, 10)), top_k=1, bgr=True)  # red in BGR order is blue
    assert bgr[0][0].label == "blue"


def test_foreign_model_says_what_is_missing(colour_model: tuple[Path, Path]) -> None:
    model, labels = colour_model
    with pytest.raises(EdgecnnError, match="no edgecnn metadata; pass --labels FILE and --mean"):
        load(model)
    with pytest.raises(EdgecnnError, match="--mean R,G,B"):
        load(model, labels=labels)
    wrong = labels.with_name("two.txt")
    wrong.write_text("a\nb\n")
    with pytest.raises(EdgecnnError, match="outputs 3 classes but has 2 labels"):
        load(model, labels=wrong, mean=(0.5,) * 3, std=(0.5,) * 3)


def test_external_data_outside_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "outside.bin").write_bytes(np.eye(3, dtype=np.float32).tobytes())
    (tmp_path / "model").mkdir()
    model = mean_colour_onnx(tmp_path / "model" / "m.onnx", np.eye(3), external="../outside.bin")
    for backend in ("onnxruntime", "openvino"):
        with pytest.raises(EdgecnnError, match="outside its folder"):
            load(model, backend=backend, labels=COLOURS, mean=(0.5,) * 3, std=(0.5,) * 3)
    inside = mean_colour_onnx(tmp_path / "ok.onnx", np.eye(3), external="ok.bin")
    shutil.copy(tmp_path / "outside.bin", tmp_path / "ok.bin")
    engine = load(inside, labels=COLOURS, mean=(0.5,) * 3, std=(0.5,) * 3)
    assert engine.classify(solid((0, 250, 0)), top_k=1)[0][0].label == "green"


def test_bad_model_files(imagenet_bundle: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes((imagenet_bundle / "model.onnx").read_bytes()[:200_000])
    text = tmp_path / "notes.onnx"
    text.write_text("these are not the weights you are looking for\n")
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    for bad in (truncated, text, empty):
        with pytest.raises(EdgecnnError, match=r"(not a loadable ONNX|empty)"):
            load(bad)
    xml_alone = tmp_path / "alone.xml"
    shutil.copy(imagenet_bundle / "openvino" / "model.xml", xml_alone)
    with pytest.raises(EdgecnnError, match="no weights file alone.bin"):
        load(xml_alone)
    broken = tmp_path / "broken.xml"
    broken.write_text((imagenet_bundle / "openvino" / "model.xml").read_text()[:5000])
    shutil.copy(imagenet_bundle / "openvino" / "model.bin", broken.with_suffix(".bin"))
    with pytest.raises(EdgecnnError, match="not a loadable OpenVINO IR"):
        load(broken)
    with pytest.raises(EdgecnnError, match="not a model file"):
        load(imagenet_bundle / "report.json")


def test_bundle_with_mismatched_labels(imagenet_bundle: Path, tmp_path: Path) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(imagenet_bundle, copy)
    (copy / "labels.txt").write_text("cat\ndog\n")
    with pytest.raises(EdgecnnError, match="labels.txt lists 2 labels but the model has 1000"):
        load(copy)
    with pytest.raises(EdgecnnError, match="outputs 1000 classes but has 2 labels"):
        load(copy / "model.onnx", labels=copy / "labels.txt")


def test_device_requests() -> None:
    here = available()
    assert "cpu" in here["onnxruntime"] and "cpu" in here["openvino"]
    assert place("cpu", "onnxruntime").target == ("CPUExecutionProvider",)
    assert place("auto").reason.startswith("auto picked")
    for device in ("npu", "gpu"):
        if any(device in kinds for kinds in here.values()):
            continue
        with pytest.raises(EdgecnnError, match=rf"device {device} .*not available here; available: .*cpu"):
            place(device)
    with pytest.raises(EdgecnnError, match="unknown device 'tpu'; choose one of auto, cpu, gpu, npu"):
        place("tpu")


def test_openvino_cache_makes_second_compile_fast(imagenet_bundle: Path, tmp_path: Path) -> None:
    model = imagenet_bundle / "openvino" / "model.int8.xml"
    first = load(model, cache_dir=tmp_path / "cache")
    assert any((tmp_path / "cache").iterdir())
    second = load(model, cache_dir=tmp_path / "cache")
    assert second.compile_seconds < first.compile_seconds
