"""A bundle's self-test: a few reference frames and the outputs every model file must give on them.

    drift = run_selftest(engine)          # EdgecnnError when a model drifts beyond its tolerance

Export writes `selftest.json` (4 tiny uint8 frames shrunk from validation images, per frame the FP32
ONNX file's TOP_CLASSES largest probabilities and their classes, the unknown scores, and one tolerance
per model file derived from that file's measured drift at export): about 4 KB. Each model file's
metadata carries the file's SHA-256 (`ModelMeta.selftest_sha256`), so the data is covered by the file
it tests: altered weights change the outputs, an altered or missing selftest.json breaks the digest.
`camera`, `serve` and `info --check` run the frames on the backend and device they picked, so altered
weights, a broken driver or a wrong device plugin is refused before the first frame. Torch-free.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from edgecnn.runtime.core.errors import EdgecnnError

SELFTEST_JSON = "selftest.json"
SELFTEST_SCHEMA = 2  # 2: the top classes only, rounded (1: every class, full floats; still read)
FRAME_SIZE = 16  # pixels a side: the graph's input is reached through fit_frame, like any camera frame
# a changed weight moves the largest probabilities; the other classes share what is left of 1
TOP_CLASSES = 5
DIGITS = 6  # stored probabilities rounded to 5e-7: 200x below FP32_TOLERANCE
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
    classes: np.ndarray  # N x K class indices: the FP32 file's top classes on each frame
    probabilities: np.ndarray  # N x K, FP32 ONNX, at `classes`
    unknown_scores: np.ndarray | None
    tolerances: dict[str, float]  # bundle-relative model path -> largest allowed abs difference
    own: dict[str, np.ndarray] | None = None  # FP16/INT8 files: own probabilities at export, at `classes`

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SELFTEST_SCHEMA, "shape": list(self.frames.shape), "names": list(self.names),
                "frames": base64.b64encode(self.frames.tobytes()).decode("ascii"),
                "classes": self.classes.tolist(), "probabilities": _rounded(self.probabilities),
                "unknown_scores": None if self.unknown_scores is None else _rounded(self.unknown_scores),
                "tolerances": self.tolerances,
                "own": {k: _rounded(v) for k, v in (self.own or {}).items()}}


def _rounded(values: np.ndarray) -> Any:
    return np.round(values.astype(np.float64), DIGITS).tolist()


def top_classes(probabilities: np.ndarray) -> np.ndarray:
    """Per row, the indices of its TOP_CLASSES largest probabilities (all of them for fewer classes)."""
    k = min(TOP_CLASSES, probabilities.shape[1])
    return np.argsort(-probabilities, axis=1, kind="stable")[:, :k]


def selftest_digest(folder: Path) -> str:
    """SHA-256 of the bundle's selftest.json, as export writes it into each model's metadata."""
    return hashlib.sha256((folder / SELFTEST_JSON).read_bytes()).hexdigest()


def read_selftest(folder: Path) -> SelfTest | None:
    """The bundle's self-test data, or None for a bundle exported before it had one."""
    path = folder / SELFTEST_JSON
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("schema") not in (1, SELFTEST_SCHEMA):
            raise EdgecnnError(f"{path}: self-test schema {data.get('schema')} is not readable here; "
                               "upgrade edgecnn or re-export the bundle")
        frames = np.frombuffer(base64.b64decode(data["frames"]), np.uint8).reshape(data["shape"])
        scores = data["unknown_scores"]
        probabilities = np.asarray(data["probabilities"], np.float32)
        every = np.tile(np.arange(probabilities.shape[1]), (len(probabilities), 1))  # schema 1
        return SelfTest(frames, tuple(data["names"]), np.asarray(data.get("classes", every), np.int64),
                        probabilities, None if scores is None else np.asarray(scores, np.float32),
                        {str(k): float(v) for k, v in data["tolerances"].items()},
                        {str(k): np.asarray(v, np.float32) for k, v in data.get("own", {}).items()})
    except (ValueError, KeyError, TypeError, IndexError) as exc:
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


