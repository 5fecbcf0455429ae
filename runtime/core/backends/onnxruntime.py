"""ONNX Runtime backend: execution providers TensorRT -> CUDA -> CPU, always listed explicitly."""

from __future__ import annotations

import ctypes
import functools
import os
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from edgecnn.runtime.core.backends.base import (
    META_KEY,
    BackendEntry,
    InputSpec,
    OpenRequest,
    check_graph,
    check_ops,
    has_module,
    run_failed,
)
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.files import check_external_data

_ONNX_DTYPES = {"tensor(uint8)": "uint8", "tensor(float)": "float32", "tensor(float16)": "float16"}
# ORT providers per device, fastest first; CPU last so a missing GPU op still runs.
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "DmlExecutionProvider",
                 "CoreMLExecutionProvider")
TELEMETRY_OFF = ("ORT_DISABLE_TELEMETRY", "1")  # read once, when onnxruntime's library is first imported


def import_onnxruntime() -> Any:
    """`import onnxruntime`, with its usage telemetry declined for this process (`decline_telemetry`)."""
    decline_telemetry()
    import onnxruntime as ort

    return ort


def decline_telemetry() -> None:
    """Decline ONNX Runtime's telemetry before its first import, as OpenVINO's is (`import_openvino`).

    Its Linux wheels (1.32 here) start a 1DS uploader on import: a persistent device id and an event queue
    in $XDG_CACHE_HOME (~/.cache)/Microsoft/DeveloperTools/.onnxruntime, and a ProcessInfo upload. With
    ORT_DISABLE_TELEMETRY=1 it returns before any of that: nothing written, nothing sent. An environment
    variable because it is ORT's only switch read before the import does that work (the session options
    come too late); set for this process and its children. Export calls it before onnxslim, which
    imports onnxruntime itself.
    """
    os.environ[TELEMETRY_OFF[0]] = TELEMETRY_OFF[1]


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
    ort = import_onnxruntime()

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
        self._path = path
        self.session = open_session(path, providers, per_run, cache_dir, spin=self.streams == 1)
        self.load_seconds = time.perf_counter() - start
        self.compile_seconds = self.load_seconds  # ORT builds its session in one step
        self.device = self.session.get_providers()[0]
        check_graph(path, len(self.session.get_inputs()), self.session.get_outputs()[0].shape)
        check_ops(path, _control_flow_ops(path))
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
        return self.infer_all(batch, self.output_names[:1])[0]

    def infer_all(self, batch: np.ndarray, names: Any = None) -> list[np.ndarray]:
        try:
            return self.session.run(names, {self.input.name: batch})
        except Exception as exc:  # ORT's own pybind classes: out of memory, a shape the graph rejects
            raise run_failed(self._path, exc) from exc

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


SCAN_WINDOW = 1 << 20  # bytes searched per call: the GIL is free between calls (a hot swap's loop runs)


def _control_flow_ops(path: Path) -> list[str]:
    """Control-flow op types in an .onnx file, by a byte scan of the mapped file (no onnx package in the
    runtime): a NodeProto's op_type is field 4, a length-delimited string (tag 0x22). Searched SCAN_WINDOW
    at a time: one find over a whole 6 MB file holds the GIL throughout (another Python thread woke 7-17
    ms late during it in a hot swap's load, longer than the camera's inference)."""
    import mmap

    from edgecnn.runtime.core.backends.base import CONTROL_FLOW

    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return [op for op in CONTROL_FLOW if _contains(data, b"\x22" + bytes([len(op)]) + op.encode())]


def _contains(data: Any, needle: bytes) -> bool:
    """Whether `needle` is in `data`, found window by window (windows overlap by len(needle) - 1)."""
    for start in range(0, max(1, len(data)), SCAN_WINDOW):
        if data.find(needle, start, start + SCAN_WINDOW + len(needle) - 1) >= 0:
            return True
    return False


def open_model(request: OpenRequest) -> tuple[OnnxRuntimeBackend, Any]:
    """The registry's `open`: a session on the placement's providers and the file's embedded metadata."""
    if request.precision == "fp16":
        raise EdgecnnError("--precision fp16 is for OpenVINO (FP16 execution); use fp32 with onnxruntime")
    runner = OnnxRuntimeBackend(request.model_path, list(request.target), request.threads,
                                _cache(request.cache_dir), request.streams)
    return runner, request.read_meta(runner.metadata().get(META_KEY))


def _cache(cache_dir: str | Path | None) -> Path | None:
    """The cache root (TensorRT engines go in its tensorrt/): the OpenVINO cache folder's parent."""
    from edgecnn.runtime.core.backends.openvino import cache_dir_from

    folder = cache_dir_from(cache_dir)
    return folder.parent if folder is not None and folder.name == "openvino" else folder


def check_runner(path: Path, threads: int) -> Any:
    """Export's check: the runtime's own session set-up on the CPU; run(frames, output) -> that output."""
    session = open_session(path, ["CPUExecutionProvider"], threads=threads)

    def run(frames: np.ndarray, output: str | None = None) -> np.ndarray:
        return session.run(None if output is None else [output], {"images": frames})[0]

    return run


