"""Every backend edgecnn can run a model on, one `BackendEntry` each; the rest of the code iterates these.

The order is the preference among equals: a bundle's models rank OpenVINO, then ONNX Runtime (bundle.LAYOUT
follows it), and `auto` on the CPU tries them in this order. A new backend is one module in this folder
(its `Backend` class and `ENTRY`) plus one line here.
"""

from __future__ import annotations

from edgecnn.runtime.core.backends import onnxruntime, openvino, triton
from edgecnn.runtime.core.backends.base import BackendEntry
from edgecnn.runtime.core.errors import EdgecnnError

BACKENDS: tuple[BackendEntry, ...] = (openvino.ENTRY, onnxruntime.ENTRY, triton.ENTRY)
NAMES = tuple(entry.name for entry in BACKENDS)


def entry(name: str) -> BackendEntry:
    """The entry called `name`; EdgecnnError listing the choices otherwise."""
    for found in BACKENDS:
        if found.name == name:
            return found
    raise EdgecnnError(f"unknown backend {name!r}; choose one of {', '.join(('auto', *NAMES))}")


def local() -> tuple[BackendEntry, ...]:
    """The backends that run model files on this machine (not through a server)."""
    return tuple(found for found in BACKENDS if not found.url_scheme)


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
    for found in BACKENDS:
        if found.url_scheme and location.lower().startswith(f"{found.url_scheme}:/"):
            return found
    return None


def file_kinds() -> str:
    """What a model can be, for messages: 'a bundle folder, a .onnx, an OpenVINO .xml or triton://...'."""
    kinds = ["a bundle folder"]
    for found in BACKENDS:
        words = [f[1] for f in found.files] + ([found.url_form] if found.url_form else [])
        kinds += [w for w in words if w not in kinds]
    return ", ".join(kinds[:-1]) + " or " + kinds[-1]


def exported() -> tuple[BackendEntry, ...]:
    """The backends export writes files for and checks (each has a `check`)."""
    return tuple(found for found in BACKENDS if found.check is not None)
