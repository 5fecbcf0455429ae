"""edgecnn.runtime: the torch-free engine that runs exported bundles on CPU, GPU and NPU.

`load`, `Engine` and `Prediction` are imported on first use, so `import edgecnn.runtime` stays cheap
and pulls in neither ONNX Runtime nor OpenVINO until a model is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgecnn.runtime.core.errors import EdgecnnError

if TYPE_CHECKING:
    from edgecnn.runtime.core.engine import Engine, Prediction, load

__all__ = ["EdgecnnError", "Engine", "Prediction", "load"]


def __getattr__(name: str) -> Any:
    if name in ("Engine", "Prediction", "load"):
        from edgecnn.runtime.core import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'edgecnn.runtime' has no attribute {name!r}")
