"""Proof that exported models compute what PyTorch computes: accuracy, parity, latency, size.

All models see the same fitted validation batches, decoded once; each is compared with the
PyTorch model on probabilities (max abs difference), top-1 agreement, and, where the images are
labelled, top-1/top-5 accuracy. Latency is the median of batch-1 runs on 2 threads.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from edgecnn.export.gate import AgreementTally
from edgecnn.export.images import ImageSet, batches
from edgecnn.runtime.core.bundle import Int8Agreement, ModelReport
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.metadata import Preprocess

Predict = Callable[[np.ndarray], np.ndarray]  # uint8 NHWC batch -> probabilities
THREADS = 2


@dataclass(frozen=True)
class Candidate:
    """An exported model to check: its name in the report, file, and a batch -> probabilities function."""

    name: str  # e.g. "onnx int8"
    backend: str  # "onnxruntime" | "openvino"
    precision: str  # "fp32" | "int8"
    path: Path
    predict: Predict
    files: tuple[Path, ...]  # everything on disk that the model needs (.xml + .bin)
    parent: str | None = None  # the FP32 model an INT8 model was quantised from
    unknown_threshold: float | None = None  # INT8: the unknown threshold its gate kept (None: FP32's)


@dataclass
class Tally:
    """Running sums for one model over the validation batches."""

    top1: list[int] = field(default_factory=list)
    top5_hits: int = 0
    max_abs_diff: float = 0.0
    versus_parent: AgreementTally | None = None  # INT8 only: against its FP32 parent, image by image


def compare_on_images(reference: Predict, candidates: list[Candidate], images: ImageSet,
                      preprocess: Preprocess, batch: int) -> tuple[dict[str, Tally], list[int], list[int]]:
    """Run PyTorch (`reference`) and every candidate over the images: tallies, PyTorch's top-1, targets."""
    names = {c.name for c in candidates}
    tallies = {c.name: Tally(versus_parent=AgreementTally() if c.parent in names else None)
               for c in candidates}
    reference_top1: list[int] = []
    targets: list[int] = []
    for frames, batch_targets in batches(images, preprocess, batch):
        keep = batch_targets != -2  # drop the padding of the last batch
        expected = reference(frames)[keep]
        reference_top1 += expected.argmax(1).tolist()
        targets += batch_targets[keep].tolist()
        outputs = {c.name: c.predict(frames)[keep] for c in candidates}
        for candidate in candidates:
            tally = tallies[candidate.name]
            _tally(tally, outputs[candidate.name], expected, batch_targets[keep])
            if tally.versus_parent is not None:
                tally.versus_parent.add(outputs[candidate.parent], outputs[candidate.name],
                                        batch_targets[keep])
    return tallies, reference_top1, targets


def _tally(tally: Tally, probabilities: np.ndarray, expected: np.ndarray, targets: np.ndarray) -> None:
    tally.top1 += probabilities.argmax(1).tolist()
    top5 = np.argsort(-probabilities, axis=1)[:, :5]
    tally.top5_hits += int((top5 == targets[:, None]).any(1).sum())
    tally.max_abs_diff = max(tally.max_abs_diff, float(np.abs(probabilities - expected).max()))


def measure(candidates: list[Candidate], tallies: dict[str, Tally], reference_top1: list[int],
            targets: list[int], num_classes: int, labelled: bool, latency: dict[str, float],
            root: Path) -> list[ModelReport]:
    """Turn tallies into report figures (paths relative to the bundle folder `root`); no verdicts yet."""
    count = len(targets)
    truth, ref = np.array(targets), np.array(reference_top1)
    results = []
    for c in candidates:
        top1 = np.array(tallies[c.name].top1)
        parent = np.array(tallies[c.parent].top1) if c.parent in tallies else None
        versus = tallies[c.name].versus_parent
        results.append(ModelReport(
            name=c.name, backend=c.backend, precision=c.precision, path=c.path.relative_to(root).as_posix(),
            top1=_percent(top1 == truth) if labelled else None,
            top5=100.0 * tallies[c.name].top5_hits / count if labelled and num_classes > 5 else None,
            agreement=_percent(top1 == ref),
            agreement_fp32=None if parent is None else _percent(top1 == parent),
            max_abs_diff=tallies[c.name].max_abs_diff, latency_ms=latency[c.name],
            size_bytes=sum(f.stat().st_size for f in c.files), val_images=count, parent=c.parent,
            gate=None if versus is None else versus.result(labelled)))
    return results


def _percent(hits: np.ndarray) -> float:
    return round(100.0 * float(hits.mean()), 3) if hits.size else 0.0


