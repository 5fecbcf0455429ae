"""INT8 for each backend: search the recipes, and fall back on accuracy control when none passes the gate.

ONNX Runtime: `quantize.RECIPES`; if the best fails the gate, the fallback keeps the 2, 4, then 8
nodes that cost the most signal-to-noise in float (`quantize.harmful_nodes`). OpenVINO: `openvino.RECIPES`;
if the best fails, `nncf.quantize_with_accuracy_control` with our gate as its validation function.
Either stops as soon as the gate passes; the best model is kept either way (marked failed when it
did not pass). Every try goes into the report with its figures and its time.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgecnn.export.checks import Predict, compare_with, median_latency_ms, reference_outputs, unknown_scores
from edgecnn.export.gate import CONFIDENT, Agreement, Verdict, judge
from edgecnn.export.images import batches
from edgecnn.export.search import SKIPPED, Check, Tried, search
from edgecnn.export.unknown_gate import UnknownReference, with_unknown
from edgecnn.runtime.core.errors import EdgecnnError

CANNOT_RUN = "fails to run"
FALLBACK_STEPS = (2, 4, 8)  # how many of the most harmful ONNX nodes go back to float, step by step


@dataclass(frozen=True)
class Int8Job:
    """What both backends need: the images, the gate's settings, and a progress callback."""

    calibration: Any  # ImageSet
    validation: Any  # ImageSet
    preprocess: Any
    labelled: bool
    max_drop: float
    batch: int
    float_nodes: tuple[str, ...] = ()  # ONNX node names every recipe keeps in float
    say: Callable[[str], None] = lambda _: None
    unknown_threshold: float | None = None  # the FP32 detector's; None: no unknown_score output to gate


def gate_check(job: Int8Job, name: str, parent: str, parent_predict: Predict,
               predictor: Callable[[Any], Predict], scorer: Callable[[Any], Predict] | None = None,
               parent_model: Any = None) -> Check:
    """model file -> (agreement with the parent, gate verdict, its predict function); the parent runs once.
    With `scorer` (model -> its unknown_score function) and the job's threshold, the unknown decisions
    are judged too (export/unknown_gate.py)."""
    reference = reference_outputs(parent_predict, job.validation, job.preprocess, job.batch)
    unknown = _unknown_reference(job, scorer, parent_model)

    def check(model: Any, predict: Predict | None = None,
              score: Predict | None = None) -> tuple[Any, Any, Predict | None]:
        predict = predict or predictor(model)
        try:
            agreement = compare_with(reference, predict, job.validation, job.preprocess, job.batch,
                                     job.labelled)
            if unknown is not None:
                score = score or scorer(model)
                agreement = with_unknown(agreement, unknown, _scores(job, score, job.validation)(),
                                         _scores(job, score, *_fit_images(job)))
        except Exception as exc:  # noqa: BLE001 - the runtimes' own errors: this INT8 model cannot run
            verdict = Verdict(False, "runs", f"{name} {CANNOT_RUN}: {exc}")
            return crashed(reference, job.labelled), verdict, None
        return agreement, judge(name, parent, agreement, job.labelled, job.max_drop), predict

    return check


def _unknown_reference(job: Int8Job, scorer: Callable[[Any], Predict] | None,
                       parent_model: Any) -> UnknownReference | None:
    if scorer is None or job.unknown_threshold is None:
        return None
    score = scorer(parent_model)
    return UnknownReference(job.unknown_threshold, _scores(job, score, job.validation)(),
                            _scores(job, score, *_fit_images(job)))


def _fit_images(job: Int8Job) -> tuple[Any, ...]:
    """Where a per-model threshold is fitted: the calibration images, then the check images."""
    return job.calibration, job.validation


def _scores(job: Int8Job, score: Predict, *image_sets: Any) -> Callable[[], Any]:
    """The unknown scores of `score` on the image sets, one after the other, when called."""
    import numpy as np

    def run() -> Any:
        return np.concatenate([unknown_scores(score, images, job.preprocess, job.batch)
                               for images in image_sets])

    return run


def crashed(reference: tuple[Any, Any], labelled: bool) -> Agreement:
    """The figures of a model that cannot run: every answer lost."""
    fp32, targets = reference
    count, confident = len(fp32), int((fp32.max(1) >= CONFIDENT).sum()) if len(fp32) else 0
    right = int((fp32.argmax(1) == targets).sum()) if labelled and len(fp32) else 0
    drop = {"lost": right, "gained": 0, "drop": round(100.0 * right / count, 3) if count else 0.0,
            "drop_interval": (0.0, 100.0)} if labelled else {}
    return Agreement(images=count, flips=count, flip_rate_interval=(0.0, 100.0), top1_agreement=0.0,
                     top5_overlap=0.0, mean_kl=-1.0, confident_images=confident,
                     confident_flips=confident, **drop)


