"""`edgecnn serve`: a bundle behind a real NVIDIA Triton Inference Server, no containers needed.

NVIDIA PyTriton (`pip install '.[serve]'`) ships the `tritonserver` binary with its Python
backend; we bind our torch-free engine to it, so clients use the standard `tritonclient` over HTTP
or gRPC, Triton's dynamic batcher merges concurrent requests into batches of up to `max_batch`, and
Prometheus metrics come from Triton's own endpoint. The model keeps the bundle's contract:

    input  images         uint8 [N, H, W, 3] RGB, already fitted (fit_frame)
    output probabilities  float32 [N, classes]
    output label          bytes [N, 1]: the top-1 label name
    (unknown detector)    unknown_score float32 [N, 1], unknown bool [N, 1]

The model's configuration carries that contract's ModelMeta JSON as the parameter `edgecnn_meta`
(`served_meta`), so a client such as the triton:// backend (runtime/core/backends/triton.py) reads
labels, input size and the unknown threshold from the server and sends only pixels.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sysconfig
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from edgecnn.runtime.core.backends.base import META_KEY
from edgecnn.runtime.core.bundle import Bundle
from edgecnn.runtime.core.errors import EdgecnnError, install_hint
from edgecnn.runtime.core.metadata import ModelMeta

INSTALL_HINT = f"serving needs NVIDIA PyTriton and tritonclient: {install_hint('serve')}"


@dataclass(frozen=True)
class ServeConfig:
    """What to serve and where; ports on `host` only (loopback by default)."""

    model: Path
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    max_batch: int = 16
    instances: int = 1
    device: str = "auto"
    precision: str = "auto"
    name: str | None = None  # default: the bundle folder's name
    queue_delay_us: int = 2000  # how long the dynamic batcher waits to fill a batch
    exit_timeout_s: int = 5  # SIGTERM: in-flight requests and open connections get this long


@dataclass(frozen=True)
class Endpoints:
    name: str
    http: str
    grpc: str
    metrics: str
    engine: str  # what runs it, in words


def serve(config: ServeConfig, on_ready: Callable[[Endpoints], None] | None = None) -> None:
    """Serve until SIGTERM or Ctrl-C; `on_ready` is called once the model answers."""
    check_config(config)
    pytriton = import_pytriton()
    check_ports_free(config)
    # Installed before anything starts, so a SIGTERM at any moment ends in a clean stop.
    sigterm = _Sigterm()
    previous = signal.signal(signal.SIGTERM, sigterm)
    engines: list[Any] = []
    try:
        engines = _load_engines(config)
        sigterm.unwind = False  # from here on PyTriton holds locks and threads: never interrupt it mid-way
        with _triton_errors(), _publishing(served_meta(engines[0].meta)), \
                pytriton.Triton(config=_triton_config(config, pytriton)) as triton:
            name = _bind(triton, pytriton, engines, config)
            triton.run()
            if on_ready:
                on_ready(_endpoints(config, name, engines[0].describe()))
            _wait_for_sigterm(triton, sigterm)
    except KeyboardInterrupt:
        if not sigterm.received:  # Ctrl-C: the CLI says "interrupted" and exits 130
            raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        for engine in engines:
            engine.close()


def check_config(config: ServeConfig) -> None:
    """Every mistake visible before Triton starts, including a bundle file that leads outside its folder."""
    if config.model.is_dir():
        bundle = Bundle(config.model)
        for model in bundle.models():
            bundle.file(model.rel)  # external data too: a server runs for long, a check now is cheap
    for option, value in (("--max-batch", config.max_batch), ("--instances", config.instances)):
        if value < 1:
            raise EdgecnnError(f"{option} must be at least 1, got {value}")
    ports = (config.http_port, config.grpc_port, config.metrics_port)
    if len(set(ports)) < 3 or not all(0 < port < 65536 for port in ports):
        raise EdgecnnError(f"HTTP, gRPC and metrics ports must be three different numbers in 1-65535, "
                           f"got {ports}")


def check_ports_free(config: ServeConfig) -> None:
    """A taken port is the usual reason Triton fails to start: say which one, before starting it."""
    options = (("--http-port", config.http_port), ("--grpc-port", config.grpc_port),
               ("--metrics-port", config.metrics_port))
    for option, port in options:
        with socket.socket(socket.AF_INET6 if ":" in config.host else socket.AF_INET) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is fine
            try:
                sock.bind((config.host, port))
            except OSError as exc:
                raise EdgecnnError(f"cannot listen on {config.host}:{port} ({exc.strerror}); "
                                   f"pick another {option}") from None


@contextlib.contextmanager
def _triton_errors() -> Iterator[None]:
    """PyTriton's start-up failures as one line; tritonserver's own log above says why."""
    from pytriton.client.exceptions import PyTritonClientError
    from pytriton.exceptions import PyTritonError

    try:
        yield
    except (PyTritonError, PyTritonClientError) as exc:
        raise EdgecnnError(f"Triton did not start or stopped: {exc}; see its log above") from exc


class _PyTriton:
    """The pieces of PyTriton we use, imported together (and only when serving)."""

    def __init__(self) -> None:
        from pytriton.decorators import batch
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
        from pytriton.triton import Triton, TritonConfig

        self.batch, self.Tensor = batch, Tensor
        self.DynamicBatcher, self.ModelConfig = DynamicBatcher, ModelConfig
        self.Triton, self.TritonConfig = Triton, TritonConfig


def import_pytriton() -> _PyTriton:
    """PyTriton, or one line saying how to install it; checks the numpy its Python backend needs."""
    try:
        pytriton = _PyTriton()
    except ImportError as exc:
        raise EdgecnnError(INSTALL_HINT) from exc
    if int(np.__version__.split(".")[0]) >= 2:  # its Triton Python backend stub returns empty tensors
        raise EdgecnnError(f"nvidia-pytriton 0.7 needs numpy<2 (found {np.__version__}): "
                           f"{install_hint('serve')} in its own environment")
    _use_own_libpython()
    return pytriton


def _use_own_libpython() -> None:
    """Make Triton's Python backend stub embed this interpreter's libpython, not a system one.

    The stub links `libpython3.X.so.1.0` by name; with pyenv or conda Pythons the system copy
    (another patch release) would otherwise load against this interpreter's standard library.
    """
    libdir, soname = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    if not libdir or not soname or not (Path(libdir) / soname).is_file():
        return
    paths = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    if libdir not in paths:
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join([libdir, *paths])


def _load_engines(config: ServeConfig) -> list[Any]:
    """One engine per Triton instance, so instances run side by side without sharing a session."""
    from edgecnn.runtime.core.engine import load

    # One instance runs one batch at a time: all cores on it. Several: OpenVINO streams side by side.
    hint = "latency" if config.instances == 1 else "throughput"
    engines: list[Any] = []
    try:
        for _ in range(config.instances):
            engines.append(load(config.model, device=config.device, precision=config.precision, hint=hint))
        from edgecnn.runtime.core.selftest import run_selftest

        run_selftest(engines[0], say=print)  # refuse to serve a model whose outputs drifted
    except BaseException:
        for engine in engines:
            engine.close()
        raise
    return engines


def _triton_config(config: ServeConfig, pytriton: _PyTriton) -> Any:
    return pytriton.TritonConfig(
        http_address=config.host, http_port=config.http_port, grpc_address=config.host,
        grpc_port=config.grpc_port, metrics_address=config.host, metrics_port=config.metrics_port,
        exit_timeout_secs=config.exit_timeout_s, log_verbose=0)


def _bind(triton: Any, pytriton: _PyTriton, engines: list[Any], config: ServeConfig) -> str:
    from edgecnn.runtime.serving.triton_repo import NAME_PATTERN

    name = config.name or config.model.resolve().name.removesuffix(config.model.suffix)
    if not NAME_PATTERN.match(name):
        raise EdgecnnError(f"model name {name!r} is not valid for Triton; pass --name with letters, digits "
                           "and '_-.'")
    height, width = engines[0].input_size
    Tensor = pytriton.Tensor
    triton.bind(
        model_name=name,
        infer_func=[_infer_function(engine, pytriton.batch) for engine in engines],
        inputs=[Tensor(name="images", dtype=np.uint8, shape=(height, width, 3))],
        outputs=[Tensor(name="probabilities", dtype=np.float32, shape=(len(engines[0].labels),)),
                 Tensor(name="label", dtype=bytes, shape=(1,)),
                 *([Tensor(name="unknown_score", dtype=np.float32, shape=(1,)),
                    Tensor(name="unknown", dtype=np.bool_, shape=(1,))]
                   if engines[0].unknown_threshold is not None else [])],
        config=pytriton.ModelConfig(max_batch_size=config.max_batch, batcher=pytriton.DynamicBatcher(
            max_queue_delay_microseconds=config.queue_delay_us)),
        strict=True,
    )
    return name


def _infer_function(engine: Any, batch: Callable[..., Any]) -> Callable[..., dict[str, np.ndarray]]:
    """Triton hands over one dynamic batch as arrays; answer with probabilities and top-1 labels, and
    with an unknown detector the score and verdict (`unknown`: above the model's threshold)."""
    names = np.array([label.encode("utf-8") for label in engine.labels], dtype=object)

    @batch
    def infer(images: np.ndarray) -> dict[str, np.ndarray]:
        scored = engine.infer_scored(images)
        probabilities = scored.probabilities
        answer = {"probabilities": probabilities, "label": names[probabilities.argmax(axis=1)][:, None]}
        if scored.unknown_score is not None:
            answer["unknown_score"] = scored.unknown_score[:, None]
            answer["unknown"] = engine.unknown_verdicts(scored.unknown_score)[:, None]
        return answer

    return infer


def served_meta(meta: ModelMeta) -> ModelMeta:
    """The metadata of what the server answers: fitted uint8 NHWC pixels in, probabilities and
    `unknown_score` out, whatever the bundle model's own input and outputs are."""
    preprocess = replace(meta.preprocess, layout="NHWC", normalize_in_graph=True)
    unknown = None if meta.unknown is None else replace(meta.unknown, output="unknown_score")
    return replace(meta, preprocess=preprocess, softmax_in_graph=True, unknown=unknown)


@contextlib.contextmanager
def _publishing(meta: ModelMeta) -> Iterator[None]:
    """Add `edgecnn_meta` to the parameters of the model configuration PyTriton writes.

    PyTriton 0.7's ModelConfig has no field for configuration parameters (its own model configs carry
    `workspace-path` there), so its config builder is wrapped while the server starts.
    """
    from pytriton.models.model import Model

    build = Model._get_triton_model_config
    text = meta.to_json()

    def with_meta(self: Any) -> Any:
        built = build(self)
        built.backend_parameters.setdefault(META_KEY, text)
        return built

    Model._get_triton_model_config = with_meta
    try:
        yield
    finally:
        Model._get_triton_model_config = build


def _endpoints(config: ServeConfig, name: str, engine: str) -> Endpoints:
    host = f"[{config.host}]" if ":" in config.host else config.host
    return Endpoints(name=name, http=f"http://{host}:{config.http_port}/v2/models/{name}",
                     grpc=f"{host}:{config.grpc_port}", metrics=f"http://{host}:{config.metrics_port}/metrics",
                     engine=engine)


class _Sigterm:
    """SIGTERM handler. While the engines load: unwind like Ctrl-C. Once PyTriton runs: only note it;
    the main thread stops Triton when start-up is done (drains in-flight requests, exit code 0).
    (A KeyboardInterrupt raised inside PyTriton's start-up can leave a lock held and hang its stop.)"""

    def __init__(self) -> None:
        self.received = False
        self.unwind = True
        self.stop = threading.Event()

    def __call__(self, signum: int, frame: object) -> None:
        self.received = True
        self.stop.set()
        if self.unwind:
            raise KeyboardInterrupt


def _wait_for_sigterm(triton: Any, sigterm: _Sigterm) -> None:
    """Serve until SIGTERM (or Ctrl-C, raised here); leaving the `with Triton` block stops the server."""
    while not sigterm.stop.wait(timeout=1.0):
        if not triton.is_alive():
            raise EdgecnnError("Triton stopped unexpectedly; see its log above")
