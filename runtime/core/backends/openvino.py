"""OpenVINO backend: NPU, GPU, CPU or AUTO; latency/throughput hints; a compiled-model cache."""

from __future__ import annotations

import functools
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
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
    error_reason,
    has_module,
    run_failed,
)
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.files import check_external_data

CACHE_ENV = "EDGECNN_CACHE_DIR"  # the compiled-model cache folder when --cache-dir is not given
HINTS = ("latency", "throughput", "cumulative_throughput")
MODES = ("AUTO", "MULTI", "HETERO")  # OpenVINO device strings passed through, e.g. AUTO:GPU,CPU
_OV_DTYPES = {"u8": "uint8", "f32": "float32", "f16": "float16"}


@functools.lru_cache(maxsize=1)
def core() -> Any:
    """One `openvino.Core` per process: creating it loads plugins, which is slow."""
    return import_openvino().Core()


def import_openvino() -> Any:
    """`import openvino`, with OpenVINO's and NNCF's usage telemetry declined for this process.

    Both collect it unless a consent file in ~/intel says no: importing openvino writes ~/intel, and
    convert_model and nncf send from a thread that forks a process per message. Offline, that child can
    deadlock in a DNS lookup and the exit then waits for it forever (py-spy showed `edgecnn export` stuck
    so). edgecnn works offline: it declines for its own process, before openvino is imported, and writes
    nothing into the user's home. The export side calls it before importing nncf.
    """
    try:
        from openvino_telemetry import Telemetry
        from openvino_telemetry.utils.opt_in_checker import OptInChecker
    except ImportError:  # no telemetry package: nothing is collected
        OptInChecker = None
    if OptInChecker is not None and OptInChecker.check is not _declined:
        OptInChecker.check = _declined  # every later (re-)initialisation, by openvino or nncf, declines
        try:
            Telemetry().consent = False  # an instance made before this (by an earlier import)
        except Exception:  # noqa: BLE001 - a telemetry version that builds differently: the patch holds
            pass
    import openvino as ov

    return ov


def _declined(self: Any, *args: Any, **kwargs: Any) -> Any:
    from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult

    return ConsentCheckResult.DECLINED


def read_model(path: str | Path) -> Any:
    """An `openvino.Model` from an IR .xml (its .bin beside it); EdgecnnError for a bad file."""
    path = Path(path)
    if not path.is_file():
        raise EdgecnnError(f"model file {path} does not exist")
    weights = path.with_suffix(".bin")
    if not weights.is_file():
        raise EdgecnnError(f"{path} has no weights file {weights.name} beside it; copy both .xml and .bin")
    try:
        return core().read_model(str(path), str(weights))
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1][:200]  # the first line only names the source file
        message = f"{path} is not a loadable OpenVINO IR (truncated or not a model?): {reason}"
        raise EdgecnnError(message) from exc


def compile_config(device: str, hint: str, precision: str, threads: int | None,
                   cache_dir: Path | None, streams: int | None = None) -> dict[str, Any]:
    """Properties for `compile_model`; f32 execution unless the caller asks for the model's own precision.

    `threads` is the CPU total, shared by `streams` requests that run at once (default: the hint's).
    """
    if hint.lower() not in HINTS:
        raise EdgecnnError(f"unknown performance hint {hint!r}; choose one of {', '.join(HINTS)}")
    config: dict[str, Any] = {"PERFORMANCE_HINT": hint.upper()}
    if precision == "f32" and device in ("CPU", "GPU"):
        # IRs are saved FP16-compressed; without this hint GPU (and CPU with AMX/FP16) runs in f16/bf16.
        config["INFERENCE_PRECISION_HINT"] = "f32"
    if threads and device == "CPU":
        config["INFERENCE_NUM_THREADS"] = threads
    if streams:
        config["NUM_STREAMS"] = streams
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        config["CACHE_DIR"] = str(cache_dir)
    return config


