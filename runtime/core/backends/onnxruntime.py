"""ONNX Runtime backend: execution providers TensorRT -> CUDA -> CPU, always listed explicitly."""

from __future__ import annotations

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from edgecnn.runtime.core.backends.base import InputSpec, check_graph
from edgecnn.runtime.core.bundle import check_external_data
from edgecnn.runtime.core.errors import EdgecnnError

_ONNX_DTYPES = {"tensor(uint8)": "uint8", "tensor(float)": "float32", "tensor(float16)": "float16"}


def provider_entry(provider: str, cache_dir: Path | None) -> Any:
    """A provider with its options: TensorRT keeps built engines in the cache folder."""
    if provider == "TensorrtExecutionProvider" and cache_dir is not None:
        folder = cache_dir / "tensorrt"
        folder.mkdir(parents=True, exist_ok=True)
        return provider, {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(folder)}
    return provider


def open_session(path: str | Path, providers: list[str], threads: int | None = None,
                 cache_dir: Path | None = None, spin: bool = True) -> Any:
    """An `onnxruntime.InferenceSession` on exactly `providers`; EdgecnnError for a bad model file."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise EdgecnnError(f"model file {path} does not exist")
    if path.stat().st_size == 0:
        raise EdgecnnError(f"model file {path} is empty (0 bytes); export it again")
    check_external_data(path)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: provider fallbacks are reported by us
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if not spin:  # runs that share the cores with each other (or with decoding) must not busy-wait
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    entries = [provider_entry(p, cache_dir) for p in providers]
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=entries)
    except Exception as exc:  # ORT raises its own pybind classes (InvalidProtobuf, Fail, ...)
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise EdgecnnError(f"{path} is not a loadable ONNX model (truncated or not a model?): {reason}"
                           ) from exc


class OnnxRuntimeBackend:
    """One ONNX Runtime session; `submit` overlaps inference with the caller on worker threads.

    `streams` runs that many `session.run` at once (the session is thread-safe), splitting `threads`.
    """

    name = "onnxruntime"

    def __init__(self, path: Path, providers: list[str], threads: int | None = None,
                 cache_dir: Path | None = None, streams: int | None = None) -> None:
        start = time.perf_counter()
        self.streams = max(1, streams or 1)
        per_run = max(1, threads // self.streams) if threads else None
        if per_run is None and self.streams > 1:
            per_run = max(1, (os.cpu_count() or 1) // self.streams)
        self.session = open_session(path, providers, per_run, cache_dir, spin=self.streams == 1)
        self.load_seconds = time.perf_counter() - start
        self.device = self.session.get_providers()[0]
        check_graph(path, len(self.session.get_inputs()), self.session.get_outputs()[0].shape)
        node = self.session.get_inputs()[0]
        shape = tuple(d if isinstance(d, int) and d > 0 else None for d in node.shape)
        self.input = InputSpec(node.name, shape, _ONNX_DTYPES.get(node.type, node.type))
        out_shape = self.session.get_outputs()[0].shape
        self.num_outputs = out_shape[-1] if out_shape and isinstance(out_shape[-1], int) else 0
        self.output_names = tuple(o.name for o in self.session.get_outputs())
        self._pool: ThreadPoolExecutor | None = None

    def metadata(self) -> dict[str, str]:
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(self.output_names[:1], {self.input.name: batch})[0]

    def infer_all(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input.name: batch})

    def submit(self, batch: np.ndarray) -> Future[np.ndarray]:
        return self._worker().submit(self.infer, batch)

    def submit_all(self, batch: np.ndarray) -> Future[list[np.ndarray]]:
        return self._worker().submit(self.infer_all, batch)

    def _worker(self) -> ThreadPoolExecutor:
        if self._pool is None:  # one worker per stream: ORT spreads one run over its intra-op threads
            self._pool = ThreadPoolExecutor(max_workers=self.streams, thread_name_prefix="edgecnn-ort")
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
