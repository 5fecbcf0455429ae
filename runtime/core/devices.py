"""Which devices this machine offers, and how `--device auto|cpu|gpu|npu` maps onto each backend."""

from __future__ import annotations

from dataclasses import dataclass

from edgecnn.runtime.core.backends import registry
from edgecnn.runtime.core.backends.base import BackendEntry, has_module
from edgecnn.runtime.core.backends.onnxruntime import (  # noqa: F401 - where callers have long found them
    cuda_driver_present,
    ort_providers,
    ort_target,
    ort_unusable,
)
from edgecnn.runtime.core.backends.openvino import openvino_devices  # noqa: F401 - as above
from edgecnn.runtime.core.errors import EdgecnnError

DEVICES = ("auto", "cpu", "gpu", "npu")  # one vocabulary for every command, training included
DEVICE_ALIASES = {"cuda": "gpu"}  # PyTorch's word for an NVIDIA GPU
BACKENDS = ("auto", *registry.NAMES)


def device_kind(name: str) -> str:
    """`--device` in edgecnn's words (auto | cpu | gpu | npu): case folded, PyTorch's "cuda" taken as gpu."""
    name = name.strip().lower()
    return DEVICE_ALIASES.get(name, name)


@dataclass(frozen=True)
class Placement:
    """A backend and the device (in that backend's words) a model will run on."""

    backend: str  # a registry name: "onnxruntime" | "openvino" | "triton"
    device: str  # "cpu" | "gpu" | "npu" ("auto" for a served model: its server decides)
    target: tuple[str, ...]  # ORT providers, the single OpenVINO device name, or the served model
    reason: str  # why auto chose it, for the user


def backend_devices(backend: str) -> list[str]:
    """The generic devices one backend can use here, importing as little as possible (fast start)."""
    return registry.entry(backend).devices()


def available() -> dict[str, list[str]]:
    """Per backend, the generic devices it can use here: {"onnxruntime": ["cpu", "gpu"], ...}."""
    found = {entry.name: entry.devices() for entry in registry.local()}
    return {backend: kinds for backend, kinds in found.items() if kinds}


def describe_available() -> str:
    found = available()
    if not found:
        return f"none (install {' or '.join(entry.module for entry in registry.local())})"
    return "; ".join(f"{backend}: {', '.join(devices)}" for backend, devices in found.items())


def place(device: str = "auto", backend: str = "auto", prefer: tuple[str, ...] | None = None) -> Placement:
    """Resolve a device/backend request against this machine; a one-line error lists what exists."""
    if ":" in device:  # OpenVINO's own strings: AUTO:GPU,CPU, MULTI:..., HETERO:... ("auto" is ours)
        return _device_string(device, backend.lower())
    device, backend = device_kind(device), backend.lower()
    if device not in DEVICES:
        raise EdgecnnError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if backend not in BACKENDS:
        raise EdgecnnError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if prefer is None:
        prefer = tuple(entry.name for entry in registry.local())
    entries = [registry.entry(backend)] if backend != "auto" else [registry.entry(name) for name in prefer]
    if backend != "auto" and entries[0].url_scheme:
        raise EdgecnnError(f"backend {backend} runs models named {entries[0].url_form}; give one as the "
                           "model, or another --backend")
    if backend != "auto" and not has_module(entries[0].module):
        raise EdgecnnError(f"backend {backend} is not installed; available: {describe_available()}")
    devices = [device] if device != "auto" else ["gpu", "npu", "cpu"]  # fastest kind first
    for wanted in devices:
        for entry in entries:
            # Every installed backend runs on the CPU: no device query (OpenVINO's costs ~70 ms, ~16 MB).
            on_cpu = wanted == "cpu" and entry.runs_on_cpu and has_module(entry.module)
            if on_cpu or wanted in entry.devices():
                return _placement(entry, wanted, device == "auto" or backend == "auto")
    where = f" with {backend}" if backend != "auto" else ""
    raise EdgecnnError(f"device {device}{where} is not available here; available: {describe_available()}")


def _device_string(device: str, backend: str) -> Placement:
    """A library's own device string (OpenVINO's AUTO:GPU,CPU, MULTI:..., HETERO:...), checked by the backend
    that takes such strings."""
    takers = [entry for entry in registry.local() if entry.device_strings is not None]
    names = " or ".join(entry.name for entry in takers)
    if backend not in ("auto", *(entry.name for entry in takers)):
        raise EdgecnnError(f"--device {device} is an OpenVINO device string; use it with --backend {names}")
    entry = next((e for e in takers if backend in ("auto", e.name) and has_module(e.module)), None)
    if entry is None or entry.device_strings is None:
        raise EdgecnnError(f"--device {device} needs OpenVINO; available: {describe_available()}")
    kind, target = entry.device_strings(device)
    return Placement(entry.name, kind, (target,), f"{entry.name} on {target} as asked")


def _placement(entry: BackendEntry, device: str, chosen: bool) -> Placement:
    reason = f"auto picked {entry.name} on {device}" if chosen else f"{entry.name} on {device} as asked"
    return Placement(entry.name, device, entry.target(device), reason)
