"""A bundle's self-test: a few reference frames and the outputs every model file must give on them.

    drift = run_selftest(engine)          # EdgecnnError when a model drifts beyond its tolerance

Export writes `selftest.json` (4 small uint8 frames cropped from validation images, the FP32 ONNX
probabilities and unknown scores, and one tolerance per model file derived from that file's measured
drift at export). `camera`, `serve` and `info --check` run the frames on the backend and device they
picked, so altered weights, a broken driver or a wrong device plugin is refused before the first frame.
Torch-free.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from edgecnn.runtime.core.errors import EdgecnnError

SELFTEST_JSON = "selftest.json"
SELFTEST_SCHEMA = 1
FRAME_SIZE = 32  # pixels a side: the graph's input is reached through fit_frame, like any camera frame
FP32_TOLERANCE = 1e-4  # the same FP32 ONNX file on another machine: float rounding only
# FP16 / INT8 files are checked against their own outputs at export (their drift from FP32 can be far
# larger than any damage worth catching): OWN_TOLERANCE, or DRIFT_MARGIN x their own rerun jitter.
OWN_TOLERANCE = 2e-3
DRIFT_MARGIN = 3.0


@dataclass(frozen=True)
class SelfTest:
    """Reference frames, the outputs they must give, and each model file's tolerance."""

    frames: np.ndarray  # N x FRAME_SIZE x FRAME_SIZE x 3 uint8 RGB
    names: tuple[str, ...]  # where each frame came from, for messages
    probabilities: np.ndarray  # N x classes, FP32 ONNX
    unknown_scores: np.ndarray | None
    tolerances: dict[str, float]  # bundle-relative model path -> largest allowed abs difference
    own: dict[str, np.ndarray] | None = None  # FP16/INT8 files: their own probabilities at export

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SELFTEST_SCHEMA, "shape": list(self.frames.shape), "names": list(self.names),
                "frames": base64.b64encode(self.frames.tobytes()).decode("ascii"),
                "probabilities": self.probabilities.tolist(),
                "unknown_scores": None if self.unknown_scores is None else self.unknown_scores.tolist(),
                "tolerances": self.tolerances,
                "own": {k: v.tolist() for k, v in (self.own or {}).items()}}


def read_selftest(folder: Path) -> SelfTest | None:
    """The bundle's self-test data, or None for a bundle exported before it had one."""
    path = folder / SELFTEST_JSON
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("schema") != SELFTEST_SCHEMA:
            raise EdgecnnError(f"{path}: self-test schema {data.get('schema')} is not readable here; "
                               "upgrade edgecnn or re-export the bundle")
        frames = np.frombuffer(base64.b64decode(data["frames"]), np.uint8).reshape(data["shape"])
        scores = data["unknown_scores"]
        return SelfTest(frames, tuple(data["names"]), np.asarray(data["probabilities"], np.float32),
                        None if scores is None else np.asarray(scores, np.float32),
                        {str(k): float(v) for k, v in data["tolerances"].items()},
                        {str(k): np.asarray(v, np.float32) for k, v in data.get("own", {}).items()})
    except (ValueError, KeyError, TypeError) as exc:
        raise EdgecnnError(f"{path} is damaged ({exc}); re-export the bundle") from exc


def bundle_of(model_path: Path) -> tuple[Path, str] | None:
    """The bundle folder holding `model_path` and the file's path inside it (None: a lone model file)."""
    for folder in (model_path.parent, model_path.parent.parent):
        if (folder / SELFTEST_JSON).is_file() or (folder / "report.json").is_file():
            return folder, model_path.relative_to(folder).as_posix()
    return None


@dataclass(frozen=True)
class Drift:
    """How far one reference frame's outputs are from the stored ones."""

    name: str
    max_abs_diff: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance


def measure_drift(engine: Any, test: SelfTest, tolerance: float, relative: str = "") -> list[Drift]:
    """Each reference frame through the engine (fit_batch + one run), against the file's own outputs at
    export (FP16/INT8) or the FP32 ones."""
    from edgecnn.runtime.core.preprocess import fit_batch

    scored = engine.infer_scored(fit_batch(list(test.frames), engine.preprocess))
    own = (test.own or {}).get(relative)
    expected = test.probabilities if own is None else own
    diffs = np.abs(np.asarray(scored.probabilities, np.float32) - expected).max(axis=1)
    if own is None and test.unknown_scores is not None and scored.unknown_score is not None:
        diffs = np.maximum(diffs, np.abs(scored.unknown_score - test.unknown_scores))
    diffs = np.where(np.isfinite(diffs), diffs, np.inf)
    return [Drift(name, float(diff), tolerance) for name, diff in zip(test.names, diffs, strict=True)]


def run_selftest(engine: Any, say: Any = None) -> list[Drift]:
    """Run the bundle's references on `engine`; EdgecnnError (one line) when any drifts beyond tolerance.
    Bundles without self-test data pass with one note through `say` (empty list)."""
    found = bundle_of(Path(engine.model_path))
    if found is None:
        return []
    folder, relative = found
    test = read_selftest(folder)
    if test is None:
        if say is not None:
            say(f"note: {folder} has no self-test data (exported before edgecnn had one); "
                "re-export to get one")
        return []
    tolerance = test.tolerances.get(relative)
    if tolerance is None:
        raise EdgecnnError(f"{folder / SELFTEST_JSON} has no tolerance for {relative}; re-export the bundle")
    drift = measure_drift(engine, test, tolerance, relative)
    worst = max(drift, key=lambda d: d.max_abs_diff)
    if not worst.passed:
        raise EdgecnnError(
            f"self-test failed: {relative} on {engine.backend} {engine.device} is {worst.max_abs_diff:.3g} "
            f"off on reference '{worst.name}' (tolerance {tolerance:.3g}); the model file was changed after "
            "export or the device's driver/plugin is wrong: re-export the bundle or pick another "
            "--device/--backend")
    return drift