def timer(job: Int8Job) -> Callable[[list[Predict]], list[float]]:
    """Batch-1 latency of several models, in alternating rounds (the median of each model's runs)."""
    frame = next(batches(job.validation, job.preprocess, job.batch))[0]

    def time_all(predicts: list[Predict | None]) -> list[float]:
        def once(predict: Predict | None, runs: int, budget_s: float) -> float:
            return 0.0 if predict is None else median_latency_ms(predict, frame, runs, budget_s)

        if len(predicts) == 1:
            return [once(predicts[0], 20, 1.0)]
        rounds = [[once(p, 10, 0.5) for p in predicts] for _ in range(3)]
        return [statistics.median(column) for column in zip(*rounds, strict=True)]

    return time_all


def quantize_onnx_searched(fp32: Path, out: Path, job: Int8Job, method: str) -> list[Tried]:
    """Search ONNX Runtime recipes for `fp32` (see module docstring); the kept model ends at `out`."""
    import tempfile

    from edgecnn.export.checks import onnx_predictor, scorer
    from edgecnn.export.quantize import fallback_recipes, harmful_nodes, prepare_onnx, quantize_onnx, recipes

    check = gate_check(job, "onnx int8", "onnx fp32", onnx_predictor(fp32), onnx_predictor,
                       lambda model: scorer("onnxruntime", model), fp32)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".prepare-") as work:
        prepared = prepare_onnx(fp32, Path(work))

        def quantize(recipe: Any, path: Path) -> tuple[Path, tuple[str, ...]]:
            recipe = replace(recipe, float_nodes=(*job.float_nodes, *recipe.float_nodes))
            return quantize_onnx(prepared, path, job.calibration, job.preprocess, recipe, job.batch)

        chosen = (*recipes(method), *fallback_recipes(method))
        tried = search(recipes(method), quantize, check, timer(job), out, job.say,
                       fallback=fallback_recipes(method))
        kept = next(t for t in tried if t.kept)
        if kept.passed:
            return tried
        _refuse_if_none_runs(tried)
        job.say("INT8 fallback: finding the nodes that cost ONNX INT8 the most")
        recipe = next(r for r in chosen if r.name == kept.recipe)
        harmful = harmful_nodes(prepared, out, job.calibration, job.preprocess, skip=kept.float_nodes)
        steps = [replace(recipe, name=f"{recipe.name} + {k} most harmful nodes float",
                         float_nodes=(*recipe.float_nodes, *harmful[:k]))
                 for k in FALLBACK_STEPS if k <= len(harmful)]
        more = search(steps, quantize, check, timer(job), out, job.say, stop=_passed, incumbent=kept)
        return _with_fallback(tried, more)


def quantize_openvino_searched(fp32: Path, out: Path, job: Int8Job, parent: Path) -> list[Tried]:
    """Search NNCF recipes for `fp32` (see module docstring); the kept IR ends at `out`."""
    from edgecnn.export.checks import openvino_predictor, scorer
    from edgecnn.export.openvino import RECIPES, quantize_openvino, quantize_openvino_controlled

    out.parent.mkdir(parents=True, exist_ok=True)
    check = gate_check(job, "openvino int8", "openvino fp32", openvino_predictor(parent), openvino_predictor,
                       lambda model: scorer("openvino", model), parent)

    def quantize(recipe: Any, path: Path) -> tuple[Path, tuple[str, ...]]:
        recipe = replace(recipe, float_nodes=(*job.float_nodes, *recipe.float_nodes))
        return quantize_openvino(fp32, path, job.calibration, job.preprocess, recipe, job.batch)

    tried = search(RECIPES, quantize, check, timer(job), out, job.say)
    kept = next(t for t in tried if t.kept)
    if kept.passed:
        return tried
    _refuse_if_none_runs(tried)
    recipe = next(r for r in RECIPES if r.name == kept.recipe)

    def controlled(_: Any, path: Path) -> tuple[Path, tuple[str, ...]]:
        def passes(compiled: Any) -> bool:
            outputs = len(compiled.outputs)
            return check(None, lambda frames: compiled(frames)[0],
                         lambda frames: compiled(frames)[outputs - 1])[1].passed

        full = replace(recipe, float_nodes=(*job.float_nodes, *recipe.float_nodes))
        return quantize_openvino_controlled(fp32, path, job.calibration, job.validation, job.preprocess, full,
                                            passes, job.batch)

    job.say("INT8 fallback: NNCF accuracy control")
    step = replace(recipe, name=f"{recipe.name} + NNCF accuracy control")
    more = search([step], controlled, check, timer(job), out, job.say, stop=_passed,
                  incumbent=kept)
    return _with_fallback(tried, more)


def _refuse_if_none_runs(tried: list[Tried]) -> None:
    """INT8 models that crash in their own runtime come from calibration ranges far from real images."""
    ran = [t for t in tried if not t.problem.startswith(SKIPPED)]
    if all(CANNOT_RUN in t.problem for t in ran):
        raise EdgecnnError(f"every INT8 recipe gives a model that cannot run ({ran[0].problem}); calibrate "
                           "on photos like the ones the model will see (--calibration DIR, more images)")


def _passed(tried: Tried) -> bool:
    return tried.passed


def _with_fallback(first: list[Tried], more: list[Tried]) -> list[Tried]:
    """The tries in order; when a fallback try is kept, the first round's keeper is not any more."""
    if any(t.kept for t in more):
        first = [replace(t, kept=False) for t in first]
    return first + more