# -- which providers can run here ----------------------------------------------------------------------
NEEDS_CUDA = {"TensorrtExecutionProvider": "tensorrt", "CUDAExecutionProvider": "cuda"}
# A one-node model (Relu on float[1, 8], opset 13, IR 7; written by onnx.helper) that `_takes_nodes` opens.
PROBE_MODEL = (b'\x08\x07:?\n\x0c\n\x01x\x12\x01y"\x04Relu\x12\x05probe'
               b'Z\x13\n\x01x\x12\x0e\n\x0c\x08\x01\x12\x08\n\x02\x08\x01\n\x02\x08\x08b\x13\n\x01'
               b'y\x12\x0e\n\x0c\x08\x01\x12\x08\n\x02\x08\x01\n\x02\x08\x08B\x04\n\x00\x10\r')
TAKES_NO_NODES = "runs none of a model's nodes here (ORT would put them all on the CPU)"


@functools.lru_cache(maxsize=1)
def ort_providers() -> tuple[str, ...]:
    """ORT providers that can really run here: onnxruntime-gpu lists CUDA even with no GPU driver, and
    the CPU wheel lists AzureExecutionProvider, which runs no node of a model on this machine."""
    if not has_module("onnxruntime"):
        return ()
    ort = import_onnxruntime()

    return tuple(p for p in ort.get_available_providers() if p == "CPUExecutionProvider" or
                 (cuda_driver_present() and _provider_library_loads(ort, NEEDS_CUDA[p]) if p in NEEDS_CUDA
                  else _takes_nodes(ort, p)))


def _takes_nodes(ort: Any, provider: str) -> bool:
    """Whether `provider` itself runs a one-node model, with ORT's fall-back to the CPU turned off."""
    options = ort.SessionOptions()
    options.log_severity_level = 4  # the refusal is the answer, not an error to print
    options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    try:
        ort.InferenceSession(PROBE_MODEL, options, providers=[provider])
    except Exception:  # noqa: BLE001 - any refusal (ORT raises its own Fail/InvalidArgument types) is a no
        return False
    return True


def _provider_library_loads(ort: Any, name: str) -> bool:
    """onnxruntime-gpu lists CUDA/TensorRT whenever it is installed; its provider library only loads when
    the CUDA runtime, cuBLAS and cuDNN (or TensorRT) it links against are present."""
    capi = os.path.join(os.path.dirname(ort.__file__), "capi")
    suffix = {"linux": ".so", "win32": ".dll"}.get(sys.platform, ".so")
    prefix = "" if sys.platform == "win32" else "lib"
    try:
        shared = os.path.join(capi, f"{prefix}onnxruntime_providers_shared{suffix}")
        ctypes.CDLL(shared, mode=ctypes.RTLD_GLOBAL)
        ctypes.CDLL(os.path.join(capi, f"{prefix}onnxruntime_providers_{name}{suffix}"))
    except OSError:
        return False
    return True


def ort_unusable() -> dict[str, str]:
    """ORT providers this onnxruntime build lists but that cannot run here, with the reason."""
    if not has_module("onnxruntime"):
        return {}
    ort = import_onnxruntime()

    usable = ort_providers()
    found = {}
    for provider in ort.get_available_providers():
        if provider in usable:
            continue
        if provider not in NEEDS_CUDA:
            found[provider] = TAKES_NO_NODES
        else:
            found[provider] = "no NVIDIA driver (libcuda)" if not cuda_driver_present() else \
                "its CUDA/cuDNN/TensorRT libraries do not load"
    return found


@functools.lru_cache(maxsize=1)
def cuda_driver_present() -> bool:
    names = {"linux": ["libcuda.so.1"], "win32": ["nvcuda.dll"]}.get(sys.platform, [])
    for name in names:
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def ort_devices() -> list[str]:
    """The generic devices ORT can use here, importing it only when a GPU provider could be usable."""
    if not has_module("onnxruntime"):
        return []
    # Importing onnxruntime costs ~0.1 s and ~40 MB: only do it when a GPU provider could be usable.
    gpu_possible = cuda_driver_present() or sys.platform in ("win32", "darwin")
    gpu = gpu_possible and any(p in ort_providers() for p in GPU_PROVIDERS)
    return ["cpu"] + (["gpu"] if gpu else [])


def ort_target(device: str) -> tuple[str, ...]:
    providers = ort_providers()
    if device == "cpu":
        return ("CPUExecutionProvider",)
    return tuple(p for p in GPU_PROVIDERS if p in providers) + ("CPUExecutionProvider",)


def machine() -> dict[str, Any]:
    """What `info` shows of ORT: the providers it lists, those that can run, and why the others cannot."""
    ort = import_onnxruntime()

    return {"providers_listed": ort.get_available_providers(), "providers_usable": list(ort_providers()),
            "providers_unusable": ort_unusable()}


def warm() -> None:
    """The import and the provider probes a first session here needs (registry.warm_local)."""
    import_onnxruntime()
    ort_providers()


ENTRY = BackendEntry(
    name="onnxruntime", module="onnxruntime", distributions=("onnxruntime-gpu", "onnxruntime"),
    open=open_model, devices=ort_devices, target=ort_target, files=((".onnx", "a .onnx", "an ONNX model"),),
    layout=(("int8", "model.int8.onnx"), ("fp32", "model.onnx")), first_on=("gpu",), machine=machine,
    check=check_runner, warm=warm)
