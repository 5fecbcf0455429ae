"""A checkpoint as a runtime `Engine`: the FP32 PyTorch reference that export checks every model against.

    engine, run = checkpoint_engine(Path("runs/demo/best.pt"))
    evaluate_folder(engine, Path("data"), run=run)        # `edgecnn eval runs/demo/best.pt data`

The model is `deployable(...)` exactly as export traces it (uint8 NHWC in, normalisation, softmax and the
unknown detector inside), behind the runtime's `Backend` interface, so eval scores a checkpoint through
the same `fit_frame` and code path as a bundle. Needs the [train] extra (PyTorch); the runtime itself
never imports this module.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
from edgecnn.runtime.core.backends.base import InputSpec
from edgecnn.runtime.core.bundle import RunSplit
from edgecnn.runtime.core.engine import Engine
from edgecnn.runtime.core.metadata import ModelMeta, none_class_of

REASON = "a checkpoint: its FP32 PyTorch model on the CPU, the reference export checks bundles against"


class TorchBackend:
    """A `deployable` PyTorch module as a runtime Backend: synchronous, on the CPU."""

    name = "pytorch"
    device = "cpu"

    def __init__(self, wrapped: Any, meta: ModelMeta, load_seconds: float) -> None:
        self.wrapped = wrapped
        height, width = meta.preprocess.input_size
        self.input = InputSpec("images", (None, height, width, 3), "uint8")
        self.num_outputs = len(meta.labels)
        self.output_names = ("probabilities",) + (("unknown_score",) if meta.unknown is not None else ())
        self.load_seconds = load_seconds

    def infer_all(self, batch: np.ndarray) -> list[np.ndarray]:
        import torch

        with torch.inference_mode():
            output = self.wrapped(torch.from_numpy(np.ascontiguousarray(batch)))
        return [part.numpy() for part in (output if isinstance(output, tuple) else (output,))]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.infer_all(batch)[0]

    def submit_all(self, batch: np.ndarray) -> Future[list[np.ndarray]]:
        """Runs at once (no request queue here): the future is already done."""
        return _ran(self.infer_all, batch)

    def submit(self, batch: np.ndarray) -> Future[np.ndarray]:
        return _ran(self.infer, batch)

    def close(self) -> None:
        pass


def _ran(call: Any, batch: np.ndarray) -> Future[Any]:
    future: Future[Any] = Future()
    try:
        future.set_result(call(batch))
    except Exception as exc:  # noqa: BLE001 - delivered through the future, like the other backends
        future.set_exception(exc)
    return future


def checkpoint_engine(path: Path, threads: int | None = None) -> tuple[Engine, RunSplit | None]:
    """The checkpoint's model with its own labels, preprocessing and unknown detector, and the run's split
    (None when the checkpoint records none)."""
    import torch
    from edgecnn.export.onnx import deployable
    from edgecnn.export.source import bundle_preprocess

    from edgecnn.checkpoint import load_checkpoint
    from edgecnn.unknown import score_module

    started = time.perf_counter()
    if threads is not None:
        torch.set_num_threads(threads)
    checkpoint = load_checkpoint(Path(path))
    detector = checkpoint.unknown
    preprocess = bundle_preprocess(checkpoint.preprocess)
    unknown = score_module(detector.rule, detector.tensors) if detector is not None else None
    wrapped = deployable(checkpoint.build_model(), preprocess, unknown)
    meta = ModelMeta(labels=tuple(checkpoint.labels), preprocess=preprocess, arch=checkpoint.arch,
                     precision="fp32", unknown=detector.meta() if detector is not None else None,
                     none_class=none_class_of(checkpoint.labels))
    backend = TorchBackend(wrapped, meta, time.perf_counter() - started)
    run = checkpoint.split.run_split() if checkpoint.split is not None else None
    return Engine(backend, meta, Path(path), REASON, "cpu"), run
