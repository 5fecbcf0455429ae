"""The backend registry: one entry per backend, iterated by selection, devices, the bundle layout and info."""

from __future__ import annotations

import ast
import importlib.util
import inspect
from pathlib import Path

import numpy as np
import pytest
from edgecnn.runtime import EdgecnnError, load
from edgecnn.runtime.core import devices, engine
from edgecnn.runtime.core.backends import registry
from edgecnn.runtime.core.backends.base import Backend, has_module
from edgecnn.runtime.core.backends.triton import parse_location
from edgecnn.runtime.core.bundle import LAYOUT, ModelFile
from edgecnn.runtime.core.selection import choose_model
from edgecnn.runtime.measure.info import machine_info

from tests.runtime.conftest import mean_colour_onnx


def test_names_are_unique_and_every_entry_is_complete() -> None:
    assert len(set(registry.NAMES)) == len(registry.NAMES)
    assert tuple(entry.name for entry in registry.BACKENDS) == registry.NAMES  # each named as its module
    assert set(registry.NAMES) >= {"onnxruntime", "openvino", "triton"}
    for entry in registry.BACKENDS:
        assert callable(entry.open) and callable(entry.devices)
        assert bool(entry.url_scheme) != bool(entry.files)  # a served model or model files, never both


def test_layout_is_what_bundles_have_always_held_in_the_ranking_order() -> None:
    before = (
        ModelFile("openvino", "int8", "openvino/model.int8.xml"),
        ModelFile("openvino", "fp32", "openvino/model.xml"),
        ModelFile("onnxruntime", "int8", "model.int8.onnx"),
        ModelFile("onnxruntime", "fp32", "model.onnx"),
    )
    assert before == LAYOUT


@pytest.mark.parametrize(("suffix", "backends"), [
    (".onnx", ["onnxruntime", "openvino"]),  # ORT's own format first; OpenVINO reads ONNX when asked
    (".ONNX", ["onnxruntime", "openvino"]),
    (".xml", ["openvino"]),
    (".pt", []),
])
def test_a_file_goes_to_its_native_backend_first(suffix: str, backends: list[str]) -> None:
    assert [entry.name for entry in registry.for_file(suffix)] == backends


@pytest.mark.parametrize(("location", "remote"), [
    ("triton://127.0.0.1:8000/imagenet", "triton"),
    (str(Path("triton://127.0.0.1:8000/imagenet")), "triton"),  # a Path collapses the "//"
    ("TRITON://host:1/m", "triton"),
    ("bundles/triton", None),
    ("triton.onnx", None),
])
def test_served_models_are_told_by_their_scheme(location: str, remote: str | None) -> None:
    found = registry.for_location(location)
    assert (found.name if found else None) == remote


def test_auto_places_as_before() -> None:
    """OpenVINO first on the CPU among local backends; an asked backend gets its own target."""
    assert (devices.place().backend, devices.place().device) == ("openvino", "cpu")
    assert devices.place("cpu", "onnxruntime").target == ("CPUExecutionProvider",)
    assert devices.place("cpu", "openvino").target == ("CPU",)
    assert devices.place("auto", "auto", ("onnxruntime", "openvino")).backend == "onnxruntime"
    assert "triton" not in devices.available()  # it runs on its server, not on a device here


def test_single_files_pick_their_native_backend(tmp_path: Path) -> None:
    model = mean_colour_onnx(tmp_path / "colour.onnx", np.eye(3))
    assert choose_model(model, "auto", "auto", "auto").placement.backend == "onnxruntime"
    assert choose_model(model, "cpu", "auto", "openvino").placement.backend == "openvino"


XML_ERROR = "m.xml is an OpenVINO IR; use --backend openvino (or auto)"
NOT_A_MODEL = "m.bin is not a model file; give a bundle folder, an OpenVINO .xml, a .onnx or triton://HOST:PORT/MODEL"
UNKNOWN = "unknown backend 'tensorflow'; choose one of auto, openvino, onnxruntime, triton"
SERVED = "triton://127.0.0.1:1/m"


@pytest.mark.parametrize(("make", "backend", "device", "words"), [
    (lambda d: d / "m.xml", "onnxruntime", "auto", XML_ERROR),
    (lambda d: d / "m.onnx", "triton", "auto", "is an ONNX model; use --backend onnxruntime or openvino"),
    (lambda d: d / "m.bin", "auto", "auto", NOT_A_MODEL),
    (lambda d: d / "m.onnx", "tensorflow", "auto", UNKNOWN),
    (lambda d: SERVED, "onnxruntime", "auto", "runs on its server; use --backend triton"),
    (lambda d: SERVED, "auto", "cpu", "--device cpu: a triton://HOST:PORT/MODEL model runs"),
])
def test_wrong_requests_are_one_line_errors_listing_the_registry(tmp_path: Path, make, backend: str,
                                                                 device: str, words: str) -> None:
    target = make(tmp_path)
    if isinstance(target, Path):
        target.write_bytes(b"not a model")
    with pytest.raises(EdgecnnError) as caught:
        choose_model(Path(target), device, "auto", backend)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_a_bundle_is_not_run_on_the_triton_backend(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"x")
    with pytest.raises(EdgecnnError, match="backend triton runs models named triton://HOST:PORT/MODEL"):
        choose_model(tmp_path, "auto", "auto", "triton")


