"""The one interface every inference library is wrapped behind, and the record that registers one.

A backend is one module here (onnxruntime.py, openvino.py, triton.py) that defines a `Backend` class
and an `ENTRY` (`BackendEntry`); `registry.py` lists the entries, and selection, devices, the bundle
layout, `info` and export iterate them instead of comparing names.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from edgecnn.runtime.core.errors import EdgecnnError

if TYPE_CHECKING:
    import numpy as np

META_KEY = "edgecnn_meta"  # where a model carries edgecnn's metadata: ONNX metadata_props, OpenVINO rt_info
SUPPORTED = ("edgecnn runs image classifiers: one image input (uint8 or float, NHWC or NCHW) and a first "
             "output [N, classes] with a fixed number of classes")


@dataclass(frozen=True)
class InputSpec:
    """What the model's single input accepts, as read from the model itself."""

    name: str
    shape: tuple[int | None, ...]  # None for a dynamic dimension
    dtype: str  # numpy dtype name: "uint8" for edgecnn models, "float32" for most foreign ones

    @property
    def layout(self) -> str:
        """NHWC when the last axis holds 3 channels, else NCHW."""
        return "NHWC" if len(self.shape) == 4 and self.shape[-1] == 3 else "NCHW"

    @property
    def fixed_batch(self) -> int | None:
        return self.shape[0] if self.shape else None

    @property
    def size(self) -> tuple[int, int] | None:
        """(height, width) when both are fixed."""
        if len(self.shape) != 4:
            return None
        height, width = self.shape[1:3] if self.layout == "NHWC" else self.shape[2:4]
        return (height, width) if height and width else None


def check_graph(path: Path, inputs: int, output_shape: Sequence[object] | None) -> None:
    """EdgecnnError naming what the runtime supports, for graphs it cannot run (read by both backends)."""
    if inputs != 1:
        raise EdgecnnError(f"{path} has {inputs} inputs; {SUPPORTED}")
    if output_shape is None or len(output_shape) != 2:
        rank = "a dynamic rank" if output_shape is None else f"rank {len(output_shape)}"
        raise EdgecnnError(f"{path} has a first output of {rank}; {SUPPORTED}")
    classes = output_shape[-1]
    if type(classes) is not int or classes < 1:
        raise EdgecnnError(f"{path} has a symbolic class dimension ({classes!r}), so its labels cannot be "
                           f"checked; {SUPPORTED} (export it with a fixed class count)")


# ops whose trip count the model itself sets (a Loop of 2^62 trips never ends); no image classifier needs one
CONTROL_FLOW = ("Loop", "Scan", "TensorIterator")


def check_ops(path: Path, op_types: Iterable[str]) -> None:
    """EdgecnnError when the graph holds a control-flow op (read by both backends)."""
    found = sorted(set(op_types) & set(CONTROL_FLOW))
    if found:
        raise EdgecnnError(f"{path} holds a {found[0]} op (control flow that may never end); {SUPPORTED}, "
                           "without loops")


