"""ONNX Runtime's histogram calibration (Percentile, Entropy) in strides: memory bounded by the stride,
every calibration image still counted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from edgecnn.export import quantize
from edgecnn.export.images import ImageSet, batches
from edgecnn.runtime.core.images import iter_image_files
from edgecnn.runtime.core.metadata import Preprocess

PREPROCESS = Preprocess(input_size=(64, 64))


def images(folder: Path, count: int) -> ImageSet:
    return ImageSet(tuple(list(iter_image_files(folder))[:count]))


@pytest.mark.parametrize(("count", "stride"), [(20, 8), (16, 8), (3, 8), (7, 1)])
def test_strided_ranges_cover_every_batch_once(sample_photos: Path, count: int, stride: int) -> None:
    """ORT's strided loop (len must be a multiple of the stride, then set_range per stride) reads every
    batch exactly once and never meets an empty range, whatever the count."""
    reader = quantize.ranged_reader(images(sample_photos, count), PREPROCESS, 1, stride)
    assert len(reader) % stride == 0
    seen = []
    for start in range(0, len(reader), stride):
        reader.set_range(start_index=start, end_index=start + stride)
        chunk = list(iter(reader.get_next, None))
        assert 0 < len(chunk) <= stride
        seen += [item[quantize.INPUT_NAME] for item in chunk]
    assert len(seen) == count and all(batch.shape == (1, 64, 64, 3) for batch in seen)
    assert len({batch.tobytes() for batch in seen}) == count  # each image once, in order


def test_unreadable_calibration_images_only_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(quantize.EdgecnnError, match="none of the calibration images could be read"):
        quantize.ranged_reader(ImageSet((tmp_path / "broken.jpg",)), PREPROCESS, 1, 8)


def test_percentile_calibration_holds_one_stride_of_activations(imagenet_bundle: Path, sample_photos: Path,
                                                                tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The histogram collector gets at most HISTOGRAM_STRIDE batches at a time (ORT kept them all: 65 MB
    per image, ~20 GB for 300), and all of them in the end; INT8 still answers as FP32 does."""
    import onnxruntime as ort
    from onnxruntime.quantization.calibrate import HistogramCollector

    sizes: list[int] = []
    collect = HistogramCollector.collect

    def counted(self: Any, name_to_arr: dict[str, list[Any]]) -> Any:
        sizes.append(max(len(arrays) for arrays in name_to_arr.values()))
        return collect(self, name_to_arr)

    monkeypatch.setattr(HistogramCollector, "collect", counted)
    monkeypatch.setattr(quantize, "HISTOGRAM_STRIDE", 4)
    from edgecnn.runtime import load

    with load(imagenet_bundle, backend="onnxruntime", precision="fp32") as engine:
        preprocess = engine.preprocess
    prepared = quantize.prepare_onnx(imagenet_bundle / "model.onnx", tmp_path)
    out, _ = quantize.quantize_onnx(prepared, tmp_path / "int8.onnx", images(sample_photos, 10), preprocess,
                                    quantize.OnnxRecipe("percentile", "percentile"))
    assert sizes == [4, 4, 2]
    batch = np.concatenate([frames for frames, _ in batches(images(sample_photos, 10), preprocess, 1)])
    fp32, int8 = (ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
                  for path in (imagenet_bundle / "model.onnx", out))
    tops = [session.run(None, {quantize.INPUT_NAME: batch})[0].argmax(axis=1) for session in (fp32, int8)]
    assert (tops[0] == tops[1]).sum() >= 8, tops


