"""`load()`: one door to a model (bundle folder, .onnx, OpenVINO .xml, or a served triton://HOST:PORT/MODEL)
and the `Engine` it returns.

    engine = load("bundles/demo")                    # fastest accurate model for the best device
    engine.classify(frame, top_k=3, bgr=True)        # any size, one frame or a list -> [Classification]
    probabilities = engine.infer(batch)              # N x H x W x 3 uint8, already fitted
    scored = engine.infer_scored(batch)              # .probabilities and .unknown_score (None: no detector)
    future = engine.submit(batch)                    # overlapped: concurrent.futures.Future[np.ndarray]
    engine.infer_async(batch, callback)              # callback(probabilities) on a worker thread
    engine.wait()                                    # every infer_async started so far has finished

`submit` returns at once while a request is free (OpenVINO: an AsyncInferQueue sized by the device's
optimal request count, at least 2; ONNX Runtime: one worker thread), so a camera loop can grab and
fit the next frame while the current one runs; with every request busy it waits for one. Callbacks
of `infer_async` run on the backend's worker thread; `wait()` re-raises the first error they raised.
`infer` is synchronous and meant for one calling thread at a time; `close()` (or `with load(...)`)
waits for started work. `auto` choices are explained in `engine.reason`.

A model with a none class (ModelMeta.none_class: a class folder named none or background) marks its
predictions of that class `none`; every display then says "none" instead of a detection.
A model with an unknown detector (ModelMeta.unknown) has a second output, `unknown_score`; each
`Classification` then says whether the image is none of the labels (`unknown`, score above the model's
threshold). Models without one (older bundles, foreign ONNX) give `unknown_score=None, unknown=False`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from edgecnn.runtime.core.backends.base import Backend
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.metadata import ModelMeta, Preprocess
from edgecnn.runtime.core.preprocess import fit_batch


@dataclass(frozen=True)
class Prediction:
    index: int
    label: str
    probability: float
    none: bool = False  # the model's none class ("nothing of interest"): shown as "none", not a detection


@dataclass(frozen=True)
class Classification(Sequence[Prediction]):
    """One image's top-k predictions (a sequence of them) and the unknown detector's verdict."""

    predictions: tuple[Prediction, ...]
    unknown_score: float | None = None  # higher = more likely none of the labels; None: no detector
    unknown: bool = False  # unknown_score above the model's threshold

    def __getitem__(self, index):
        return self.predictions[index]

    def __len__(self) -> int:
        return len(self.predictions)


@dataclass(frozen=True)
class Scored:
    """A batch's outputs: probabilities [N, classes] and unknown scores [N] (None without a detector)."""

    probabilities: np.ndarray
    unknown_score: np.ndarray | None = None


