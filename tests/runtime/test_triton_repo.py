"""`edgecnn triton`: a standard Triton model repository, checked with Triton's own schema and binary."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.metadata import ModelMeta
from edgecnn.runtime.serving.triton_repo import TritonRepoConfig, write_triton_repo
from typer.testing import CliRunner

from edgecnn.cli import app


@pytest.fixture(scope="module")
def repo(imagenet_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("triton") / "repo"
    write_triton_repo(TritonRepoConfig(imagenet_bundle, out, name="lite0", kind="gpu", max_batch=32))
    return out


def parse_config(path: Path) -> object:
    """config.pbtxt parsed with Triton's ModelConfig protobuf (shipped in tritonclient[grpc])."""
    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    from google.protobuf import text_format

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_repository_layout(repo: Path, imagenet_bundle: Path) -> None:
    labels = ModelMeta.read(imagenet_bundle / "model.onnx").labels
    assert (repo / "lite0" / "1" / "model.onnx").read_bytes() == (imagenet_bundle / "model.onnx").read_bytes()
    for name in ("model.xml", "model.bin"):
        bundled = (imagenet_bundle / "openvino" / name).read_bytes()
        assert (repo / "lite0_openvino" / "1" / name).read_bytes() == bundled
    for model in ("lite0", "lite0_openvino"):
        assert tuple((repo / model / "labels.txt").read_text().splitlines()) == labels
    assert not [p for p in repo.iterdir() if p.name.startswith(".")]  # no temporary folders left


@pytest.mark.parametrize(("model", "backend", "kind"), [
    ("lite0", "onnxruntime", "KIND_GPU"), ("lite0_openvino", "openvino", "KIND_CPU")])
def test_config_follows_the_bundle_contract(repo: Path, model: str, backend: str, kind: str) -> None:
    config = parse_config(repo / model / "config.pbtxt")
    from tritonclient.grpc import model_config_pb2 as pb

    assert (config.name, config.backend, config.max_batch_size) == (model, backend, 32)
    (images,), (probabilities, unknown) = config.input, config.output
    assert (images.name, images.data_type, list(images.dims)) == ("images", pb.TYPE_UINT8, [224, 224, 3])
    assert (probabilities.name, probabilities.data_type, list(probabilities.dims)) == (
        "probabilities", pb.TYPE_FP32, [1000])
    assert probabilities.label_filename == "labels.txt"
    # the ImageNet bundle's unknown score: the graph's [batch] output, one float per image
    assert (unknown.name, unknown.data_type, list(unknown.dims), list(unknown.reshape.shape)) == (
        "unknown_score", pb.TYPE_FP32, [1], [])
    assert config.HasField("dynamic_batching")
    expected_kind = pb.ModelInstanceGroup.Kind.Value(kind)
    assert [(group.kind, group.count) for group in config.instance_group] == [(expected_kind, 1)]


def test_tritonserver_reads_the_configs(repo: Path, tmp_path: Path) -> None:
    """PyTriton's tritonserver has no ONNX Runtime/OpenVINO backends, so it gets exactly as far as
    looking for them: the configs parsed. A broken config stops it one step earlier."""
    binary, env = tritonserver()
    log = run_tritonserver(binary, env, repo)
    assert "unable to find backend library for backend 'onnxruntime'" in log
    assert "unable to find backend library for backend 'openvino'" in log
    assert "failed to read text proto" not in log
    broken = tmp_path / "broken"
    shutil.copytree(repo, broken)
    config = broken / "lite0" / "config.pbtxt"
    config.write_text(config.read_text().replace("TYPE_UINT8", "TYPE_UINT9"))
    assert "failed to read text proto" in run_tritonserver(binary, env, broken)


def tritonserver() -> tuple[Path, dict[str, str]]:
    pytest.importorskip("pytriton")
    from pytriton.utils.distribution import get_libs_path, get_root_module_path

    binary = get_root_module_path() / "tritonserver" / "bin" / "tritonserver"
    env = {**os.environ, "LD_LIBRARY_PATH": str(get_libs_path())}
    return binary, env


def run_tritonserver(binary: Path, env: dict[str, str], repo: Path) -> str:
    backends = binary.parent.parent / "backends"
    command = [str(binary), f"--model-repository={repo}", f"--backend-directory={backends}",
               "--allow-http=false", "--allow-grpc=false", "--allow-metrics=false", "--exit-on-error=true"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode != 0  # it cannot load the models here, and says why
    return done.stdout + done.stderr


def test_rewriting_replaces_the_model_folder_only_with_force(imagenet_bundle: Path, tmp_path: Path) -> None:
    write_triton_repo(TritonRepoConfig(imagenet_bundle, tmp_path, name="m", max_batch=4))
    with pytest.raises(EdgecnnError, match="already exists"):
        write_triton_repo(TritonRepoConfig(imagenet_bundle, tmp_path, name="m", max_batch=8))
    assert "max_batch_size: 4\n" in (tmp_path / "m" / "config.pbtxt").read_text()
    write_triton_repo(TritonRepoConfig(imagenet_bundle, tmp_path, name="m", max_batch=8, force=True))
    assert "max_batch_size: 8\n" in (tmp_path / "m" / "config.pbtxt").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "m_openvino"]