class OpenVinoBackend:
    """A model compiled per batch size: one infer request for `infer`, an AsyncInferQueue for `submit`.

    A dynamic-batch IR is compiled with a static batch (the first size seen, usually 1): OpenVINO's CPU
    kernels run static shapes ~15 % faster. Other sizes get their own compile (cached on disk); past
    a few sizes, one dynamic compile serves the rest. NPUs only take static shapes.
    """

    name = "openvino"
    max_static_sizes = 3

    def __init__(self, path: Path, device: str = "CPU", hint: str = "latency", precision: str = "f32",
                 threads: int | None = None, cache_dir: Path | None = None,
                 model: Any = None, batch: int = 1, read_seconds: float = 0.0,
                 streams: int | None = None, requests: int | None = None) -> None:
        start = time.perf_counter()
        self._model = model if model is not None else read_model(path)
        self.read_seconds = read_seconds + time.perf_counter() - start
        self._path, self._device = path, device
        self._config = compile_config(device, hint, precision, threads, cache_dir, streams)
        check_graph(path, len(self._model.inputs), _shape(self._model.outputs[0]))
        check_ops(path, (op.get_type_name() for op in self._model.get_ordered_ops()))
        self._requests = requests  # async infer requests (benchmark_app's -nireq); None: OpenVINO's optimum
        self._dynamic = not self._model.inputs[0].get_partial_shape()[0].is_static
        self._compiled: dict[int | None, _Compiled] = {}
        self._compiling = threading.Lock()
        self.input = _input_spec(self._model.inputs[0], batch if device == "NPU" else None)
        self.num_outputs = _last_dim(self._model.outputs[0])
        self.output_names = tuple(output_name(o, i) for i, o in enumerate(self._model.outputs))
        start = time.perf_counter()
        first = self._for(batch)
        self.compile_seconds = time.perf_counter() - start
        self._model = None  # free the graph and weights (~10 MB); re-read if another batch size comes
        self.load_seconds = self.read_seconds + self.compile_seconds
        self.device = _execution_device(first.compiled, device)
        self.streams = _streams(first.compiled)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.infer_all(batch)[0]

    def infer_all(self, batch: np.ndarray) -> list[np.ndarray]:
        entry = self._for(len(batch))
        with entry.lock:  # one synchronous request: two threads at once would find it busy
            try:
                entry.request.infer({0: batch}, share_inputs=True)
            except RuntimeError as exc:  # out of memory, a shape the graph rejects
                raise run_failed(self._path, exc) from exc
            return _outputs(entry.request)

    def submit(self, batch: np.ndarray) -> Future[np.ndarray]:
        return self._start(batch, first_only=True)

    def submit_all(self, batch: np.ndarray) -> Future[list[np.ndarray]]:
        return self._start(batch, first_only=False)

    def _start(self, batch: np.ndarray, first_only: bool) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_running_or_notify_cancel()
        # blocks only while all requests are busy
        self._for(len(batch)).queue().start_async({0: batch}, (future, first_only))
        return future

    def close(self) -> None:
        for entry in self._compiled.values():
            entry.close()

    def _for(self, size: int | None) -> _Compiled:
        """The compiled model serving batches of `size` (compiling it on first use)."""
        key: int | None = size if self._dynamic else None
        entry = self._compiled.get(key)
        if entry is not None:
            return entry
        with self._compiling:  # two threads meeting a new size compile it once
            if key is not None and key not in self._compiled and len(self._compiled) >= self.max_static_sizes:
                key = -1  # one dynamic-shape compile for every further size
            if key not in self._compiled:
                self._compiled[key] = _Compiled(self._compile(key), self._requests)
            return self._compiled[key]

    def _compile(self, size: int | None) -> Any:
        model = self._model if self._model is not None else _reread(self._path)
        dims = list(model.inputs[0].get_partial_shape())[1:]
        if size is not None and size > 0 and all(d.is_static for d in dims):  # dynamic H/W: compiled as is
            model = model.clone()
            model.reshape({model.inputs[0]: [size, *[d.get_length() for d in dims]]})
        try:
            return core().compile_model(model, self._device, self._config)
        except RuntimeError as exc:
            if "CACHE_DIR" in self._config:  # the cache only saves time: another process may be writing
                return self._compile_uncached(model, exc)  # the same blob (CI: "core.cpp:117" mid-write)
            raise _cannot_compile(self._path, self._device, exc) from exc

    def _compile_uncached(self, model: Any, first: RuntimeError) -> Any:
        config = {key: value for key, value in self._config.items() if key != "CACHE_DIR"}
        try:
            return core().compile_model(model, self._device, config)
        except RuntimeError as exc:
            raise _cannot_compile(self._path, self._device, exc) from first


def _cannot_compile(path: Path, device: str, exc: RuntimeError) -> EdgecnnError:
    return EdgecnnError(f"OpenVINO cannot compile {path} for {device}: {error_reason(exc)}")


