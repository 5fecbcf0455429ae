"""`evaluate`: accuracy of an exported model on a labelled folder, the way the device will see it.

Same folder layout as finetune: one subfolder per class, or a `val/` subfolder of that layout. Given
the run's split (`RunSplit`, from a bundle or checkpoint), only its validation images are scored by
default (`edgecnn.runtime.measure.splits`): the figures are then a held-out score, not one on training images.
Writes eval.json, misclassified.txt and confusion_matrix.png (matplotlib when present, else OpenCV).
With the model's unknown detector, also how many known images it accepts; with `unknown_dir` (images of
none of the classes), AUROC, unknown images accepted, and unknown.png (score histograms + ROC curve).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from edgecnn.runtime.core.bundle import RunSplit
from edgecnn.runtime.core.engine import Engine
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.images import iter_image_files, read_image
from edgecnn.runtime.core.outputs import (
    check_distinct,
    check_output_path,
    check_writable,
    output_lock,
    write_text_atomic,
)
from edgecnn.runtime.core.preprocess import fit_frame
from edgecnn.runtime.measure.splits import select_images

log = logging.getLogger("edgecnn")


@dataclass(frozen=True)
class EvalReport:
    images: int
    top1: float
    top5: float  # top-min(5, classes)
    classes: tuple[str, ...]  # the folder's classes, rows/columns of `confusion`
    precision: tuple[float, ...]
    recall: tuple[float, ...]
    support: tuple[int, ...]
    confusion: tuple[tuple[int, ...], ...]  # [true][predicted]; a last "other" column for foreign labels
    misclassified: tuple[dict[str, Any], ...]  # file, true, predicted, probability
    skipped: tuple[str, ...]  # unreadable files, with the reason
    outputs: dict[str, str]
    # the unknown detector: runtime.openset.OpenSetFigures as a dict (AUROC and unknown shares need
    # --unknown images, else None); None when the model has no detector
    unknown: dict[str, Any] | None = None
    split: str = "all"  # "val" / "train": the run's own validation / training images; "all": all of DATA
    split_missing: int = 0  # images of the run's split that DATA does not hold (left out)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_folder(engine: Engine, data: Path, out: Path | None = None, batch_size: int = 8,
                    progress: bool = True, unknown_dir: Path | None = None, split: str = "auto",
                    run: RunSplit | None = None) -> EvalReport:
    """Top-1/top-5, per-class precision/recall, confusion matrix, misclassified files, and the unknown
    detector on the known images (and on `unknown_dir`'s images of none of the classes). `split` picks
    the images (`splits.select_images`: auto, val, train or all) by the run's split `run`."""
    if out is not None:
        check_output_path(Path(out), "--out", folder=True)
        check_distinct({"--out": Path(out)}, {"DATA": Path(data)})  # confusion_matrix.png would be data
        check_writable(Path(out), "--out")
        with output_lock(Path(out), "--out"):  # two evals into one --out would mix their files
            return _evaluate(engine, data, out, batch_size, progress, unknown_dir, split, run)
    return _evaluate(engine, data, out, batch_size, progress, unknown_dir, split, run)


def _evaluate(engine: Engine, data: Path, out: Path | None, batch_size: int, progress: bool,
              unknown_dir: Path | None, split: str, run: RunSplit | None) -> EvalReport:
    selection = select_images(Path(data), engine.labels, split, run)
    items = selection.items
    unknown_items = _unknown_images(engine, unknown_dir)
    top_k = min(5, len(engine.labels))
    rows: list[tuple[Path, int, np.ndarray]] = []
    skipped: list[str] = []
    known_scores: list[float] = []
    for chunk, batch in _batches(items, engine, batch_size, skipped, progress):
        scored = engine.infer_scored(batch)
        for (file, truth), probabilities in zip(chunk, scored.probabilities, strict=True):
            rows.append((file, truth, np.argsort(-probabilities, kind="stable")[:top_k]))
        if scored.unknown_score is not None:
            known_scores += scored.unknown_score.tolist()
    if not rows:
        raise EdgecnnError(f"no readable images under {data}")
    unknown_scores = [float(score) for _, batch in _batches(unknown_items, engine, batch_size, skipped,
                                                            progress) for score in engine.infer_scored(
                                                                batch).unknown_score]
    report = replace(_score(engine, Path(data), rows, skipped), split=selection.split,
                     split_missing=selection.missing)
    if engine.unknown_threshold is not None:
        correct = np.array([top[0] == truth for _, truth, top in rows])
        report = _with_unknown(report, engine, np.array(known_scores), correct, unknown_dir,
                               np.array(unknown_scores))
    return _write(report, out, engine, known_scores, unknown_scores) if out is not None else report


def _unknown_images(engine: Engine, unknown_dir: Path | None) -> list[tuple[Path, int]]:
    """Images of none of the classes (any folder layout), or [] without --unknown."""
    if unknown_dir is None:
        return []
    if engine.unknown_threshold is None:
        raise EdgecnnError(f"{engine.model_path.name} has no unknown detector (no unknown_score output); "
                           "export a checkpoint from `edgecnn finetune` of this version, or drop --unknown")
    if not Path(unknown_dir).is_dir():
        raise EdgecnnError(f"--unknown {unknown_dir} is not a folder; give a folder of images of none of "
                           "the model's classes")
    items = [(file, -1) for file in iter_image_files(Path(unknown_dir))]
    if not items:
        raise EdgecnnError(f"--unknown {unknown_dir} holds no images")
    return items


def _with_unknown(report: EvalReport, engine: Engine, known: np.ndarray, correct: np.ndarray,
                  unknown_dir: Path | None, unknown: np.ndarray) -> EvalReport:
    from edgecnn.runtime.measure.openset import figures

    got = asdict(figures(known, unknown, correct, engine.unknown_threshold))
    if unknown_dir is None:
        got.update(auroc=None, unknown_accepted=None)
    meta = engine.meta.unknown
    got.update(rule=meta.rule, accept_rate=meta.accept_rate, unknown_dir=str(unknown_dir or ""),
               calibration=f"{meta.calibration_images} {meta.calibration}" if meta.calibration else "")
    return replace(report, unknown=got)


def _batches(items: list[tuple[Path, int]], engine: Engine, size: int, skipped: list[str], progress: bool
             ) -> Iterator[tuple[list[tuple[Path, int]], np.ndarray]]:
    from rich.progress import track

    chunk: list[tuple[Path, int]] = []
    frames: list[np.ndarray] = []
    # a bar only on a terminal: a transient one left a blank line in piped output (| tee, CI logs)
    shown = progress and sys.stdout.isatty()
    for file, truth in track(items, description="evaluating", disable=not shown, transient=True):
        try:
            frames.append(fit_frame(read_image(file), engine.preprocess))
        except EdgecnnError as exc:
            log.warning("skipped %s", exc)
            skipped.append(str(exc))
            continue
        chunk.append((file, truth))
        if len(chunk) == size:
            yield chunk, np.stack(frames)
            chunk, frames = [], []
    if chunk:
        yield chunk, np.stack(frames)


def _score(engine: Engine, data: Path, rows: list[tuple[Path, int, np.ndarray]], skipped: list[str]
           ) -> EvalReport:
    classes = sorted({truth for _, truth, _ in rows})
    column = {index: i for i, index in enumerate(classes)}
    other = len(classes)
    confusion = np.zeros((len(classes), len(classes) + 1), dtype=np.int64)
    missed = []
    for file, truth, top in rows:
        predicted = int(top[0])
        confusion[column[truth], column.get(predicted, other)] += 1
        if predicted != truth:
            missed.append({"file": _relative(file, data), "true": engine.labels[truth],
                           "predicted": engine.labels[predicted]})
    if not confusion[:, other].any():
        confusion = confusion[:, :other]
    diagonal = np.diag(confusion[:, : len(classes)])
    predicted_totals = confusion.sum(axis=0)[: len(classes)]
    support = confusion.sum(axis=1)
    return EvalReport(
        images=len(rows),
        top1=float(np.mean([top[0] == truth for _, truth, top in rows])),
        top5=float(np.mean([truth in top for _, truth, top in rows])),
        classes=tuple(engine.labels[i] for i in classes),
        precision=tuple(float(d / p) if p else 0.0 for d, p in zip(diagonal, predicted_totals, strict=True)),
        recall=tuple(float(d / s) if s else 0.0 for d, s in zip(diagonal, support, strict=True)),
        support=tuple(int(s) for s in support),
        confusion=tuple(tuple(int(v) for v in row) for row in confusion),
        misclassified=tuple(missed), skipped=tuple(skipped), outputs={})


def _relative(file: Path, data: Path) -> str:
    try:
        return str(file.relative_to(data))
    except ValueError:
        return str(file)


def _write(report: EvalReport, out: Path, engine: Engine, known_scores: list[float],
           unknown_scores: list[float]) -> EvalReport:
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _write_files(report, out, engine, known_scores, unknown_scores)
    except BaseException:  # interrupted (or a full disk): an --out made for nothing is removed again
        if created and not any(out.iterdir()):
            out.rmdir()
        raise


def _write_files(report: EvalReport, out: Path, engine: Engine, known_scores: list[float],
                 unknown_scores: list[float]) -> EvalReport:
    from edgecnn.runtime.measure.plots import save_confusion, save_openset

    outputs = {"json": str(out / "eval.json"), "misclassified": str(out / "misclassified.txt"),
               "confusion_matrix": str(out / "confusion_matrix.png")}
    if unknown_scores:
        outputs["unknown_plot"] = str(out / "unknown.png")
    report = replace(report, outputs=outputs)
    columns = list(report.classes) + (["other"] if len(report.confusion[0]) > len(report.classes) else [])
    title = f"{engine.model_path.name} on {engine.backend} {engine.device}"
    save_confusion(np.array(report.confusion), list(report.classes), columns,
                   Path(outputs["confusion_matrix"]), title=title)
    if unknown_scores:
        save_openset(np.array(known_scores), np.array(unknown_scores), engine.unknown_threshold,
                     Path(outputs["unknown_plot"]), title=f"{title}: {engine.meta.unknown.rule} score")
    lines = [f"{m['file']}\ttrue={m['true']}\tpredicted={m['predicted']}" for m in report.misclassified]
    write_text_atomic(Path(outputs["misclassified"]), "\n".join(lines) + ("\n" if lines else ""))
    write_text_atomic(Path(outputs["json"]), json.dumps(report.to_dict(), indent=2))
    return report
