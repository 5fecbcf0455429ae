"""Runtime test helpers: real photos as frames, small hand-made models for the foreign/bad-file cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def chelsea() -> np.ndarray:
    from skimage import data

    return data.chelsea()


@pytest.fixture(scope="session")
def coffee() -> np.ndarray:
    from skimage import data

    return data.coffee()


def mean_colour_onnx(path: Path, weights: np.ndarray, external: str | None = None, size: int = 32) -> Path:
    """A foreign float NCHW model: per-channel mean, then logits = means @ weights (no metadata), taking
    `size` x `size` pictures.

    With `external`, the weights live in an external-data file at that (relative) location.
    """
    from onnx import TensorProto, helper, numpy_helper

    weights = weights.astype(np.float32)
    tensor = numpy_helper.from_array(weights, "weights")
    if external is not None:
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", external), ("offset", "0"), ("length", str(weights.nbytes))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["input"], ["means"], axes=[2, 3], keepdims=0),
         helper.make_node("MatMul", ["means", "weights"], ["logits"])],
        "mean_colour",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", weights.shape[1]])],
        initializer=[tensor])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path