class Engine:
    """A loaded model on one backend and device: labels, preprocessing, sync and overlapped inference."""

    def __init__(self, backend: Backend, meta: ModelMeta, model_path: Path, reason: str = "",
                 device_kind: str = "cpu") -> None:
        self._backend = backend
        self.meta = meta
        self.model_path = model_path
        self.reason = reason  # what `auto` picked, in words
        self.device_kind = device_kind  # "cpu" | "gpu" | "npu", as `--device` names it
        self._pending: set[Future[np.ndarray]] = set()
        self._errors: list[BaseException] = []
        self._lock = threading.Lock()
        names = backend.output_names
        output = meta.unknown.output if meta.unknown is not None else None
        self._score_index = names.index(output) if output in names else None

    # -- what it is --------------------------------------------------------------------------
    @property
    def labels(self) -> tuple[str, ...]:
        return self.meta.labels

    @property
    def preprocess(self) -> Preprocess:
        return self.meta.preprocess

    @property
    def input_size(self) -> tuple[int, int]:
        return self.meta.preprocess.input_size

    @property
    def backend(self) -> str:
        return self._backend.name

    @property
    def device(self) -> str:
        return self._backend.device

    @property
    def load_seconds(self) -> float:
        return self._backend.load_seconds

    @property
    def compile_seconds(self) -> float:
        return self._backend.compile_seconds

    @property
    def streams(self) -> int:
        """Requests that run at once: how many batches `submit` can usefully have in flight."""
        return self._backend.streams

    @property
    def fixed_batch(self) -> int | None:
        return self._backend.input.fixed_batch

    @property
    def unknown_threshold(self) -> float | None:
        """Scores above this mean "none of the labels"; None when the model has no unknown detector."""
        return self.meta.unknown.threshold if self._score_index is not None else None

    @property
    def none_class(self) -> str | None:
        """The label meaning "nothing of interest" (ModelMeta.none_class), or None without one."""
        return self.meta.none_class if self.meta.none_class in self.labels else None

    def is_none(self, label: str) -> bool:
        """The one "is this label the none class" (predict, camera, page, JSONL, events)."""
        return self.none_class is not None and label == self.none_class

    def describe(self) -> str:
        return f"{self.model_path.name} ({self.meta.precision}) on {self.backend} {self.device}"

    # -- synchronous ---------------------------------------------------------------------------
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities [N, classes] for an N x H x W x 3 uint8 RGB batch already fitted to the input."""
        return self.infer_scored(batch).probabilities

    def infer_scored(self, batch: np.ndarray) -> Scored:
        """Probabilities and unknown scores of a fitted batch (one run of the model)."""
        fixed = self.fixed_batch
        if fixed and len(batch) != fixed:  # static-shape models (NPU): run in slices
            parts = [self.infer_scored(part) for part in _slices(batch, fixed)]
            scores = None if parts[0].unknown_score is None else np.concatenate(
                [p.unknown_score for p in parts])[: len(batch)]
            return Scored(np.concatenate([p.probabilities for p in parts])[: len(batch)], scores)
        return self._finish(self._backend.infer_all(self._feed(batch)))

    def classify(self, images: np.ndarray | Sequence[np.ndarray], top_k: int | None = None,
                 bgr: bool = False) -> list[Classification]:
        """Top-k (default 5, or all classes of a smaller model) per frame and whether it is none of the
        labels; any size, RGB or BGR (OpenCV)."""
        frames = _as_frames(images)
        top_k = min(5, len(self.labels)) if top_k is None else top_k
        self.check_top_k(top_k)
        scored = self.infer_scored(fit_batch(frames, self.preprocess, bgr))
        scores = scored.unknown_score
        return [self.classification(row, None if scores is None else float(scores[i]), top_k)
                for i, row in enumerate(scored.probabilities)]

    def classification(self, probabilities: np.ndarray, unknown_score: float | None,
                       top_k: int = 5) -> Classification:
        """Top-k of one image's probabilities with the unknown verdict at the model's threshold."""
        return Classification(tuple(self.top(probabilities, top_k)), unknown_score,
                              self.is_unknown(unknown_score))

    def is_unknown(self, unknown_score: float | None) -> bool:
        """The one unknown verdict (classify, camera, serve): the score above the model's threshold;
        never without a detector."""
        threshold = self.unknown_threshold
        return unknown_score is not None and threshold is not None and bool(unknown_score > threshold)

    def unknown_verdicts(self, unknown_scores: np.ndarray | None) -> np.ndarray:
        """`is_unknown` for a batch of scores: a bool array (all False without a detector)."""
        threshold = self.unknown_threshold
        if unknown_scores is None or threshold is None:
            return np.zeros(0 if unknown_scores is None else len(unknown_scores), dtype=bool)
        return np.asarray(unknown_scores) > threshold

    def check_top_k(self, top_k: int) -> None:
        if not 1 <= top_k <= len(self.labels):
            raise EdgecnnError(f"--top-k {top_k} is out of range: the model has {len(self.labels)} classes")

    def top(self, probabilities: np.ndarray, top_k: int = 5) -> list[Prediction]:
        order = np.argsort(-probabilities, kind="stable")[:top_k]
        return [Prediction(int(i), self.labels[i], float(probabilities[i]), self.is_none(self.labels[i]))
                for i in order]

    # -- overlapped ----------------------------------------------------------------------------
    def submit(self, batch: np.ndarray) -> Future[np.ndarray]:
        """Start a fitted batch; the future resolves to its probabilities."""
        return self._submit(batch, lambda outputs: self._finish(outputs).probabilities)

    def submit_scored(self, batch: np.ndarray) -> Future[Scored]:
        """Start a fitted batch; the future resolves to its probabilities and unknown scores."""
        return self._submit(batch, self._finish)

    def _submit(self, batch: np.ndarray, finish: Callable[[Any], Any]) -> Future[Any]:
        if self.fixed_batch and len(batch) != self.fixed_batch:
            raise EdgecnnError(f"this model runs batches of exactly {self.fixed_batch}; got {len(batch)}")
        inner = self._backend.submit_all(self._feed(batch))
        outer: Future[Any] = Future()
        outer.set_running_or_notify_cancel()
        inner.add_done_callback(lambda done: _relay(done, outer, finish))
        return outer

    def infer_async(self, batch: np.ndarray, callback: Callable[[np.ndarray], None]) -> None:
        """Start a batch and call `callback(probabilities)` when it is done (on a worker thread)."""
        future = self.submit(batch)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(lambda done: self._call_back(done, callback))

    def wait(self) -> None:
        """Block until every `infer_async` started so far has run its callback; raise the first error."""
        with self._lock:
            pending = list(self._pending)
        for future in pending:
            future.exception()
        with self._lock:
            errors, self._errors = self._errors, []
        if errors:
            raise errors[0]

    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------------
    def _call_back(self, done: Future[np.ndarray], callback: Callable[[np.ndarray], None]) -> None:
        try:
            callback(done.result())
        except BaseException as exc:  # noqa: BLE001 - re-raised by wait()
            with self._lock:
                self._errors.append(exc)
        finally:
            with self._lock:
                self._pending.discard(done)

    def _feed(self, batch: np.ndarray) -> np.ndarray:
        """The model's input from a uint8 NHWC batch: as is, or normalised float NCHW for foreign models."""
        batch = np.asarray(batch)
        if batch.ndim != 4 or batch.shape[-1] != 3 or batch.dtype != np.uint8:
            raise EdgecnnError(f"infer() needs an NxHxWx3 uint8 batch; got {batch.dtype} {batch.shape}: "
                               "use classify() for raw frames")
        if batch.shape[1:3] != tuple(self.input_size):
            raise EdgecnnError(f"batch is {batch.shape[1]}x{batch.shape[2]} but the model takes "
                               f"{self.input_size[0]}x{self.input_size[1]}; fit frames with fit_frame()")
        spec = self._backend.input
        if self.preprocess.normalize_in_graph:
            return np.ascontiguousarray(batch) if spec.dtype == "uint8" else batch.astype(spec.dtype)
        mean = np.asarray(self.preprocess.mean, np.float32) * 255.0
        scale = 1.0 / (np.asarray(self.preprocess.std, np.float32) * 255.0)
        data = (batch.astype(np.float32) - mean) * scale
        if spec.layout == "NCHW":
            data = data.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(data, dtype=spec.dtype)

    def _finish(self, outputs: Sequence[np.ndarray]) -> Scored:
        output = np.asarray(outputs[0], dtype=np.float32).reshape(len(outputs[0]), -1)
        scores = None
        if self._score_index is not None:
            scores = np.asarray(outputs[self._score_index], dtype=np.float32).reshape(len(output))
        if not (self.meta.softmax_in_graph or _looks_like_probabilities(output)):
            shifted = np.exp(output - output.max(axis=1, keepdims=True))
            output = shifted / shifted.sum(axis=1, keepdims=True)
        if (problem := probabilities_problem(output)) is not None:
            raise EdgecnnError(f"{self.model_path} gives outputs that are not probabilities ({problem}); the "
                               "model is broken or not a softmax classifier: export it again, or check "
                               "--mean/--std")
        if scores is not None and not np.isfinite(scores).all():
            raise EdgecnnError(f"{self.model_path} gives NaN or infinite unknown scores; export it again")
        return Scored(output, scores)