# -- a calibration batch whose activation range is degenerate ----------------------------------------
def save_uint8_model(path: Path, nodes: list[Any], weights: list[Any], size: int) -> None:
    """A graph of `nodes` from uint8 images [N, size, size, 3] to probabilities [N, 4], written to `path`."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, path.stem, [helper.make_tensor_value_info("images", TensorProto.UINT8,
                                                                              ["N", size, size, 3])],
                              [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 4])],
                              initializer=weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())


def flat_model(folder: Path) -> tuple[Path, ImageSet]:
    """uint8 [N,8,8,3] -> 1 + 1e-6 * pixels -> Conv -> ... : with pixels of 128 or 129 the first Conv's
    input spans 8 float32 steps, too few for ORT's 2048 histogram bins (what near-identical captured frames
    did to a real export); the images to calibrate it on."""
    import cv2
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Cast", ["images"], ["pixels"], to=TensorProto.FLOAT),
             helper.make_node("Transpose", ["pixels"], ["nchw"], perm=[0, 3, 1, 2]),
             helper.make_node("Mul", ["nchw", "scale"], ["scaled"]),
             helper.make_node("Add", ["scaled", "one"], ["shifted"]),
             helper.make_node("Conv", ["shifted", "w"], ["features"]),
             helper.make_node("Relu", ["features"], ["relu"]),
             helper.make_node("Conv", ["relu", "w2"], ["mixed"]),
             helper.make_node("ReduceMean", ["mixed"], ["logits"], axes=[2, 3], keepdims=0),
             helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)]
    weights = [numpy_helper.from_array(np.array(1e-6, np.float32), "scale"),
               numpy_helper.from_array(np.array(1.0, np.float32), "one"),
               numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w"),
               numpy_helper.from_array(np.eye(4, dtype=np.float32).reshape(4, 4, 1, 1), "w2")]
    save_uint8_model(folder / "fp32.onnx", nodes, weights, 8)
    rng = np.random.default_rng(0)
    paths = []
    for index in range(20):
        paths.append(folder / f"{index}.png")
        cv2.imwrite(str(paths[-1]), rng.integers(128, 130, (8, 8, 3), dtype=np.uint8))
    return folder / "fp32.onnx", ImageSet(tuple(paths))


FLAT = Preprocess(input_size=(8, 8))


def test_a_degenerate_histogram_is_a_recipe_that_cannot_calibrate(tmp_path: Path) -> None:
    """ORT's Percentile raised numpy's "Too many bins for data range" from deep inside quantize_static."""
    fp32, flat = flat_model(tmp_path)
    prepared = quantize.prepare_onnx(fp32, tmp_path)
    percentile = quantize.OnnxRecipe("percentile", "percentile")
    with pytest.raises(quantize.CannotCalibrate, match="narrower than 2048 float32 steps"):
        quantize.quantize_onnx(prepared, tmp_path / "p.onnx", flat, FLAT, percentile, 4)
    assert not (tmp_path / "p.onnx").exists() and not list(tmp_path.glob(".quantize-*"))
    made, _ = quantize.quantize_onnx(prepared, tmp_path / "m.onnx", flat, FLAT, quantize.OnnxRecipe("m"), 4)
    assert made.is_file()


def flat_search(tmp_path: Path) -> tuple[Any, Any, Any]:
    """The search's callables on the flat model and images: (quantize, check, timer)."""
    import onnxruntime as ort
    from edgecnn.export.gate import AgreementTally, Verdict

    fp32, flat = flat_model(tmp_path)
    prepared = quantize.prepare_onnx(fp32, tmp_path)
    frames = np.concatenate([batch for batch, _ in batches(flat, FLAT, 4)])

    def run(path: Path) -> np.ndarray:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {"images": frames})[0]

    def check(path: Path) -> tuple[Any, Verdict, Any]:
        tally = AgreementTally()
        tally.add(run(fp32), run(path))
        return tally.result(labelled=False), Verdict(True, "test", ""), None

    def quantize_with(recipe: Any, path: Path) -> tuple[Path, tuple[str, ...]]:
        return quantize.quantize_onnx(prepared, path, flat, FLAT, recipe, 4)

    def timer(predicts: list[Any]) -> list[float]:
        return [1.0] * len(predicts)

    return quantize_with, check, timer


PERCENTILE, MINMAX = quantize.OnnxRecipe("percentile", "percentile"), quantize.OnnxRecipe("minmax")