class _Compiled:
    """One compiled model with its synchronous request and (lazily) its async queue."""

    def __init__(self, compiled: Any, requests: int | None = None) -> None:
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.lock = threading.Lock()
        self.requests = requests or max(2, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        self._queue: Any = None

    def queue(self) -> Any:
        if self._queue is None:
            self._queue = import_openvino().AsyncInferQueue(self.compiled, self.requests)
            self._queue.set_callback(_finish)
        return self._queue

    def close(self) -> None:
        if self._queue is not None:
            self._queue.wait_all()
            self._queue = None


def _reread(path: Path) -> Any:
    """The model again, for a compile after the first (an .onnx file is read by OpenVINO directly)."""
    return read_model(path) if path.suffix.lower() == ".xml" else core().read_model(str(path))


def output_name(node: Any, index: int) -> str:
    """The graph's name for an output: a tensor can carry several (after NNCF also an internal one like
    "/unknown_detector/Gather_output_0"); the model's own output name has no "/" path."""
    names = sorted(node.get_names(), key=lambda name: ("/" in name, name))
    return names[0] if names else f"output{index}"


def _outputs(request: Any) -> list[np.ndarray]:
    """Every output of a finished request, copied out of its buffers, in the model's order."""
    return [request.get_output_tensor(i).data.copy() for i in range(len(request.model_outputs))]


def _finish(request: Any, job: tuple[Future[Any], bool]) -> None:
    future, first_only = job
    try:
        future.set_result(request.get_output_tensor(0).data.copy() if first_only else _outputs(request))
    except Exception as exc:  # noqa: BLE001 - handed to whoever waits on the future
        future.set_exception(exc)


def _input_spec(node: Any, fixed_batch: int | None = None) -> InputSpec:
    shape = tuple(d.get_length() if d.is_static else None for d in node.get_partial_shape())
    if fixed_batch is not None and shape:
        shape = (fixed_batch, *shape[1:])
    dtype = _OV_DTYPES.get(node.get_element_type().get_type_name(), "float32")
    name = next(iter(node.get_names()), "images")
    return InputSpec(name, shape, dtype)


def _streams(compiled: Any) -> int:
    """Requests the compiled model runs at once (CPU streams; 1 where the device does not say)."""
    try:
        return max(1, int(compiled.get_property("NUM_STREAMS")))
    except (RuntimeError, TypeError, ValueError):
        return 1


def _shape(node: Any) -> list[object] | None:
    """A node's shape: ints where static, "?" where dynamic; None for a dynamic rank."""
    shape = node.get_partial_shape()
    if not shape.rank.is_static:
        return None
    return [d.get_length() if d.is_static else "?" for d in shape]


def _last_dim(node: Any) -> int:
    last = list(node.get_partial_shape())[-1]
    return last.get_length() if last.is_static else 0


def _execution_device(compiled: Any, asked: str) -> str:
    """The device really used (AUTO reports what it chose)."""
    try:
        devices = compiled.get_property("EXECUTION_DEVICES")
        return ",".join(devices) if devices else asked
    except RuntimeError:
        return asked


def cache_dir_from(value: str | Path | None) -> Path | None:
    """The compiled-model cache folder: the caller's, else $EDGECNN_CACHE_DIR, else
    $XDG_CACHE_HOME/edgecnn/openvino (~/.cache/edgecnn/openvino); "" turns caching off.

    A folder that cannot be written (read-only or missing HOME) turns caching off with a one-line note:
    the model still runs, it only compiles afresh each time (~0.1-1 s).
    """
    if value is None:
        value = os.environ.get(CACHE_ENV)
    if value is not None:
        return _writable_cache(Path(value)) if str(value) else None
    from edgecnn.runtime.core.cache import cache_root

    root = cache_root()
    if root is None:
        _note_no_cache("~/.cache", "there is no home folder")
        return None
    return _writable_cache(root / "openvino")


def _writable_cache(folder: Path) -> Path | None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        Path(tempfile.mkdtemp(dir=folder, prefix=".edgecnn-probe-")).rmdir()
    except OSError as exc:
        _note_no_cache(str(folder), exc.strerror or type(exc).__name__)
        return None
    return folder


@functools.cache
def _note_no_cache(folder: str, reason: str) -> None:
    """Said once per folder and process, on stderr: the run goes on without a cache."""
    print(f"note: OpenVINO cache folder {folder} is not writable ({reason}); compiling without a cache. "
          f"Give --cache-dir DIR or set {CACHE_ENV}=DIR ('' turns it off).", file=sys.stderr)


# -- the registry's view -------------------------------------------------------------------------------
def open_model(request: OpenRequest) -> tuple[OpenVinoBackend, Any]:
    """The registry's `open`: read the IR (or ONNX file), its embedded metadata, then compile it."""
    path = request.model_path
    start = time.perf_counter()
    model = read_model(path) if path.suffix == ".xml" else _read_onnx(path)
    read_seconds = time.perf_counter() - start
    text = _rt_text(model, [META_KEY])
    if text is None:
        text = _rt_text(model, ["framework", META_KEY])  # an ONNX file's metadata_props
    meta = request.read_meta(text)
    int8 = meta is not None and meta.precision == "int8"
    precision = "f32" if request.precision in ("fp32", "") and not int8 else ""
    runner = OpenVinoBackend(path, request.target[0], request.hint, precision, request.threads,
                             cache_dir_from(request.cache_dir), model=model, read_seconds=read_seconds,
                             streams=request.streams, requests=request.requests)
    return runner, meta


def _rt_text(model: Any, key: list[str]) -> str | None:
    if not model.has_rt_info(key):
        return None
    value = model.get_rt_info(key)  # an OVAny: str() of it is "<OVAny class>", not the text
    return value.astype(str) if hasattr(value, "astype") else str(value)


def _read_onnx(path: Path) -> Any:
    check_external_data(path)
    try:
        return core().read_model(str(path))
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1][:200]  # OpenVINO: the last line says what is wrong
        raise EdgecnnError(f"{path} is not a loadable ONNX model: {reason}") from exc


