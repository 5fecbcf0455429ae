"""Triton client backend: a model served by a Triton Inference Server, named triton://HOST:PORT/MODEL.

HOST:PORT is the server's HTTP endpoint (`edgecnn serve` prints it). The server publishes the model's
ModelMeta JSON as the config parameter `edgecnn_meta` (runtime/serving/serve.py), so labels,
preprocessing and the unknown threshold come from the server and the caller passes only images, as with
a local bundle. The served contract is uint8 NHWC fitted pixels in, probabilities (and unknown_score)
out. Each worker thread has its own HTTP client (tritonclient's is not thread-safe); `streams` requests
run at once. A server that goes away mid-run is retried with backoff, as a camera source is, for
RECONNECT_SECONDS; then one EdgecnnError. Messages name only HOST:PORT/MODEL.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
from edgecnn.runtime.core.backends.base import META_KEY, BackendEntry, InputSpec, OpenRequest
from edgecnn.runtime.core.errors import EdgecnnError, install_hint

INSTALL = f"triton:// needs the Triton client: {install_hint('serve')}"
FORM = "triton://HOST:PORT/MODEL"
# Under the camera's 30 s "inference stuck" limit: a server restart or a network blip is ridden out.
RECONNECT_SECONDS = 15.0
CONNECT_TIMEOUT_S, REQUEST_TIMEOUT_S = 5.0, 10.0
DEFAULT_STREAMS = 2  # one request on the wire while the caller prepares the next
_URL = re.compile(r"^triton:/+(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(?P<port>\d{1,5})"
                  r"/(?P<model>[A-Za-z0-9][A-Za-z0-9_.-]*)/?$", re.IGNORECASE)
_DTYPES = {"UINT8": "uint8", "FP32": "float32", "FP16": "float16"}


def parse_location(location: str) -> tuple[str, int, str]:
    """(host, port, model) of triton://HOST:PORT/MODEL; EdgecnnError that does not echo the text (it
    could hold a user or password)."""
    match = _URL.match(location.strip())
    port = int(match["port"]) if match else 0
    if match is None or not 0 < port < 65536:
        raise EdgecnnError(f"a Triton model is written {FORM} (HOST:PORT the server's HTTP endpoint, no "
                           "user or password); check the model argument")
    return match["host"], port, match["model"]


def _client_module() -> Any:
    try:
        import tritonclient.http as httpclient
    except ImportError as exc:
        raise EdgecnnError(INSTALL) from exc
    return httpclient


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__


class TritonBackend:
    """One model on a Triton server: its inputs and outputs read from the server, inference over HTTP."""

    name = "triton"

    def __init__(self, location: str, streams: int | None = None) -> None:
        start = time.perf_counter()
        self._http = _client_module()
        host, port, self.model = parse_location(location)
        self.where = f"{host}:{port}/{self.model}"
        self._url = f"{host}:{port}"
        self.streams = max(1, streams or DEFAULT_STREAMS)
        self._clients: list[Any] = []
        self._local = threading.local()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._lost_since: float | None = None
        self._pool: ThreadPoolExecutor | None = None
        config, metadata = self._describe()
        self.meta_text = _parameter(config, META_KEY)
        self.input, self.output_names, self.num_outputs = _signature(metadata, self.where)
        self.device = f"{host}:{port}"  # where it runs: the server
        self.load_seconds = time.perf_counter() - start
        self.compile_seconds = 0.0  # compiled on the server, before it answered ready

    def _describe(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The model's configuration and metadata; one-line errors for a server down or a model absent."""
        client = self._client()
        try:
            ready = client.is_model_ready(self.model)
            if ready:
                return client.get_model_config(self.model), client.get_model_metadata(self.model)
        except Exception as exc:  # noqa: BLE001 - gevent/socket/tritonclient errors alike: the server is away
            self.close()
            raise EdgecnnError(f"cannot reach the Triton server {self._url} ({_reason(exc)}); is `edgecnn "
                               "serve` running there? Give its HTTP port") from None
        self.close()
        raise EdgecnnError(f"the Triton server {self._url} has no model {self.model} ready; check the name "
                           "(`edgecnn serve` prints it)")

    # -- inference -----------------------------------------------------------------------------
    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.infer_all(batch)[0]

    def infer_all(self, batch: np.ndarray) -> list[np.ndarray]:
        while True:
            try:
                return self._request(batch)
            except Exception as exc:  # noqa: BLE001 - decided below: a request problem, or the server away
                self._recover(exc)

    def submit(self, batch: np.ndarray) -> Future[np.ndarray]:
        return self._worker().submit(self.infer, batch)

    def submit_all(self, batch: np.ndarray) -> Future[list[np.ndarray]]:
        return self._worker().submit(self.infer_all, batch)

    def close(self) -> None:
        self._closing.set()  # retries stop at once
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - a client of a thread that has ended: nothing left to free
                pass

    def _request(self, batch: np.ndarray) -> list[np.ndarray]:
        http = self._http
        images = http.InferInput(self.input.name, list(batch.shape), "UINT8" if batch.dtype == np.uint8
                                 else {"float32": "FP32", "float16": "FP16"}[str(batch.dtype)])
        images.set_data_from_numpy(batch, binary_data=True)
        wanted = [http.InferRequestedOutput(name, binary_data=True) for name in self.output_names]
        result = self._client().infer(self.model, [images], outputs=wanted)
        answer = [result.as_numpy(name) for name in self.output_names]
        if self._lost_since is not None:
            with self._lock:
                if self._lost_since is not None:
                    self._lost_since = None
                    print(f"reconnected to the Triton server {self.where}", file=sys.stderr)
        return answer

    def _recover(self, exc: BaseException) -> None:
        """Return to retry a failed request once the server answers again; EdgecnnError when it is a
        request problem (the server is up and still refuses it), past RECONNECT_SECONDS, or on close."""
        if self._closing.is_set():
            raise EdgecnnError(f"the Triton server {self.where} did not answer before close") from None
        if self._server_ready():
            if self._lost_since is None:
                raise EdgecnnError(f"the Triton server {self.where} refused the request: {_reason(exc)}"
                                   ) from None
            return
        with self._lock:
            if self._lost_since is None:
                self._lost_since = time.perf_counter()
                print(f"lost the Triton server {self.where} ({_reason(exc)}); reconnecting (giving up "
                      f"after {RECONNECT_SECONDS:.0f} s)", file=sys.stderr)
            lost = self._lost_since
        delay = 0.25
        while not self._closing.is_set() and time.perf_counter() - lost < RECONNECT_SECONDS:
            if self._closing.wait(delay):
                break
            self._drop_client()  # a fresh connection: the old one may be half-closed
            if self._server_ready():
                return
            delay = min(delay * 2, 2.0)
        raise EdgecnnError(f"lost the Triton server {self.where} and could not reconnect within "
                           f"{RECONNECT_SECONDS:.0f} s ({_reason(exc)}); check the server and start again"
                           ) from None

    def _server_ready(self) -> bool:
        try:
            return bool(self._client().is_model_ready(self.model))
        except Exception:  # noqa: BLE001 - any failure to answer means not ready
            self._drop_client()
            return False

    def _client(self) -> Any:
        """This thread's HTTP client (made on first use; tritonclient's clients are not thread-safe)."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._http.InferenceServerClient(self._url, connection_timeout=CONNECT_TIMEOUT_S,
                                                      network_timeout=REQUEST_TIMEOUT_S)
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def _drop_client(self) -> None:
        client = getattr(self._local, "client", None)
        self._local.client = None
        if client is not None:
            with self._lock:
                if client in self._clients:
                    self._clients.remove(client)
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail too
                pass

    def _worker(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.streams, thread_name_prefix="edgecnn-triton")
        return self._pool


def _parameter(config: dict[str, Any], key: str) -> str | None:
    """A string parameter of a Triton model configuration (as the HTTP API returns it), None when absent."""
    value = (config.get("parameters") or {}).get(key)
    return value.get("string_value") if isinstance(value, dict) else None


def _signature(metadata: dict[str, Any], where: str) -> tuple[InputSpec, tuple[str, ...], int]:
    """The model's image input and its numeric outputs (probabilities first), from Triton's model metadata."""
    inputs = metadata.get("inputs") or []
    outputs = [o for o in metadata.get("outputs") or [] if o.get("datatype") in ("FP32", "FP16")]
    if len(inputs) != 1 or not outputs:
        raise EdgecnnError(f"{where} has {len(inputs)} inputs and {len(outputs)} float outputs; edgecnn runs "
                           "image classifiers with one image input and a probabilities output")
    node = inputs[0]
    shape = tuple(int(d) if int(d) > 0 else None for d in node.get("shape", []))
    spec = InputSpec(str(node.get("name")), shape, _DTYPES.get(str(node.get("datatype")), "unsupported"))
    names = [str(o["name"]) for o in outputs]
    first = "probabilities" if "probabilities" in names else names[0]
    names = [first] + [n for n in names if n != first]
    classes = next(o.get("shape", [0])[-1] for o in outputs if o["name"] == first)
    return spec, tuple(names), int(classes) if int(classes) > 0 else 0


def open_model(request: OpenRequest) -> tuple[TritonBackend, Any]:
    """The registry's `open`: connect, read the model's signature and the metadata its server publishes."""
    runner = TritonBackend(request.location, request.streams)
    try:
        return runner, request.read_meta(runner.meta_text)
    except EdgecnnError:
        runner.close()
        raise


ENTRY = BackendEntry(
    name="triton", module="tritonclient", distributions=("tritonclient",), open=open_model,
    devices=lambda: [], runs_on_cpu=False, url_scheme="triton", url_form=FORM)
