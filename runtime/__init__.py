"""edgecnn.runtime: the torch-free engine that runs exported bundles on CPU, GPU and NPU."""

from edgecnn.runtime.errors import EdgecnnError

__all__ = ["EdgecnnError"]