def load(path: str | Path, device: str = "auto", precision: str = "auto", backend: str = "auto",
         labels: str | Path | Sequence[str] | None = None, threads: int | None = None,
         cache_dir: str | Path | None = None, mean: Sequence[float] | None = None,
         std: Sequence[float] | None = None, hint: str = "latency", streams: int | None = None,
         requests: int | None = None) -> Engine:
    """Load a bundle folder, .onnx or OpenVINO .xml on the best (or asked) backend and device, or a model
    a Triton server serves (triton://HOST:PORT/MODEL: labels and preprocessing come from the server).

    In a bundle, "auto" precision/backend picks the fastest model whose accuracy check passed in
    report.json (e.g. OpenVINO INT8 on a CPU). `labels`, `mean` and `std` make a model without
    edgecnn metadata usable; `cache_dir` holds OpenVINO's compiled models ("" turns caching off).
    `streams` runs that many requests at once, sharing `threads` (the camera's choice: `camera_engine`).
    """
    from edgecnn.runtime.core.selection import choose_model, open_backend, resolve_meta

    choice = choose_model(Path(path), device, precision, backend)
    runner, embedded = open_backend(choice, threads=threads, cache_dir=cache_dir, hint=hint, streams=streams,
                                    requests=requests)
    try:
        meta = resolve_meta(choice, runner, embedded, labels, mean, std)
    except EdgecnnError:
        runner.close()
        raise
    return Engine(runner, meta, choice.model_path, choice.reason, choice.placement.device)


