"""Model outputs treated like input (issue 25 item 4): real ONNX graphs whose first output is not a
probability vector, that loop 2^62 times, allocate 400 GB or disagree with their metadata, run through
`predict` on both backends; one `error:` line each, never NaN in --json, never a hang."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from edgecnn.runtime.core.metadata import ModelMeta, Preprocess

from tests.reliability.conftest import LABELS, assert_user_error, python_cli, run_cli


def _model(path: Path, tail: Callable[[], tuple[list, list, str]], input_side: int = 32,
           output_type: int | None = None) -> Path:
    """The colour classifier's mean colour -> logits, then `tail()`: (nodes, initializers, last name)
    instead of its Softmax; metadata says 32x32 and softmax in the graph."""
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.full((3, 4), 0.01, np.float32), "weights")
    nodes = [
        helper.make_node("Cast", ["images"], ["pixels"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["pixels"], ["means"], axes=[1, 2], keepdims=0),
        helper.make_node("MatMul", ["means", "weights"], ["logits"]),
    ]
    more_nodes, initializers, last = tail()
    nodes += more_nodes
    nodes.append(helper.make_node("Identity", [last], ["probabilities"]))
    graph = helper.make_graph(
        nodes, "hostile",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, ["N", input_side, input_side, 3])],
        [helper.make_tensor_value_info("probabilities", output_type or TensorProto.FLOAT, ["N", 4])],
        initializer=[weights, *initializers])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    ModelMeta(labels=LABELS, preprocess=Preprocess(input_size=(32, 32)), arch="hostile").write_onnx(model)
    path.write_bytes(model.SerializeToString())
    return path


def _times(value: float, then: str | None = None) -> Callable[[], tuple[list, list, str]]:
    """logits * value (then an op of one input, e.g. Softmax)."""
    def tail() -> tuple[list, list, str]:
        from onnx import helper, numpy_helper

        nodes = [helper.make_node("Mul", ["logits", "factor"], ["scaled"])]
        if then is not None:
            options = {"axis": 1} if then == "Softmax" else {}
            nodes.append(helper.make_node(then, ["scaled"], ["after"], **options))
        factor = numpy_helper.from_array(np.array(value, np.float32), "factor")
        return nodes, [factor], "after" if then else "scaled"
    return tail


def _int64() -> tuple[list, list, str]:
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Mul", ["logits", "factor"], ["scaled"]),
             helper.make_node("Cast", ["scaled"], ["whole"], to=TensorProto.INT64)]
    return nodes, [numpy_helper.from_array(np.array(-1000.0, np.float32), "factor")], "whole"


def _loop() -> tuple[list, list, str]:
    """A Loop of 2^62 trips carrying the logits through unchanged, then Softmax."""
    from onnx import TensorProto, helper, numpy_helper

    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Identity", ["v_in"], ["v_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, None)])
    nodes = [helper.make_node("Loop", ["trips", "go", "logits"], ["looped"], body=body),
             helper.make_node("Softmax", ["looped"], ["soft"], axis=1)]
    return nodes, [numpy_helper.from_array(np.array(2**62, np.int64), "trips"),
                   numpy_helper.from_array(np.array(True), "go")], "soft"


def _huge() -> tuple[list, list, str]:
    """ConstantOfShape [100000, 1000000] floats (400 GB), reduced to nothing and added to the logits."""
    from onnx import helper, numpy_helper

    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["block"]),
             helper.make_node("ReduceMax", ["block"], ["peak"], keepdims=0),
             helper.make_node("Add", ["logits", "peak"], ["shifted"]),
             helper.make_node("Softmax", ["shifted"], ["soft"], axis=1)]
    return nodes, [numpy_helper.from_array(np.array([100000, 1000000], np.int64), "shape")], "soft"


def _softmax() -> tuple[list, list, str]:
    from onnx import helper

    return [helper.make_node("Softmax", ["logits"], ["soft"], axis=1)], [], "soft"


# name: (make the model in a folder, words the one line holds)
MODELS: dict[str, tuple[Callable[[Path], Path], tuple[str, ...]]] = {
    "output NaN": (lambda t: _model(t / "m.onnx", _times(float("nan"), "Softmax")),
                   ("outputs that are not probabilities", "NaN or infinite")),
    "output infinite": (lambda t: _model(t / "m.onnx", _times(float("inf"))), ("NaN or infinite",)),
    "output 1e30": (lambda t: _model(t / "m.onnx", _times(1e30)), ("outside 0 to 1",)),
    "output negative": (lambda t: _model(t / "m.onnx", _times(-1.0)), ("outside 0 to 1",)),
    "output int64": (lambda t: _model(t / "m.onnx", _int64, output_type=7), ("outside 0 to 1",)),
    "outputs summing to 4 (sigmoid)": (lambda t: _model(t / "m.onnx", _times(1.0, "Sigmoid")),
                                       ("a row that sums to 3.99, not to 1",)),
    "a Loop of 2^62 trips": (lambda t: _model(t / "m.onnx", _loop), ("holds a Loop", "control flow")),
    "20000x20000 input against 32x32 metadata": (
        lambda t: _model(t / "m.onnx", _softmax, input_side=20000),
        ("takes 20000x20000 images but its metadata says 32x32",)),
}


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("name", list(MODELS))
def test_model_outputs_are_checked_like_input(name: str, backend: str, tmp_path: Path) -> None:
    make, words = MODELS[name]
    model = make(tmp_path)
    cv2.imwrite(str(tmp_path / "x.png"), np.full((8, 8, 3), 200, np.uint8))
    result = run_cli("predict", model, tmp_path / "x.png", "--backend", backend, "--device", "cpu", "--json")
    assert_user_error(result, *words)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_a_400_gb_allocation_is_one_line(backend: str, tmp_path: Path) -> None:
    """In its own process under a 12 GB address-space limit, so a machine that overcommits memory is safe."""
    import resource

    model = _model(tmp_path / "m.onnx", _huge)
    cv2.imwrite(str(tmp_path / "x.png"), np.full((8, 8, 3), 200, np.uint8))
    limit = 12 * 2**30
    process = python_cli("predict", model, tmp_path / "x.png", "--backend", backend, "--device", "cpu",
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
    out, err = process.communicate(timeout=120)
    assert process.returncode == 2, out + err
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert "Traceback" not in err and lines[-1].startswith("error:") and "out of memory" in lines[-1], err


def test_a_good_model_still_gives_probabilities_in_json(tmp_path: Path) -> None:
    """The control: the same graph with its Softmax passes the checks and prints strict JSON."""
    model = _model(tmp_path / "m.onnx", _softmax)
    cv2.imwrite(str(tmp_path / "x.png"), np.full((8, 8, 3), 200, np.uint8))
    result = run_cli("predict", model, tmp_path / "x.png", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    line = result.stdout.strip().splitlines()[-1]
    record = json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} in --json"))
    assert sum(p["probability"] for p in record["predictions"]) == pytest.approx(1.0, abs=1e-3)


def test_labels_txt_that_differs_from_the_model_is_refused(hand_bundle: Path, tmp_path: Path) -> None:
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(hand_bundle, bundle)
    (bundle / "labels.txt").write_text("red\ngreen\nblue\ncat\n")
    cv2.imwrite(str(tmp_path / "x.png"), np.full((8, 8, 3), 200, np.uint8))
    result = run_cli("predict", bundle, tmp_path / "x.png", "--device", "cpu")
    assert_user_error(result, "labels.txt", "'cat'", "'gray'", "export the bundle again")
