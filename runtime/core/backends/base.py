"""The one interface every inference library is wrapped behind."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from edgecnn.runtime.core.errors import EdgecnnError

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


class Backend(Protocol):
    """A compiled model on one device: synchronous and overlapped inference."""

    name: str  # "onnxruntime" | "openvino"
    device: str  # what actually runs it, e.g. "CPUExecutionProvider" or "CPU"
    input: InputSpec
    num_outputs: int  # classes in the first output (the probabilities)
    output_names: tuple[str, ...]  # in the model's order; edgecnn: probabilities (, unknown_score)
    load_seconds: float  # read + compile time

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
