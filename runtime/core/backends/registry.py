"""Every backend edgecnn can run a model on, one `BackendEntry` each; the rest of the code iterates these.

The order is the preference among equals: a bundle's models rank OpenVINO, then ONNX Runtime (bundle.LAYOUT
follows it), and `auto` on the CPU tries them in this order. A new backend is one module in this folder
(its `Backend` class and `ENTRY`, named as the module) plus its name in `NAMES`.

The modules are imported on first use of `BACKENDS`: the CLI lists `NAMES` in `--help` without them
(they import numpy: `edgecnn --help` took 550 ms with them, 350 ms without).
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

from edgecnn.runtime.core.backends.base import BackendEntry, has_module
from edgecnn.runtime.core.errors import EdgecnnError

NAMES = ("openvino", "onnxruntime", "triton")  # each a module here whose ENTRY has that name


@functools.cache
def _entries() -> tuple[BackendEntry, ...]:
    return tuple(importlib.import_module(f"{__package__}.{name}").ENTRY for name in NAMES)


def __getattr__(name: str) -> Any:
    """`registry.BACKENDS`: every entry, in preference order (imported on first use)."""
    if name == "BACKENDS":
        return _entries()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def entry(name: str) -> BackendEntry:
    """The entry called `name`; EdgecnnError listing the choices otherwise."""
    for found in _entries():
        if found.name == name:
            return found
    raise EdgecnnError(f"unknown backend {name!r}; choose one of {', '.join(('auto', *NAMES))}")


def local() -> tuple[BackendEntry, ...]:
    """The backends that run model files on this machine (not through a server)."""
    return tuple(found for found in _entries() if not found.url_scheme)


def for_file(suffix: str) -> tuple[BackendEntry, ...]:
    """The backends that open a model file with this suffix, those whose native format it is first."""
    suffix = suffix.lower()
    readers = [found for found in local() if suffix in [f[0] for f in found.files]]
    return tuple(sorted(readers, key=lambda found: [f[0] for f in found.files].index(suffix)))


def file_kind(suffix: str) -> str:
    """What a model file with this suffix is, in words ("an OpenVINO IR"); "" for none."""
    return next((f[2] for found in local() for f in found.files if f[0] == suffix.lower()), "")


def for_location(location: str) -> BackendEntry | None:
    """The remote backend a model location such as triton://HOST:PORT/MODEL names (None: a local path).

    A Path collapses "//" ("triton:/HOST:PORT/MODEL"), so one slash after the colon is enough.
    """
    for found in _entries():
        if found.url_scheme and location.lower().startswith(f"{found.url_scheme}:/"):
            return found
    return None


def file_kinds() -> str:
    """What a model can be, for messages: 'a bundle folder, a .onnx, an OpenVINO .xml or triton://...'."""
    kinds = ["a bundle folder"]
    for found in _entries():
        words = [f[1] for f in found.files] + ([found.url_form] if found.url_form else [])
        kinds += [w for w in words if w not in kinds]
    return ", ".join(kinds[:-1]) + " or " + kinds[-1]


def exported() -> tuple[BackendEntry, ...]:
    """The backends export writes files for and checks (each has a `check`)."""
    return tuple(found for found in _entries() if found.check is not None)


def warm_local() -> None:
    """Do every installed local backend's one-time work now (`BackendEntry.warm`), for a run that may
    hot-swap its model: a new model that picks a backend this process has not used yet would otherwise
    import the library on the swapper's thread while the camera runs, and Python imports an extension
    module holding the GIL: onnxruntime's import held it 26-75 ms in one piece, openvino's 14-44 ms
    (benchmarks/README.md, "Hot model swap"): a frame of a 27 fps camera lost. Costs the start 0.02-0.24 s
    and RSS: onnxruntime +29 MB, openvino +23 MB (measured on 2 loaded cores). A library that fails here
    is left alone: the swap to it says why.
    """
    for found in local():
        if found.warm is not None and has_module(found.module):
            try:
                found.warm()
            except Exception:  # noqa: BLE001 - only a head start: the open that needs it reports the error
                continue
