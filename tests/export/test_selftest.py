"""The bundle's self-test: stored at export, run by `info --check` and `camera`, refusing altered weights."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

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


def _set_digest(model: Path, digest: str) -> None:
    """Rewrite the SHA-256 an ONNX file names for its self-test data (what an old bundle, or an attacker
    who also changes selftest.json, would have)."""
    import onnx
    from edgecnn.runtime.core.backends.base import META_KEY
    from edgecnn.runtime.core.metadata import ModelMeta

    proto = onnx.load(str(model))
    text = next(p.value for p in proto.metadata_props if p.key == META_KEY)
    replace(ModelMeta.from_json(text), selftest_sha256=digest).write_onnx(proto)
    onnx.save(proto, str(model))


def _fp32_check(bundle: Path) -> Any:
    return CliRunner().invoke(app, ["info", "--check", str(bundle / "model.onnx")])


def _one_error(result: Any) -> str:
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    lines = [x for x in result.output.splitlines() if x.startswith("error:")]
    assert len(lines) == 1, result.output
    return lines[0]


def test_export_stores_small_references_with_tolerances(bundle: Path) -> None:
    from edgecnn.runtime.core.metadata import ModelMeta
    from edgecnn.runtime.core.selftest import selftest_digest

    data = json.loads((bundle / "selftest.json").read_text())
    assert (bundle / "selftest.json").stat().st_size < 6_000  # "a few KB": 5.2 KB here (18 KB before)
    assert data["shape"][0] == 4 and data["tolerances"]["model.onnx"] <= 1e-4
    assert all(value < 0.05 for value in data["tolerances"].values())
    models = [*bundle.rglob("*.onnx"), *bundle.rglob("*.xml")]
    digests = {ModelMeta.read(m).selftest_sha256 for m in models}
    assert len(models) == 4 and digests == {selftest_digest(bundle)}


def test_altered_selftest_data_alone_is_refused(bundle: Path) -> None:
    data = json.loads((bundle / "selftest.json").read_text())
    data["tolerances"]["model.onnx"] = 1.0  # a wider tolerance would let altered weights through
    (bundle / "selftest.json").write_text(json.dumps(data))
    assert "SHA-256 differs" in _one_error(_fp32_check(bundle))


def test_altered_model_and_selftest_data_are_refused(bundle: Path) -> None:
    """Weights altered and selftest.json rewritten with the outputs they now give: the digest the model
    file carries no longer names the data. (Rewriting that digest too is out of reach: it is no signature.)"""
    from edgecnn.runtime.core.engine import load
    from edgecnn.runtime.core.selftest import read_selftest

    _alter_weights(bundle / "model.onnx")
    test = read_selftest(bundle)
    with load(bundle / "model.onnx", backend="onnxruntime") as engine:
        from edgecnn.runtime.core.preprocess import fit_batch

        now = engine.infer_scored(fit_batch(list(test.frames), engine.preprocess)).probabilities
    data = json.loads((bundle / "selftest.json").read_text())
    data["probabilities"] = np.take_along_axis(now, test.classes, axis=1).tolist()
    data["unknown_scores"] = None
    (bundle / "selftest.json").write_text(json.dumps(data))
    assert "SHA-256 differs" in _one_error(_fp32_check(bundle))


def test_missing_selftest_data_of_a_new_bundle_is_refused(bundle: Path) -> None:
    (bundle / "selftest.json").unlink()
    assert "selftest.json is missing" in _one_error(_fp32_check(bundle))


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
    _set_digest(bundle / "model.onnx", "")  # exported before the digest
    uncovered = _fp32_check(bundle)
    assert uncovered.exit_code == 0 and "does not carry its self-test data's SHA-256" in uncovered.output
    assert "self-test passed" in uncovered.output
    (bundle / "selftest.json").unlink()  # exported before the self-test
    result = _fp32_check(bundle)
    assert result.exit_code == 0 and "no self-test data" in result.output


def test_the_selftest_runs_at_the_batch_size_the_engine_already_compiled(bundle: Path) -> None:
    """Four reference frames at once were a second OpenVINO compile (0.1-0.7 s of both cores mid-swap) and
    a second compiled model kept for the engine's life; frame by frame they give the same outputs."""
    from edgecnn.runtime import load
    from edgecnn.runtime.core.preprocess import fit_batch
    from edgecnn.runtime.core.selftest import read_selftest, reference_outputs, run_selftest

    test = read_selftest(bundle)
    with load(bundle / "openvino" / "model.int8.xml", device="cpu") as engine:
        assert all(drift.passed for drift in run_selftest(engine))
        assert len(engine._backend._compiled) == 1  # only the batch size it was opened with
        at_once = engine.infer_scored(fit_batch(list(test.frames), engine.preprocess))
        np.testing.assert_array_equal(reference_outputs(engine, test.frames).probabilities,
                                      at_once.probabilities)