def error_reason(exc: BaseException) -> str:
    """A library's error in one short line: OpenVINO's "Exception from src/...:117:" location lines
    dropped (they came before the reason and cut it off), a C++ bad_alloc and ORT's "Failed to allocate"
    said in words."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    said = [line for line in lines if not line.startswith("Exception from ")] or lines
    reason = " ".join(said) if said else type(exc).__name__
    reason = reason if len(reason) <= 240 else "..." + reason[-237:]  # the cause comes last
    if reason == "std::bad_alloc" or "Failed to allocate memory" in reason:
        return f"out of memory ({reason})"
    return reason


def run_failed(path: Path, exc: Exception) -> EdgecnnError:
    """A model that fails while running (out of memory, a shape it rejects) in one line."""
    return EdgecnnError(f"{path} failed to run: {error_reason(exc)}; check the model (export it again)")


class Backend(Protocol):
    """A compiled model on one device: synchronous and overlapped inference."""

    name: str  # its registry name: "onnxruntime" | "openvino" | "triton"
    device: str  # what actually runs it, e.g. "CPUExecutionProvider", "CPU" or "127.0.0.1:8000"
    input: InputSpec
    num_outputs: int  # classes in the first output (the probabilities)
    output_names: tuple[str, ...]  # in the model's order; edgecnn: probabilities (, unknown_score)
    load_seconds: float  # read + compile time (a remote model: connect and read its configuration)
    compile_seconds: float  # the compile alone (load_seconds where the library does not split them)
    streams: int  # requests it runs at once: how many batches `submit` can usefully have in flight

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run one prepared batch and return the first output."""
        ...

    def infer_all(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run one prepared batch and return every output, in the model's order."""
        ...

    def submit(self, batch: np.ndarray) -> Future[np.ndarray]:
        """Start one batch without waiting; the future holds the first output."""
        ...

    def submit_all(self, batch: np.ndarray) -> Future[list[np.ndarray]]:
        """Start one batch without waiting; the future holds every output."""
        ...

    def close(self) -> None:
        """Wait for started work and free the model."""
        ...


def has_module(name: str) -> bool:
    """Whether a library is installed, without importing it (a backend's devices are probed cheaply)."""
    return importlib.util.find_spec(name) is not None


@dataclass(frozen=True)
class OpenRequest:
    """What selection resolved for one model file, handed to the chosen backend's `open`."""

    model_path: Path
    target: tuple[str, ...]  # the placement in the backend's words (ORT providers, an OpenVINO device)
    precision: str  # fp32 | fp16 | int8 | "" (a single file, precision not asked)
    threads: int | None = None
    cache_dir: str | Path | None = None
    hint: str = "latency"
    streams: int | None = None
    requests: int | None = None
    location: str = ""  # a remote model: what the user gave (triton://HOST:PORT/MODEL)
    # metadata text -> ModelMeta (None stays None): selection hands over metadata.py's one reader, so the
    # backends (which metadata.py itself uses to read files) never import it
    read_meta: Callable[[str | None], Any] = lambda text: text


# -> the backend and the model's embedded metadata (`request.read_meta` of its text; None: a foreign model)
Opener = Callable[[OpenRequest], "tuple[Backend, Any]"]
# export's check of a file on the CPU: (model, threads) -> run(frames, output name or None: the first)
Checker = Callable[[Any, int], Callable[["np.ndarray", "str | None"], "np.ndarray"]]


@dataclass(frozen=True)
class BackendEntry:
    """One backend as the rest of the code sees it; `registry.BACKENDS` holds one per backend module.

    `files` are the model files it opens, (suffix, how a list of choices names it, what such a file is),
    its native format first: a file goes to the backends whose native format it is before those that
    merely read it. `layout` is
    its place in a bundle, (precision, bundle-relative path), INT8 first. `devices()` must stay cheap (it
    runs on every `auto`); `target(device)` names a generic device in the library's words.
    """

    name: str
    module: str  # the library it needs installed
    distributions: tuple[str, ...]  # its pip names, for `info`'s versions
    open: Opener
    devices: Callable[[], list[str]]
    target: Callable[[str], tuple[str, ...]] = lambda device: (device.upper(),)
    files: tuple[tuple[str, str, str], ...] = ()
    layout: tuple[tuple[str, str], ...] = ()
    first_on: tuple[str, ...] = ()  # generic devices where `auto` tries it before the others
    runs_on_cpu: bool = True  # installed means it runs on the CPU (no device query needed)
    url_scheme: str = ""  # a remote backend: models are named SCHEME://..., not files
    url_form: str = ""  # how the user writes such a model, for messages
    device_strings: Callable[[str], tuple[str, str]] | None = None  # library device strings -> (kind, target)
    machine: Callable[[], dict[str, Any]] | None = None  # what `info` shows beyond the version
    check: Checker | None = None  # export's parity/latency check of a file it wrote (None: not exported)
    # A process's one-time work before its first open here that holds the GIL (the library's import),
    # done ahead by a run that may hot-swap its model (registry.warm_local); None: nothing to do ahead.
    warm: Callable[[], None] | None = None
