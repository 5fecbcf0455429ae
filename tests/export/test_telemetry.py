"""OpenVINO's and NNCF's usage telemetry stays off in edgecnn's export, and the user's home is untouched."""

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import onnx
from onnx import TensorProto, helper
from edgecnn.export.openvino import _nncf
from edgecnn.runtime.core.backends.openvino import import_openvino

graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), "tiny.onnx")
ov = import_openvino()
_nncf()  # nncf makes its telemetry object on import
ov.convert_model("tiny.onnx")  # and the converter re-initialises it
import openvino_telemetry
print("consent", openvino_telemetry.Telemetry().consent)
"""


def test_telemetry_declined_without_writing_home(tmp_path: Path) -> None:
    # Outside pytest and CI, as a user runs it: both libraries would send (and write ~/intel) by default.
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "NNCF_CI", "TF_BUILD", "JENKINS_URL")}
    home = tmp_path / "home"
    home.mkdir()
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, env={**env, "HOME": str(home)},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "consent False" in result.stdout, result.stdout + result.stderr
    assert not any(home.iterdir()), sorted(p.name for p in home.iterdir())  # no ~/intel consent folder
