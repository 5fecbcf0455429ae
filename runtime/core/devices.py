"""Which devices this machine offers, and how `--device auto|cpu|gpu|npu` maps onto each backend."""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import sys
from dataclasses import dataclass
from typing import Any

from edgecnn.runtime.core.errors import EdgecnnError

DEVICES = ("auto", "cpu", "gpu", "npu")  # one vocabulary for every command, training included
DEVICE_ALIASES = {"cuda": "gpu"}  # PyTorch's word for an NVIDIA GPU


def device_kind(name: str) -> str:
    """`--device` in edgecnn's words (auto | cpu | gpu | npu): case folded, PyTorch's "cuda" taken as gpu."""
    name = name.strip().lower()
    return DEVICE_ALIASES.get(name, name)
BACKENDS = ("auto", "onnxruntime", "openvino")
OPENVINO_MODES = ("AUTO", "MULTI", "HETERO")  # OpenVINO device strings passed through, e.g. AUTO:GPU,CPU
# ORT providers per device, fastest first; CPU last so a missing GPU op still runs.
_ORT_GPU = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "DmlExecutionProvider",
            "CoreMLExecutionProvider")


@dataclass(frozen=True)
class Placement:
    """A backend and the device (in that backend's words) a model will run on."""

    backend: str  # "onnxruntime" | "openvino"
    device: str  # "cpu" | "gpu" | "npu"
    target: tuple[str, ...]  # ORT providers, or the single OpenVINO device name
    reason: str  # why auto chose it, for the user


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


@functools.lru_cache(maxsize=1)
def ort_providers() -> tuple[str, ...]:
    """ORT providers that can really run here: onnxruntime-gpu lists CUDA even with no GPU driver."""
    if not has_module("onnxruntime"):
        return ()
    import onnxruntime as ort

    listed = ort.get_available_providers()
    needs_cuda = {"TensorrtExecutionProvider": "tensorrt", "CUDAExecutionProvider": "cuda"}
    return tuple(p for p in listed if p not in needs_cuda or
                 (_cuda_driver_present() and _provider_library_loads(ort, needs_cuda[p])))


def _provider_library_loads(ort: Any, name: str) -> bool:
    """onnxruntime-gpu lists CUDA/TensorRT whenever it is installed; its provider library only loads when
    the CUDA runtime, cuBLAS and cuDNN (or TensorRT) it links against are present."""
    import os

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
    import onnxruntime as ort

    usable = ort_providers()
    found = {}
    for provider in ort.get_available_providers():
        if provider not in usable:
            found[provider] = "no NVIDIA driver (libcuda)" if not _cuda_driver_present() else \
                "its CUDA/cuDNN/TensorRT libraries do not load"
    return found


@functools.lru_cache(maxsize=1)
def _cuda_driver_present() -> bool:
    names = {"linux": ["libcuda.so.1"], "win32": ["nvcuda.dll"]}.get(sys.platform, [])
    for name in names:
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


@functools.lru_cache(maxsize=1)
def openvino_devices() -> tuple[str, ...]:
    """OpenVINO device names (CPU, GPU, GPU.1, NPU...); () when OpenVINO is not installed."""
    if not has_module("openvino"):
        return ()
    from edgecnn.runtime.core.backends.openvino import core

    return tuple(core().available_devices)


def backend_devices(backend: str) -> list[str]:
    """The generic devices one backend can use here, importing as little as possible (fast start)."""
    if backend == "onnxruntime":
        if not has_module("onnxruntime"):
            return []
        # Importing onnxruntime costs ~0.1 s and ~40 MB: only do it when a GPU provider could be usable.
        gpu_possible = _cuda_driver_present() or sys.platform in ("win32", "darwin")
        gpu = gpu_possible and any(p in ort_providers() for p in _ORT_GPU)
        return ["cpu"] + (["gpu"] if gpu else [])
    kinds = {name.split(".")[0].lower() for name in openvino_devices()}
    return [d for d in ("cpu", "gpu", "npu") if d in kinds]


def available() -> dict[str, list[str]]:
    """Per backend, the generic devices it can use here: {"onnxruntime": ["cpu", "gpu"], ...}."""
    found = {backend: backend_devices(backend) for backend in BACKENDS[1:]}
    return {backend: kinds for backend, kinds in found.items() if kinds}


def describe_available() -> str:
    found = available()
    if not found:
        return "none (install onnxruntime or openvino)"
    return "; ".join(f"{backend}: {', '.join(devices)}" for backend, devices in found.items())


def ort_target(device: str) -> tuple[str, ...]:
    providers = ort_providers()
    if device == "cpu":
        return ("CPUExecutionProvider",)
    return tuple(p for p in _ORT_GPU if p in providers) + ("CPUExecutionProvider",)


def place(device: str = "auto", backend: str = "auto", prefer: tuple[str, ...] = ("openvino", "onnxruntime")
          ) -> Placement:
    """Resolve a device/backend request against this machine; a one-line error lists what exists."""
    if ":" in device:  # OpenVINO's own strings: AUTO:GPU,CPU, MULTI:..., HETERO:... ("auto" is ours)
        return _openvino_string(device, backend.lower())
    device, backend = device_kind(device), backend.lower()
    if device not in DEVICES:
        raise EdgecnnError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if backend not in BACKENDS:
        raise EdgecnnError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    backends = [backend] if backend != "auto" else list(prefer)
    if backend != "auto" and not has_module(backend):
        raise EdgecnnError(f"backend {backend} is not installed; available: {describe_available()}")
    devices = [device] if device != "auto" else ["gpu", "npu", "cpu"]  # fastest kind first
    for wanted in devices:
        for name in backends:
            # Every installed backend runs on the CPU: no device query (OpenVINO's costs ~70 ms, ~16 MB).
            if (wanted == "cpu" and has_module(name)) or wanted in backend_devices(name):
                return _placement(name, wanted, device == "auto" or backend == "auto")
    where = f" with {backend}" if backend != "auto" else ""
    raise EdgecnnError(f"device {device}{where} is not available here; available: {describe_available()}")


def _openvino_string(device: str, backend: str) -> Placement:
    """OpenVINO's own device strings pass through (as benchmark_app takes them), once each named device is
    checked against this machine: AUTO:GPU,CPU picks, MULTI: runs on all, HETERO: splits the graph."""
    if backend not in ("auto", "openvino"):
        raise EdgecnnError(f"--device {device} is an OpenVINO device string; use it with --backend openvino")
    if not has_module("openvino"):
        raise EdgecnnError(f"--device {device} needs OpenVINO; available: {describe_available()}")
    mode, _, named = device.upper().partition(":")
    if mode not in OPENVINO_MODES:
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
    target = f"{mode}:{','.join(names)}" if names else mode
    return Placement("openvino", kind, (target,), f"openvino on {target} as asked")


def _placement(backend: str, device: str, chosen: bool) -> Placement:
    target = ort_target(device) if backend == "onnxruntime" else (device.upper(),)
    reason = f"auto picked {backend} on {device}" if chosen else f"{backend} on {device} as asked"
    return Placement(backend, device, target, reason)