def median_latency_ms(predict: Predict, frames: np.ndarray, runs: int = 30, budget_s: float = 2.5) -> float:
    """Median wall time of one call on `frames` after a warm-up (stops early after `budget_s`)."""
    for _ in range(3):
        predict(frames)
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < runs and (len(times) < 5 or time.perf_counter() < deadline):
        start = time.perf_counter()
        predict(frames)
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def predictor(backend: str, model: Path | object) -> Predict:
    """uint8 NHWC batch -> probabilities, through the backend's own check set-up (its registry entry's
    `check`: the runtime's session or compile settings, on the CPU at THREADS threads)."""
    run = _check_runner(backend, model)
    return lambda frames: run(frames, None)


def onnx_predictor(path: Path) -> Predict:
    return predictor("onnxruntime", path)


def openvino_predictor(model: Path | object) -> Predict:
    """An IR file or an in-memory `openvino.Model` (f32 execution: see openvino.check_runner)."""
    return predictor("openvino", model)


def _check_runner(backend: str, model: Path | object) -> Callable[[np.ndarray, str | None], np.ndarray]:
    from edgecnn.runtime.core.backends import registry

    check = registry.entry(backend).check
    if check is None:
        raise EdgecnnError(f"export does not check {backend} models; choose one of "
                           f"{', '.join(e.name for e in registry.exported())}")
    return check(model, THREADS)


def torch_predictor(wrapped: object, threads: int = THREADS) -> Predict:
    """PyTorch probabilities of the deployable model, at THREADS threads like the others (its latency is
    compared with theirs) unless told otherwise."""
    import torch

    torch.set_num_threads(threads)

    def predict(frames: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            output = wrapped(torch.from_numpy(frames))
        return (output[0] if isinstance(output, tuple) else output).numpy()  # probabilities, then unknown

    return predict


def reference_outputs(predict: Predict, images: ImageSet, preprocess: Preprocess,
                      batch: int) -> tuple[np.ndarray, np.ndarray]:
    """An FP32 model's probabilities on every readable image, and the images' targets (-1: no label)."""
    probabilities, targets = [], []
    for frames, batch_targets in batches(images, preprocess, batch):
        keep = batch_targets != -2
        probabilities.append(predict(frames)[keep])
        targets.append(batch_targets[keep])
    if not probabilities:
        return np.zeros((0, 0), np.float32), np.zeros(0, int)
    return np.concatenate(probabilities), np.concatenate(targets)


def compare_with(reference: tuple[np.ndarray, np.ndarray], int8: Predict, images: ImageSet,
                 preprocess: Preprocess, batch: int, labelled: bool) -> Int8Agreement:
    """An INT8 model against its FP32 parent's `reference_outputs` on the same images."""
    fp32, targets = reference
    tally, start = AgreementTally(), 0
    for frames, batch_targets in batches(images, preprocess, batch):
        keep = batch_targets != -2
        count = int(keep.sum())
        tally.add(fp32[start:start + count], int8(frames)[keep], targets[start:start + count])
        start += count
    return tally.result(labelled)


def scorer(backend: str, model: Path | object) -> Predict:
    """uint8 NHWC batch -> the model's `unknown_score` output (same set-up as `predictor`)."""
    from edgecnn.export.onnx import UNKNOWN_OUTPUT

    run = _check_runner(backend, model)
    return lambda frames: run(frames, UNKNOWN_OUTPUT)


def unknown_scores(score: Predict, images: ImageSet, preprocess: Preprocess, batch: int) -> np.ndarray:
    """The unknown score of every readable image, in order."""
    found = [score(frames)[targets != -2] for frames, targets in batches(images, preprocess, batch)]
    return np.concatenate(found) if found else np.zeros(0, np.float32)


def unknown_agreement(candidates: list[Candidate], images: ImageSet, preprocess: Preprocess, batch: int,
                      threshold: float) -> dict[str, dict[str, float]]:
    """Per model: its threshold (`threshold`, or an INT8 model's own), the share of `images` it calls
    unknown and, for INT8, the share whose unknown decision equals its FP32 parent's."""
    thresholds = {c.name: threshold if c.unknown_threshold is None else c.unknown_threshold
                  for c in candidates}
    decisions = {c.name: unknown_scores(scorer(c.backend, c.path), images, preprocess, batch)
                 > thresholds[c.name] for c in candidates}
    result: dict[str, dict[str, float]] = {}
    for c in candidates:
        entry = {"threshold": thresholds[c.name], "unknown_percent": _percent(decisions[c.name])}
        if c.parent in decisions:
            entry["decision_agreement_fp32"] = _percent(decisions[c.name] == decisions[c.parent])
        result[c.name] = entry
    return result
