"""`edgecnn serve`: a real Triton server on loopback, spoken to with the standard tritonclient."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from edgecnn.cli import app

HOST = "127.0.0.1"
NAME = "edgecnn_test"
STARTUP_S = 180.0


def free_ports(count: int) -> list[int]:
    """Ports the kernel just handed out on loopback (held together so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def needs_server() -> None:
    pytest.importorskip("pytriton", reason="serving needs the [serve] extra")
    pytest.importorskip("tritonclient.http")
    pytest.importorskip("tritonclient.grpc")
    if int(np.__version__.split(".")[0]) >= 2:
        pytest.skip(f"nvidia-pytriton 0.7's Python backend needs numpy<2 (here: {np.__version__})")


class Server:
    """`edgecnn serve` in a subprocess; stopped with SIGTERM (then killed) whatever happens."""

    def __init__(self, bundle: Path, log: Path) -> None:
        self.http, self.grpc, self.metrics = free_ports(3)
        self.log = log
        command = [sys.executable, "-m", "edgecnn", "serve", str(bundle), "--host", HOST, "--name", NAME,
                   "--http-port", str(self.http), "--grpc-port", str(self.grpc),
                   "--metrics-port", str(self.metrics), "--max-batch", "8"]
        with log.open("wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def wait_ready(self) -> None:
        import tritonclient.http as httpclient

        client = httpclient.InferenceServerClient(f"{HOST}:{self.http}")
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"edgecnn serve exited with {self.process.returncode}:\n{self.tail()}")
            try:
                if client.is_model_ready(NAME):
                    return
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            time.sleep(0.5)
        pytest.fail(f"edgecnn serve was not ready within {STARTUP_S:.0f} s:\n{self.tail()}")

    def stop(self, timeout: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:  # its own session: tritonserver and stub go too
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
                raise
        return self.process.returncode

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])


@contextmanager
def served(bundle: Path, log: Path) -> Iterator[Server]:
    """`edgecnn serve BUNDLE` ready for requests (skipped where serving cannot run), stopped at the end."""
    needs_server()
    running = Server(bundle, log)
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def server(imagenet_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with served(imagenet_bundle, tmp_path_factory.mktemp("serve") / "server.log") as running:
        yield running


@pytest.fixture(scope="module")
def photos_and_expected(imagenet_bundle: Path, sample_photos: Path) -> tuple[np.ndarray, list[str], Any]:
    """Fitted sample photos with the in-process engine's top-1 labels and probabilities for them."""
    from edgecnn.runtime import load
    from edgecnn.runtime.core.images import iter_image_files, read_image
    from edgecnn.runtime.core.preprocess import fit_frame

    files = list(iter_image_files(sample_photos))[::12][:8]
    with load(imagenet_bundle) as engine:
        batch = np.stack([fit_frame(read_image(path), engine.preprocess) for path in files])
        probabilities = engine.infer(batch)
        labels = [engine.labels[i] for i in probabilities.argmax(axis=1)]
    return batch, labels, probabilities


def infer(protocol: str, port: int, batch: np.ndarray, dtype: str = "UINT8", name: str = "images") -> object:
    module = __import__(f"tritonclient.{protocol}", fromlist=["InferInput"])
    client = module.InferenceServerClient(f"{HOST}:{port}")
    request = module.InferInput(name, list(batch.shape), dtype)
    request.set_data_from_numpy(batch)
    return client.infer(NAME, [request])


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_labels_match_the_engine(server: Server, photos_and_expected: tuple, protocol: str) -> None:
    batch, labels, probabilities = photos_and_expected
    port = server.http if protocol == "http" else server.grpc
    result = infer(protocol, port, batch)
    assert [label.decode() for label in result.as_numpy("label")[:, 0]] == labels
    np.testing.assert_allclose(result.as_numpy("probabilities"), probabilities, atol=2e-3)
    scores, unknown = result.as_numpy("unknown_score"), result.as_numpy("unknown")  # the bundle's detector
    assert scores.shape == unknown.shape == (len(batch), 1) and unknown.dtype == np.bool_


def test_single_image_requests_and_metrics(server: Server, photos_and_expected: tuple) -> None:
    """One image per request, several at once (the dynamic batcher's case); Triton counts them."""
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    batch, labels, _ = photos_and_expected
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda image: infer("http", server.http, image[None]), batch))
    assert [result.as_numpy("label")[0, 0].decode() for result in results] == labels
    metrics = urllib.request.urlopen(f"http://{HOST}:{server.metrics}/metrics", timeout=10).read().decode()
    prefix = f'nv_inference_request_success{{model="{NAME}"'
    success = [line for line in metrics.splitlines() if line.startswith(prefix)]
    assert success and float(success[0].split()[-1]) >= len(batch)


@pytest.mark.parametrize(("shape", "dtype", "name"), [
    ((1, 100, 100, 3), "UINT8", "images"),  # wrong size
    ((1, 224, 224), "UINT8", "images"),  # no channel axis
    ((1, 224, 224, 3), "FP32", "images"),  # float pixels
    ((1, 224, 224, 3), "UINT8", "pixels"),  # unknown input
])
def test_malformed_request_gets_an_error_and_the_server_keeps_serving(
        server: Server, photos_and_expected: tuple, shape: tuple, dtype: str, name: str) -> None:
    from tritonclient.utils import InferenceServerException

    bad = np.zeros(shape, dtype=np.float32 if dtype == "FP32" else np.uint8)
    with pytest.raises(InferenceServerException):
        infer("http", server.http, bad, dtype, name)
    batch, labels, _ = photos_and_expected
    assert infer("grpc", server.grpc, batch[:1]).as_numpy("label")[0, 0].decode() == labels[0]


def test_sigterm_stops_cleanly(imagenet_bundle: Path, tmp_path: Path) -> None:
    needs_server()
    running = Server(imagenet_bundle, tmp_path / "server.log")
    try:
        running.wait_ready()
    finally:
        started = time.monotonic()
        code = running.stop(timeout=45)
    assert code == 0, running.tail()
    assert time.monotonic() - started < 45
    with socket.socket() as sock:  # nothing left listening on the port
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, running.http))


def test_bad_options_exit_2_in_one_line(imagenet_bundle: Path) -> None:
    for args in (["--max-batch", "0"], ["--instances", "0"], ["--http-port", "8001"]):
        result = CliRunner().invoke(app, ["serve", str(imagenet_bundle), *args])
        assert result.exit_code == 2, result.output
        assert len(result.output.strip().splitlines()) == 1
        assert "must be" in result.output or "is out of range; give 1 to" in result.output  # the option check


def test_missing_pytriton_says_how_to_install(imagenet_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("pytriton", "pytriton.decorators", "pytriton.model_config", "pytriton.triton"):
        monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    result = CliRunner().invoke(app, ["serve", str(imagenet_bundle)])
    assert result.exit_code == 2
    assert "pip install '.[serve]'" in result.output and len(result.output.strip().splitlines()) == 1


def test_serve_module_is_torch_free() -> None:
    code = ("import sys, edgecnn.runtime.serving.serve, edgecnn.runtime.serving.triton_repo; "
            "print('torch' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert found.stdout.strip() == "False"
