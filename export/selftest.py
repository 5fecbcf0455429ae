"""Write the bundle's self-test (runtime/core/selftest.py): reference frames shrunk from validation images,
the FP32 ONNX file's top outputs on them, and per model file a tolerance of DRIFT_MARGIN x its drift
measured here. Export then writes the file's SHA-256 into every model's metadata (export/bundle.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from edgecnn.runtime.core.bundle import layout_path
from edgecnn.runtime.core.outputs import write_text_atomic
from edgecnn.runtime.core.selftest import (
    DRIFT_MARGIN,
    FP32_TOLERANCE,
    FRAME_SIZE,
    OWN_TOLERANCE,
    SELFTEST_JSON,
    SelfTest,
    reference_outputs,
    top_classes,
)

REFERENCE_FRAMES = 4


def reference_frames(paths: tuple[Path, ...]) -> tuple[np.ndarray, tuple[str, ...]]:
    """REFERENCE_FRAMES validation images spread over the set, each shrunk to FRAME_SIZE square."""
    import cv2
    from edgecnn.runtime.core.images import read_image

    step = max(1, len(paths) // REFERENCE_FRAMES)
    chosen = paths[::step][:REFERENCE_FRAMES]
    size = (FRAME_SIZE, FRAME_SIZE)
    frames = [cv2.resize(read_image(p), size, interpolation=cv2.INTER_AREA) for p in chosen]
    return np.stack(frames).astype(np.uint8), tuple(p.name for p in chosen)


def write_selftest(work: Path, validation_paths: tuple[Path, ...], model_paths: list[str]) -> SelfTest:
    """Run the references through every model file in `work` and store selftest.json beside them."""
    from edgecnn.runtime.core.engine import load

    frames, names = reference_frames(validation_paths)
    fp32 = layout_path("onnxruntime", "fp32")
    with load(work / fp32, backend="onnxruntime", device="cpu") as engine:
        scored = reference_outputs(engine, frames)
    classes = top_classes(scored.probabilities)
    tolerances, own = {fp32: FP32_TOLERANCE}, {}
    for path in model_paths:
        if path != fp32:
            with load(work / path, device="cpu") as engine:
                runs = [reference_outputs(engine, frames).probabilities for _ in range(2)]
            own[path] = np.take_along_axis(runs[0], classes, axis=1).astype(np.float32)
            tolerances[path] = max(OWN_TOLERANCE, DRIFT_MARGIN * float(np.abs(runs[0] - runs[1]).max()))
    unknown = None if scored.unknown_score is None else scored.unknown_score.astype(np.float32)
    test = SelfTest(frames, names, classes, np.take_along_axis(scored.probabilities, classes, axis=1),
                    unknown, tolerances, own)
    import json

    write_text_atomic(work / SELFTEST_JSON, json.dumps(test.to_dict()))
    return test
