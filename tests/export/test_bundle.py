"""The bundles export writes: files, metadata the runtime reads back, FP32 parity, INT8 that agrees."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from edgecnn.runtime.core.metadata import ModelMeta

MODELS = ("model.onnx", "model.int8.onnx", "openvino/model.xml", "openvino/model.int8.xml")


def fitted_images(folder: Path, preprocess, count: int = 12) -> np.ndarray:
    from edgecnn.runtime.core.images import iter_image_files, read_image
    from edgecnn.runtime.core.preprocess import fit_frame

    frames = []
    for path in iter_image_files(folder):
        try:
            frames.append(fit_frame(read_image(path), preprocess))
        except Exception:  # noqa: BLE001 - the sample set holds deliberately damaged files
            continue
        if len(frames) == count:
            break
    return np.stack(frames)


def run_model(path: Path, frames: np.ndarray) -> np.ndarray:
    """Probabilities from ONNX Runtime (.onnx) or OpenVINO (.xml), straight from the files."""
    if path.suffix == ".onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {"images": frames})[0]
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return compiled(frames)[0]


@pytest.mark.parametrize("name", [*MODELS, "openvino/model.bin", "openvino/model.int8.bin", "labels.txt",
                                  "report.json", "report.md"])
def test_bundle_has_every_file(tiny_bundle: Path, name: str) -> None:
    assert (tiny_bundle / name).stat().st_size > 0
    assert not [p for p in tiny_bundle.parent.iterdir() if ".partial-" in p.name]


@pytest.mark.parametrize("name", MODELS)
def test_metadata_round_trips(tiny_bundle: Path, name: str) -> None:
    meta = ModelMeta.read(tiny_bundle / name)
    labels = tuple((tiny_bundle / "labels.txt").read_text().split())
    assert meta is not None and meta.labels == labels and len(labels) == 4
    assert meta.precision == ("int8" if ".int8." in name else "fp32")
    assert meta.preprocess.layout == "NHWC" and meta.preprocess.normalize_in_graph
    assert meta.arch == "efficientnet_lite0" and meta.edgecnn_version and meta.created
    assert {"top1", "agreement", "max_abs_diff", "val_images"} <= set(meta.accuracy)
    assert "top5" not in meta.accuracy  # 4 classes: top-5 would always be 100 %


@pytest.mark.parametrize("name", MODELS)
def test_models_take_uint8_nhwc_and_return_probabilities(tiny_bundle: Path, sample_photos: Path,
                                                         name: str) -> None:
    meta = ModelMeta.read(tiny_bundle / name)
    frames = fitted_images(sample_photos, meta.preprocess, count=3)  # batch 3: the batch is dynamic
    probabilities = run_model(tiny_bundle / name, frames)
    assert probabilities.shape == (3, 4) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-3)


def test_report_proves_fp32_parity_and_int8_agreement(tiny_bundle: Path) -> None:
    report = json.loads((tiny_bundle / "report.json").read_text())
    models = {m["name"]: m for m in report["models"]}
    assert set(models) == {"onnx fp32", "onnx int8", "openvino fp32", "openvino int8"}
    assert models["onnx fp32"]["max_abs_diff"] <= 1e-3
    assert report["openvino_fp32_graph_max_abs_diff"] <= 1e-3
    assert all(m["status"] == "ok" for m in models.values()) and report["passed"]
    assert models["onnx int8"]["agreement_fp32"] >= 75 and models["openvino int8"]["agreement_fp32"] >= 75
    assert report["ratios"]["onnxruntime"]["size"] < 0.4
    assert "| onnx int8 |" in (tiny_bundle / "report.md").read_text()


def test_fp32_onnx_matches_pytorch(tiny_run: Path, tiny_bundle: Path, sample_photos: Path) -> None:
    import torch
    from edgecnn.export.onnx import deployable

    from edgecnn.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(tiny_run / "best.pt")
    frames = fitted_images(sample_photos, ModelMeta.read(tiny_bundle / "model.onnx").preprocess)
    with torch.no_grad():
        wrapped = deployable(checkpoint.build_model(), checkpoint.preprocess)
        expected = wrapped(torch.from_numpy(frames)).numpy()
    np.testing.assert_allclose(run_model(tiny_bundle / "model.onnx", frames), expected, atol=1e-4)


@pytest.mark.parametrize("int8", ["model.int8.onnx", "openvino/model.int8.xml"])
def test_int8_agrees_with_fp32_on_most_images(tiny_bundle: Path, sample_photos: Path, int8: str) -> None:
    frames = fitted_images(sample_photos, ModelMeta.read(tiny_bundle / "model.onnx").preprocess, count=40)
    fp32 = run_model(tiny_bundle / "model.onnx", frames).argmax(1)
    assert (run_model(tiny_bundle / int8, frames).argmax(1) == fp32).mean() >= 0.8


def test_int8_keeps_preprocessing_and_softmax_in_float(tiny_bundle: Path) -> None:
    import onnx

    graph = onnx.load(str(tiny_bundle / "model.int8.onnx")).graph
    ops = [node.op_type for node in graph.node if node.op_type != "DequantizeLinear"]
    # Preprocessing and the first convolution (its 3-channel input quantises poorly) run in float.
    assert ops[:7] == ["Transpose", "Cast", "Sub", "Mul", "Conv", "Clip", "QuantizeLinear"]
    producer = {out: node.op_type for node in graph.node for out in node.output}
    softmax = next(node for node in graph.node if node.op_type == "Softmax")
    assert producer[softmax.input[0]] == "Gemm"  # float logits, no Q/DQ pair around the softmax


def test_pretrained_bundle_recognises_imagenet_classes(imagenet_bundle: Path) -> None:
    from skimage import data

    meta = ModelMeta.read(imagenet_bundle / "model.int8.onnx")
    assert meta.num_classes == 1000
    from edgecnn.runtime.core.preprocess import fit_frame

    frames = np.stack([fit_frame(data.chelsea(), meta.preprocess), fit_frame(data.coffee(), meta.preprocess)])
    for name in MODELS:
        top = [meta.labels[i] for i in run_model(imagenet_bundle / name, frames).argmax(1)]
        assert top[0] in ("tiger cat", "Egyptian cat", "tabby") and top[1] == "espresso", name
    report = json.loads((imagenet_bundle / "report.json").read_text())
    assert not report["labelled"] and "agreement" in report["accuracy_basis"]
    assert all(m["top1"] is None for m in report["models"])