def check_runner(model: Path | Any, threads: int) -> Any:
    """Export's check: the runtime's OpenVINO core and compile settings on the CPU (f32 execution, latency
    hint, `threads`); run(frames, output) -> that output. (On bf16-capable CPUs OpenVINO would otherwise
    run FP32 models in bf16, slower and less exact here.)"""
    config = compile_config("CPU", "latency", "f32", threads, cache_dir=None)
    compiled = core().compile_model(str(model) if isinstance(model, Path) else model, "CPU", config)

    def run(frames: np.ndarray, output: str | None = None) -> np.ndarray:
        return compiled(frames)[compiled.output(output) if output else 0]

    return run


@functools.lru_cache(maxsize=1)
def openvino_devices() -> tuple[str, ...]:
    """OpenVINO device names (CPU, GPU, GPU.1, NPU...); () when OpenVINO is not installed."""
    if not has_module("openvino"):
        return ()
    return tuple(core().available_devices)


def generic_devices() -> list[str]:
    kinds = {name.split(".")[0].lower() for name in openvino_devices()}
    return [d for d in ("cpu", "gpu", "npu") if d in kinds]


def device_string(device: str) -> tuple[str, str]:
    """OpenVINO's own device strings pass through (as benchmark_app takes them), once each named device is
    checked against this machine: AUTO:GPU,CPU picks, MULTI: runs on all, HETERO: splits the graph.
    Returns (the generic kind it runs on, the string for OpenVINO)."""
    mode, _, named = device.upper().partition(":")
    if mode not in MODES:
        raise EdgecnnError(f"unknown OpenVINO device {device!r}; write e.g. AUTO:GPU,CPU, MULTI:GPU,CPU or "
                           f"HETERO:GPU,CPU")
    present = openvino_devices()
    names = [name.strip() for name in named.split(",") if name.strip()]
    kinds = {p.split(".")[0] for p in present}
    found = [n for n in names if n in present or n.split(".")[0] in kinds]
    if not found and (names or mode != "AUTO"):  # OpenVINO itself skips listed devices that are absent
        what = f"none of {', '.join(names)} is here" if names else f"{mode} needs devices after the colon"
        raise EdgecnnError(f"--device {device}: {what}; OpenVINO devices here: {', '.join(present)}")
    kind = next((k for k in ("gpu", "npu", "cpu") if k.upper() in {n.split(".")[0] for n in found}), "cpu")
    return kind, f"{mode}:{','.join(names)}" if names else mode


def machine() -> dict[str, Any]:
    """What `info` shows of OpenVINO: each device with its full name."""
    names = {name: str(core().get_property(name, "FULL_DEVICE_NAME")) for name in openvino_devices()}
    return {"devices": names}


def warm() -> None:
    """The import a first model here needs (registry.warm_local): Python runs it holding the GIL. Not the
    Core and its device plugins: a swap that makes them on its own thread kept another Python thread no
    later (measured, benchmarks/swap_gil.py), and they cost 35 MB more."""
    import_openvino()


ENTRY = BackendEntry(
    name="openvino", module="openvino", distributions=("openvino",), open=open_model, devices=generic_devices,
    files=((".xml", "an OpenVINO .xml", "an OpenVINO IR"), (".onnx", "a .onnx", "an ONNX model")),
    layout=(("int8", "openvino/model.int8.xml"), ("fp32", "openvino/model.xml")),
    device_strings=device_string, machine=machine, check=check_runner, warm=warm)
