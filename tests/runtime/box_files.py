"""What the box tests share: a bundle folder holding the reliability tests' tiny colour model, and a
colour model with an unknown detector (its graph computes the score) for slideshows that end in unknown."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from edgecnn.runtime.core.metadata import ModelMeta, Preprocess, UnknownMeta

from tests.reliability.conftest import colour_onnx

UNKNOWN_LABELS = ("red", "green", "blue")
# logits = mean colour (0..255, RGB) @ W: a pure colour gives its class ~1.0; a grey, black, white or
# evenly mixed picture gives 1/3 each, so 1 - max probability = 0.67, above the threshold 0.5
UNKNOWN_WEIGHTS = np.array([[4, -2, -2], [-2, 4, -2], [-2, -2, 4]], np.float32) / 32.0


def colour_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("box") / "bundle"
    folder.mkdir()
    colour_onnx(folder / "model.onnx")
    return folder


def unknown_colour_onnx(path: Path, threshold: float = 0.5) -> Path:
    """uint8 NHWC [N,32,32,3] -> probabilities = softmax(mean colour @ W) and unknown_score = 1 - max of
    them (the "msp" rule), with ModelMeta.unknown saying so: a real graph, as an export writes one."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Cast", ["images"], ["pixels"], to=TensorProto.FLOAT),
         helper.make_node("ReduceMean", ["pixels"], ["means"], axes=[1, 2], keepdims=0),
         helper.make_node("MatMul", ["means", "weights"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
         helper.make_node("ReduceMax", ["probabilities"], ["top1"], axes=[1], keepdims=0),
         helper.make_node("Sub", ["one", "top1"], ["unknown_score"])],
        "colour_unknown",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, ["N", 32, 32, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", len(UNKNOWN_LABELS)]),
         helper.make_tensor_value_info("unknown_score", TensorProto.FLOAT, ["N"])],
        initializer=[numpy_helper.from_array(UNKNOWN_WEIGHTS, "weights"),
                     numpy_helper.from_array(np.array(1.0, np.float32), "one")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    unknown = UnknownMeta(rule="msp", threshold=threshold, calibration="pure red, green and blue pictures")
    ModelMeta(labels=UNKNOWN_LABELS, preprocess=Preprocess(input_size=(32, 32)), arch="colour",
              unknown=unknown).write_onnx(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path