def test_triton_locations_never_echo_more_than_host_port_model() -> None:
    assert parse_location("triton://127.0.0.1:8000/imagenet") == ("127.0.0.1", 8000, "imagenet")
    assert parse_location("triton:/[::1]:8000/m.v2/") == ("[::1]", 8000, "m.v2")
    for bad in ("triton://user:s3cret@host:8000/m", "triton://host/m", "triton://host:99999/m",
                "triton://host:8000/m?token=s3cret"):
        with pytest.raises(EdgecnnError) as caught:
            parse_location(bad)
        assert "s3cret" not in str(caught.value) and "triton://HOST:PORT/MODEL" in str(caught.value)


def test_triton_without_its_client_or_server_is_one_line() -> None:
    """Without tritonclient: how to install it. With it (the serve venv), a closed port: server down."""
    with pytest.raises(EdgecnnError) as caught:
        load("triton://127.0.0.1:9/imagenet")
    if has_module("tritonclient"):
        assert "cannot reach the Triton server 127.0.0.1:9" in str(caught.value)
    else:
        assert str(caught.value) == ("triton:// needs the Triton client: pip install '.[serve]' (in the "
                                     "edgecnn clone)")


def test_engine_reaches_the_backend_only_through_the_protocol() -> None:
    """engine.py uses what `Backend` declares; no getattr probing for optional features."""
    tree = ast.parse(inspect.getsource(engine))
    probes = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
              and getattr(node.func, "id", "") in ("getattr", "hasattr")]
    assert probes == []
    declared = set(Backend.__annotations__) | {n for n, v in vars(Backend).items() if callable(v)}
    used = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute) and node.value.attr == "_backend"}
    assert used <= declared, used - declared


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_local_backends_implement_the_whole_protocol(tmp_path: Path, backend: str) -> None:
    labels = tmp_path / "colours.txt"
    labels.write_text("red\ngreen\nblue\n")
    model = mean_colour_onnx(tmp_path / "colour.onnx", np.eye(3))
    with load(model, backend=backend, labels=labels, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)) as loaded:
        runner = loaded._backend
        for name in Backend.__annotations__:
            assert getattr(runner, name) is not None, name
        assert runner.name == backend and runner.streams >= 1
        assert runner.compile_seconds <= runner.load_seconds
        batch = np.zeros((1, 32, 32, 3), np.uint8)
        assert runner.submit_all(loaded._feed(batch)).result()[0].shape == (1, 3)


def test_info_lists_installed_backends_from_the_registry() -> None:
    found = machine_info()["backends"]
    assert set(found) == {e.name for e in registry.BACKENDS if has_module(e.module)}
    assert "providers_usable" in found["onnxruntime"] and "devices" in found["openvino"]


def test_the_cli_lists_the_backends_without_importing_them() -> None:
    """`edgecnn --help` names every backend but imports none (they bring numpy: +200 ms at every start)."""
    import subprocess
    import sys

    code = ("import sys\nimport edgecnn.cli.common\nprefix = 'edgecnn.runtime.core.backends.'\n"
            "print(sorted(m[len(prefix):] for m in sys.modules if m.startswith(prefix)),\n"
            "      'numpy' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          check=True)
    assert done.stdout.strip() == "['base', 'registry'] False"


@pytest.mark.skipif(importlib.util.find_spec("tritonclient") is not None, reason="the Triton client is here")
def test_triton_without_its_client_says_what_to_install(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "edgecnn", "predict", "triton://127.0.0.1:9/m",
                           str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == ("error: triton:// needs the Triton client: pip install '.[serve]' (in the "
                                   "edgecnn clone)")


def test_a_checkpoint_given_to_the_runtime_says_to_export_it(tmp_path: Path) -> None:
    from edgecnn.runtime.core.selection import choose_model

    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"PK")
    with pytest.raises(EdgecnnError, match=r"PyTorch checkpoint.*edgecnn export .*best.pt --out bundles"):
        choose_model(checkpoint, "auto", "auto", "auto")


def test_the_control_flow_scan_finds_an_op_across_its_windows(tmp_path: Path, monkeypatch) -> None:
    """The ONNX file is searched a window at a time (the GIL is free between windows during a hot swap);
    an op type that straddles two windows is still found."""
    from edgecnn.runtime.core.backends import onnxruntime as ort_backend

    needle = b"\x22\x04Loop"
    monkeypatch.setattr(ort_backend, "SCAN_WINDOW", 64)
    for at in (0, 60, 61, 64, 200 - len(needle)):
        path = tmp_path / f"m{at}.onnx"
        data = bytearray(200)
        data[at:at + len(needle)] = needle
        path.write_bytes(bytes(data))
        assert ort_backend._control_flow_ops(path) == ["Loop"], at
    path.write_bytes(bytes(200))
    assert ort_backend._control_flow_ops(path) == []