def _as_frames(images: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    if isinstance(images, np.ndarray):
        frames = list(images) if images.ndim == 4 else [images]
    else:
        frames = [np.asarray(image) for image in images]
    if not frames:
        raise EdgecnnError("no images to classify")
    return frames


def _slices(batch: np.ndarray, size: int) -> list[np.ndarray]:
    parts = [batch[i : i + size] for i in range(0, len(batch), size)]
    if len(parts[-1]) < size:  # pad the last slice by repeating its final frame, then drop the extras
        tail = parts[-1]
        parts[-1] = np.concatenate([tail, np.repeat(tail[-1:], size - len(tail), axis=0)])
    return parts


def probabilities_problem(output: np.ndarray, tolerance: float = 0.02) -> str | None:
    """What keeps each row of `output` from being probabilities (finite, in [0, 1], summing to 1 within
    `tolerance`: FP16 and INT8 models round), or None."""
    if not np.isfinite(output).all():
        return "NaN or infinite values"
    low, high = float(output.min(initial=0.0)), float(output.max(initial=0.0))
    if low < -tolerance or high > 1 + tolerance:
        return f"values from {low:.3g} to {high:.3g}, outside 0 to 1"
    sums = output.sum(axis=1)
    worst = float(sums[np.argmax(np.abs(sums - 1.0))]) if len(sums) else 1.0
    if abs(worst - 1.0) > tolerance:
        return f"a row that sums to {worst:.3g}, not to 1"
    return None


def _looks_like_probabilities(output: np.ndarray) -> bool:
    return bool(output.min() >= 0.0 and np.allclose(output.sum(axis=1), 1.0, atol=1e-3))


def _relay(done: Future[np.ndarray], outer: Future[np.ndarray], finish: Callable[[Any], np.ndarray]) -> None:
    try:
        outer.set_result(finish(done.result()))
    except BaseException as exc:  # noqa: BLE001 - delivered through the future
        outer.set_exception(exc)
