"""Re-export of the runtime's error type, so training code and runtime share one."""

from edgecnn.runtime.core.errors import EdgecnnError

__all__ = ["EdgecnnError"]