def test_the_search_skips_a_recipe_that_cannot_calibrate_and_keeps_the_next(tmp_path: Path) -> None:
    from edgecnn.export.report import recipe_line
    from edgecnn.export.search import search

    said: list[str] = []
    callables = flat_search(tmp_path)
    tried = search([PERCENTILE, MINMAX], *callables, tmp_path / "int8.onnx", said.append)
    assert [(t.recipe, t.kept) for t in tried] == [("minmax", True), ("percentile", False)]
    assert (tmp_path / "int8.onnx").is_file() and not tried[1].passed
    assert tried[1].problem.startswith("cannot calibrate: percentile calibration cannot build its histograms")
    assert any("percentile skipped: percentile calibration cannot build its histograms" in s for s in said)
    assert recipe_line(tried[1]).startswith("percentile: skipped, cannot calibrate: percentile calibration")
    with pytest.raises(quantize.EdgecnnError, match="no INT8 recipe could calibrate on these images"):
        search([PERCENTILE], *callables, tmp_path / "b.onnx")


def test_an_asked_for_method_that_cannot_calibrate_falls_back_to_minmax(tmp_path: Path) -> None:
    """--calibration-method percentile on near-identical images: minmax for this export, said in one line
    and listed in the report's tries (the percentile try as skipped)."""
    from edgecnn.export.search import search

    said: list[str] = []
    fallback = quantize.fallback_recipes("percentile")
    tried = search([PERCENTILE], *flat_search(tmp_path), tmp_path / "c.onnx", said.append, fallback=fallback)
    assert [(t.recipe, t.kept, t.passed) for t in tried] == [
        ("minmax, first conv float (fallback: percentile cannot calibrate on these images)", True, True),
        ("percentile", False, False)]
    assert (tmp_path / "c.onnx").is_file() and sum("INT8: falling back to minmax" in s for s in said) == 1
    assert quantize.fallback_recipes("auto") == () == quantize.fallback_recipes("minmax")


def pooled_model(path: Path) -> Path:
    """uint8 [N,16,16,3] -> Conv -> Relu -> Conv -> GlobalAveragePool -> Flatten -> Gemm -> Softmax: the shape
    of an exported classifier's tail."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Cast", ["images"], ["pixels"], to=TensorProto.FLOAT),
             helper.make_node("Transpose", ["pixels"], ["nchw"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["nchw", "w"], ["features"], name="conv1"),
             helper.make_node("Relu", ["features"], ["relu"], name="relu"),
             helper.make_node("Conv", ["relu", "w2"], ["mixed"], name="conv2"),
             helper.make_node("GlobalAveragePool", ["mixed"], ["pooled"], name="pool"),
             helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
             helper.make_node("Gemm", ["flat", "head", "bias"], ["logits"], name="classifier", transB=1),
             helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=1)]
    weights = [numpy_helper.from_array(rng.normal(size=shape).astype(np.float32) / 255, name) for name, shape
               in (("w", (8, 3, 3, 3)), ("w2", (8, 8, 1, 1)), ("head", (4, 8)), ("bias", (4,)))]
    save_uint8_model(path, nodes, weights, 16)
    return path


@pytest.mark.parametrize(("changes", "head_float", "zero_point"), [
    ({}, False, np.uint8), ({"float_head": True}, True, np.uint8), ({"activations": "int8"}, False, np.int8)])
def test_recipe_float_head_and_s8s8(sample_photos: Path, tmp_path: Path, changes: dict, head_float: bool,
                                    zero_point: type) -> None:
    import onnx
    from onnx import numpy_helper

    prepared = quantize.prepare_onnx(pooled_model(tmp_path / "fp32.onnx"), tmp_path)
    assert quantize.head_nodes(onnx.load(str(prepared)))[:2] == ["flatten", "classifier"]
    recipe = quantize.OnnxRecipe("r", **changes)
    made, floats = quantize.quantize_onnx(prepared, tmp_path / "int8.onnx", images(sample_photos, 8),
                                          Preprocess(input_size=(16, 16)), recipe, 4)
    model = onnx.load(str(made))
    makers = {out: node.op_type for node in model.graph.node for out in node.output}
    gemm = next(node for node in model.graph.node if node.op_type == "Gemm")
    assert (makers.get(gemm.input[0]) == "DequantizeLinear") is not head_float  # the pooled input rounded?
    assert ("classifier" in floats) is head_float
    points = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    activation = next(node for node in model.graph.node if node.op_type == "QuantizeLinear"
                      and node.input[0] == "relu")
    assert points[activation.input[2]].dtype == zero_point