def reference_outputs(engine: Any, frames: np.ndarray) -> Any:
    """The engine's `Scored` outputs on the reference frames (fit_frame each, as any camera frame), run at
    the batch size the engine already runs (its fixed batch, else 1), not all at once: OpenVINO compiles
    each batch size apart, so one batch of 4 was a second compile (0.1-0.7 s of both cores, during a hot
    swap too) and a second compiled model kept for the engine's life. The outputs are the same either
    way (measured: equal to the bit at batch 1 and 4 on every model file of two bundles, both backends).
    Export stores what this gives, so the runtime checks the same runs."""
    from edgecnn.runtime.core.engine import Scored
    from edgecnn.runtime.core.preprocess import fit_batch

    batch = fit_batch(list(frames), engine.preprocess)
    size = engine.fixed_batch or 1
    parts = [engine.infer_scored(batch[i:i + size]) for i in range(0, len(batch), size)]
    scores = None if parts[0].unknown_score is None else np.concatenate([p.unknown_score for p in parts])
    return Scored(np.concatenate([p.probabilities for p in parts]), scores)


def measure_drift(engine: Any, test: SelfTest, tolerance: float, relative: str = "") -> list[Drift]:
    """Each reference frame through the engine (`reference_outputs`), against the file's own outputs at
    export (FP16/INT8) or the FP32 ones."""
    scored = reference_outputs(engine, test.frames)
    own = (test.own or {}).get(relative)
    expected = test.probabilities if own is None else own
    probabilities = np.asarray(scored.probabilities, np.float32)
    if test.classes.size and int(test.classes.max()) >= probabilities.shape[1]:
        raise EdgecnnError(f"self-test failed: {relative} gives {probabilities.shape[1]} classes but its "
                           "self-test data names more; re-export the bundle")
    actual = np.take_along_axis(probabilities, test.classes, axis=1)
    diffs = np.abs(actual - expected).max(axis=1)
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
    test = _covered_selftest(folder, relative, engine.meta.selftest_sha256, say)
    if test is None:
        return []
    tolerance = test.tolerances.get(relative)
    if tolerance is None:
        raise EdgecnnError(f"{folder / SELFTEST_JSON} has no tolerance for {relative}; re-export the bundle")
    drift = measure_drift(engine, test, tolerance, relative)  # altered weights: different outputs
    worst = max(drift, key=lambda d: d.max_abs_diff)
    if not worst.passed:
        raise EdgecnnError(
            f"self-test failed: {relative} on {engine.backend} {engine.device} is {worst.max_abs_diff:.3g} "
            f"off on reference '{worst.name}' (tolerance {tolerance:.3g}); the model file was changed after "
            "export or the device's driver/plugin is wrong: re-export the bundle or pick another "
            "--device/--backend")
    return drift


def _covered_selftest(folder: Path, relative: str, digest: str, say: Any) -> SelfTest | None:
    """The self-test data if it is the one the model file names (its SHA-256); None, with a note, for a
    bundle exported before there was any; an old bundle's uncovered data is run, with a note."""
    path = folder / SELFTEST_JSON
    if not path.is_file():
        if digest:
            raise EdgecnnError(f"{path} is missing but {relative} was exported with one; the bundle was "
                               "changed after export: re-export it")
        if say is not None:
            say(f"note: {folder} has no self-test data (exported before edgecnn had one); "
                "re-export to get one")
        return None
    if not digest:
        if say is not None:
            say(f"note: {relative} does not carry its self-test data's SHA-256 (exported before edgecnn "
                "covered it), so a changed selftest.json goes unnoticed; re-export to get one")
    elif selftest_digest(folder) != digest:
        raise EdgecnnError(f"{path} is not the self-test data {relative} was exported with (SHA-256 "
                           "differs); the bundle was changed after export: re-export it")
    return read_selftest(folder)