def test_cli_writes_a_repository(imagenet_bundle: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["triton", str(imagenet_bundle), str(tmp_path / "repo"), "--name", "cli",
                                      "--precision", "int8", "--instances", "2"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "repo" / "cli" / "1" / "model.onnx").read_bytes() == (
        imagenet_bundle / "model.int8.onnx").read_bytes()
    assert "count: 2 kind: KIND_CPU" in (tmp_path / "repo" / "cli" / "config.pbtxt").read_text()


@pytest.mark.parametrize(("args", "message"), [
    (["--kind", "tpu"], "unknown --kind"),
    (["--precision", "fp8"], "unknown --precision"),
    (["--max-batch", "0"], "--max-batch 0 is out of range; give 1 to 4096"),
    (["--name", "bad name!"], "not valid for Triton"),
])
def test_cli_bad_options_exit_2_in_one_line(imagenet_bundle: Path, tmp_path: Path, args: list[str],
                                            message: str) -> None:
    result = CliRunner().invoke(app, ["triton", str(imagenet_bundle), str(tmp_path / "repo"), *args])
    assert result.exit_code == 2 and message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cli_not_a_bundle(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["triton", str(tmp_path), str(tmp_path / "repo")])
    assert result.exit_code == 2 and "holds no model.onnx" in result.output


HOST = "127.0.0.1"
STAND_IN = '''
import onnxruntime
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Runs 1/model.onnx with ONNX Runtime: the onnxruntime backend's job, in the Python backend."""

    def initialize(self, args):
        path = f"{args['model_repository']}/{args['model_version']}/model.onnx"
        self.session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        responses = []
        for request in requests:
            images = pb_utils.get_input_tensor_by_name(request, "images").as_numpy()
            probabilities, unknown = self.session.run(["probabilities", "unknown_score"], {"images": images})
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("probabilities", probabilities),
                                                         pb_utils.Tensor("unknown_score", unknown)]))
        return responses
'''


def test_triton_serves_the_config_with_label_names(repo: Path, imagenet_bundle: Path, tmp_path: Path,
                                                   chelsea: np.ndarray) -> None:
    """Our config.pbtxt, loaded for real by Triton with its Python backend standing in for the
    onnxruntime one (the only backend PyTriton ships): the classification extension answers
    `class_count` with the label names from labels.txt, in the engine's order."""
    httpclient = pytest.importorskip("tritonclient.http")
    if int(np.__version__.split(".")[0]) >= 2:
        pytest.skip(f"the Python backend stub of nvidia-pytriton 0.7 needs numpy<2 (here: {np.__version__})")
    from edgecnn.runtime import load
    from edgecnn.runtime.core.preprocess import fit_frame

    models = tmp_path / "models"
    shutil.copytree(repo / "lite0", models / "lite0")
    config = models / "lite0" / "config.pbtxt"
    config.write_text(config.read_text().replace('"onnxruntime"', '"python"').replace("KIND_GPU", "KIND_CPU"))
    (models / "lite0" / "1" / "model.py").write_text(STAND_IN)
    binary, env = tritonserver()
    http = free_port()
    command = [str(binary), f"--model-repository={models}", f"--backend-directory={python_backend(tmp_path)}",
               f"--http-address={HOST}", f"--http-port={http}", "--allow-grpc=false", "--allow-metrics=false",
               "--exit-timeout-secs=5"]
    with (tmp_path / "tritonserver.log").open("wb") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=stub_env(env))
    try:
        client = httpclient.InferenceServerClient(f"{HOST}:{http}")
        wait_ready(client, server, "lite0", tmp_path / "tritonserver.log")
        with load(imagenet_bundle, precision="fp32", backend="onnxruntime") as engine:
            image = fit_frame(chelsea, engine.preprocess)[None]
            expected = [p.label for p in engine.classify(chelsea, top_k=3)[0]]
        request = httpclient.InferInput("images", list(image.shape), "UINT8")
        request.set_data_from_numpy(image)
        wanted = httpclient.InferRequestedOutput("probabilities", class_count=3)
        result = client.infer("lite0", [request], outputs=[wanted, httpclient.InferRequestedOutput(
            "unknown_score")])  # the labels in the engine's order; one unknown score per image
        # clients see the config's dims (batch, 1); `reshape` is the model's own (batch,) shape
        assert [e.decode().split(":", 2)[2] for e in result.as_numpy("probabilities")[0]] == expected and \
            result.as_numpy("unknown_score").shape == (1, 1)
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def python_backend(tmp_path: Path) -> Path:
    """PyTriton's Python backend with the stub for this Python (PyTriton copies it in at run time)."""
    import sys

    from pytriton.utils.distribution import get_root_module_path, get_stub_path

    backends = tmp_path / "backends"
    shutil.copytree(get_root_module_path() / "tritonserver" / "backends", backends)
    shutil.copy(get_stub_path(f"{sys.version_info[0]}.{sys.version_info[1]}"),
                backends / "python" / "triton_python_backend_stub")
    return backends


def stub_env(env: dict[str, str]) -> dict[str, str]:
    """The stub embeds the `python3` first on PATH (this one, with its packages) and its libpython."""
    import sys
    import sysconfig

    libraries = [sysconfig.get_config_var("LIBDIR") or "", env["LD_LIBRARY_PATH"]]
    return {**env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
            "LD_LIBRARY_PATH": os.pathsep.join(p for p in libraries if p)}


def wait_ready(client: object, server: subprocess.Popen, model: str, log: Path) -> None:
    import time

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if client.is_model_ready(model):
                return
        except Exception:  # noqa: BLE001 - not listening yet
            pass
        time.sleep(0.5)
    pytest.fail(f"tritonserver did not load {model}:\n{log.read_text(errors='replace')[-3000:]}")
