"""The bundle's self-test: stored at export, run by `info --check` and `camera`, refusing altered weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgecnn.cli import app

CUP = Path(__file__).parents[2] / "samples" / "videos" / "cup.mp4"


@pytest.fixture()
def bundle(tiny_bundle: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    return copy


def _alter_weights(model: Path) -> None:
    """Scale the largest initializer of an ONNX file, keeping it a valid model (as an attacker or a bad
    copy would); any hash beside it could be rewritten to match, only the outputs tell."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(model))
    biggest = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    values = numpy_helper.to_array(biggest)
    biggest.CopyFrom(numpy_helper.from_array((values * 1.5 + 0.05).astype(values.dtype), biggest.name))
    onnx.save(proto, str(model))


def test_export_stores_small_references_with_tolerances(bundle: Path) -> None:
    data = json.loads((bundle / "selftest.json").read_text())
    assert (bundle / "selftest.json").stat().st_size < 20_000
    assert data["shape"][0] == 4 and data["tolerances"]["model.onnx"] <= 1e-4
    assert all(value < 0.05 for value in data["tolerances"].values())


def test_info_check_passes_then_refuses_altered_weights(bundle: Path) -> None:
    ok = CliRunner().invoke(app, ["info", "--check", str(bundle)])
    assert ok.exit_code == 0, ok.output
    assert "self-test passed" in ok.stdout and ok.stdout.count("max abs diff") == 4
    for model in bundle.rglob("*.onnx"):
        _alter_weights(model)
    for weights in bundle.rglob("*.bin"):  # OpenVINO IR: flip bits in every weight
        data = bytearray(weights.read_bytes())
        for i in range(len(data)):
            data[i] ^= 0x5A
        weights.write_bytes(bytes(data))
    bad = CliRunner().invoke(app, ["info", "--check", str(bundle)])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    line = [x for x in bad.output.splitlines() if x.startswith("error:")]
    # auto may pick OpenVINO, whose flipped .bin also breaks the IR's shape constants: refused at load
    # then, before the self-test; altered ONNX weights that still load are the self-test's (next test).
    assert len(line) == 1 and (("self-test failed" in line[0] and "tolerance" in line[0])
                               or "is not a loadable OpenVINO IR" in line[0]), line


def test_camera_refuses_altered_fp32_onnx(bundle: Path) -> None:
    _alter_weights(bundle / "model.onnx")
    result = CliRunner().invoke(app, ["camera", str(bundle), "--source", str(CUP), "--headless",
                                      "--max-frames", "4", "--backend", "onnxruntime", "--precision", "fp32"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "self-test failed: model.onnx" in result.output


def test_old_bundle_without_references_says_so_and_runs(bundle: Path) -> None:
    (bundle / "selftest.json").unlink()
    result = CliRunner().invoke(app, ["info", "--check", str(bundle)])
    assert result.exit_code == 0 and "no self-test data" in result.output
