"""`edgecnn info`: the labels the README says it shows, and only providers that can run here (issue 30,
item 7)."""

from __future__ import annotations

import json
from pathlib import Path

import onnxruntime as ort
import pytest
from edgecnn.runtime.core.backends.onnxruntime import PROBE_MODEL, ort_providers
from typer.testing import CliRunner

from edgecnn.cli import app
from edgecnn.cli.render import SHOWN_LABELS, info_table
from tests.reliability.conftest import LABELS, colour_onnx

runner = CliRunner()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("info") / "bundle"
    folder.mkdir()
    colour_onnx(folder / "model.onnx")
    return folder


def test_info_shows_the_labels(bundle: Path) -> None:
    result = runner.invoke(app, ["info", str(bundle)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "labels" in line)
    assert ", ".join(LABELS) in row, result.output


def test_a_thousand_labels_show_the_first_and_a_count() -> None:
    from rich.console import Console

    labels = [f"class{i}" for i in range(1000)]
    data = {"machine": {"backends": {}}, "model": {"models": {
        name: {"size_mb": 1.0, "metadata": {"arch": "a", "precision": p, "labels": labels,
                                            "preprocess": {"input_size": [224, 224]}}}
        for name, p in (("model.onnx", "fp32"), ("model.int8.onnx", "int8"))}}}
    console = Console(width=100, record=True)
    console.print(info_table(data))
    text = " ".join(console.export_text().replace("│", " ").split())
    assert text.count("labels") == 1  # the bundle's models share one list: shown once
    assert f"class{SHOWN_LABELS - 1}, ... {1000 - SHOWN_LABELS} more (--json lists all)" in text, text
    assert f"class{SHOWN_LABELS}," not in text


def test_info_lists_only_providers_that_run_here(bundle: Path) -> None:
    """Each provider said usable really runs the model alone (CPU fall-back off); the others carry why."""
    result = runner.invoke(app, ["info", str(bundle), "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)["machine"]["backends"]["onnxruntime"]
    for provider in found["providers_usable"]:
        if provider != "CPUExecutionProvider":
            options = ort.SessionOptions()
            options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
            ort.InferenceSession(str(bundle / "model.onnx"), options, providers=[provider])
    if "AzureExecutionProvider" in ort.get_available_providers():  # the CPU wheel lists it
        assert "AzureExecutionProvider" not in found["providers_usable"]
        assert "runs none of a model's nodes here" in found["providers_unusable"]["AzureExecutionProvider"]
    shown = runner.invoke(app, ["info"], env={"COLUMNS": "200"}).output
    usable_line = next(line for line in shown.splitlines() if "onnxruntime" in line)
    assert "Azure" not in usable_line and "CPUExecutionProvider" in usable_line, shown
    assert set(ort_providers()) == set(found["providers_usable"])


def test_the_probe_model_is_what_onnx_writes() -> None:
    helper = pytest.importorskip("onnx.helper", reason="onnx comes with the [train] extra")
    from onnx import TensorProto

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=7)
    assert model.SerializeToString() == PROBE_MODEL
