"""The unknown decision in the INT8 gate: an INT8 model must call the same images known/unknown as its
FP32 parent, or it fails like a top-1 flip (export/gate.py, rule 4).

1. Decisions are compared image by image on the gate's check images, at the parent's threshold.
2. More than MAX_DISAGREEMENT percent of them differing (with few images: any one of them) fails, unless a
   threshold fitted on the INT8 model's own scores disagrees less: that threshold accepts the same share
   of the fit images (calibration + check images) as FP32's threshold does there (quantile matching: INT8
   shifts and stretches the score, and this undoes a monotone change). The kept model carries it in its
   own ModelMeta.unknown, so the runtime applies it with no caller's help.
3. Whatever the threshold, the verdict is on the check images' decisions, counted in the report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from edgecnn.runtime.core.bundle import Int8Agreement

# known/unknown decisions INT8 may change, percent of the check images (issue 26: >= 98 % agreement);
# no one-image floor as top-1 has: with under 50 images this allows none
MAX_DISAGREEMENT = 2.0

Scores = Callable[[], np.ndarray]  # the unknown scores of one model on a fixed set of images, lazily


@dataclass
class UnknownReference:
    """The FP32 parent's threshold and scores: on the check images, and (lazily, for a refit) on the fit
    images, the calibration images followed by the check images."""

    threshold: float
    check_scores: np.ndarray
    fit_scores: Scores
    _fit: np.ndarray | None = None

    def fit(self) -> np.ndarray:
        if self._fit is None:
            self._fit = self.fit_scores()
        return self._fit


def allowed_disagreements(images: int) -> int:
    """How many known/unknown decisions of `images` may differ (2 % of them, rounded down)."""
    return int(MAX_DISAGREEMENT * images / 100.0 + 1e-9)


def disagreements(parent: np.ndarray, own: np.ndarray, parent_threshold: float, threshold: float) -> int:
    return int(((parent > parent_threshold) != (own > threshold)).sum())


def fitted_threshold(parent: np.ndarray, own: np.ndarray, parent_threshold: float) -> float:
    """The threshold on `own` scores that accepts the share of images `parent_threshold` accepts on `parent`
    (the same images, in order)."""
    accepted = float((parent <= parent_threshold).mean()) if len(parent) else 1.0
    if accepted >= 1.0:
        return float(max(own.max(initial=parent_threshold), parent_threshold))
    if accepted <= 0.0:
        return float(min(own.min(initial=parent_threshold), parent_threshold)) - 1e-6
    ranked = np.sort(own.astype(np.float64))
    # accept the `cut` lowest scores: the threshold lies midway to the next one
    cut = min(max(int(round(accepted * len(ranked))), 1), len(ranked) - 1)
    return float((ranked[cut - 1] + ranked[cut]) / 2.0)


def with_unknown(agreement: Int8Agreement, reference: UnknownReference | None, own_check: np.ndarray | None,
                 own_fit: Scores | None) -> Int8Agreement:
    """`agreement` plus the unknown-decision figures (module docstring, rules 1-3); unchanged without a
    detector."""
    if reference is None or own_check is None:
        return agreement
    parent, threshold = reference.check_scores, reference.threshold
    at_parent = disagreements(parent, own_check, threshold, threshold)
    chosen, refitted = threshold, False
    if at_parent > allowed_disagreements(len(parent)) and own_fit is not None:
        fitted = fitted_threshold(reference.fit(), own_fit(), threshold)
        wrong_fitted = disagreements(parent, own_check, threshold, fitted)
        if wrong_fitted < at_parent:
            chosen, refitted = fitted, True
    return at_threshold(agreement, parent, own_check, threshold, chosen, refitted)


def at_threshold(agreement: Int8Agreement, parent: np.ndarray, own: np.ndarray, parent_threshold: float,
                 threshold: float, refitted: bool) -> Int8Agreement:
    """`agreement` plus the unknown-decision figures of `own` scores at `threshold` (no refit)."""
    count = len(parent)
    wrong = disagreements(parent, own, parent_threshold, threshold)
    at_parent = disagreements(parent, own, parent_threshold, parent_threshold)
    return replace(agreement, unknown_disagreements=wrong, unknown_agreement=_percent(count - wrong, count),
                   unknown_threshold=float(threshold), unknown_refitted=refitted,
                   unknown_agreement_at_parent_threshold=_percent(count - at_parent, count))


def unknown_problem(name: str, parent: str, agreement: Int8Agreement) -> str:
    """Why the unknown decisions fail the gate ("" when they pass or there is no detector)."""
    wrong, count = agreement.unknown_disagreements, agreement.images
    if wrong is None or wrong <= allowed_disagreements(count):
        return ""
    how = ("even at a threshold refitted on its own scores" if agreement.unknown_refitted else
           "at FP32's threshold; a threshold refitted on its own scores did no better")
    return (f"{name} calls {wrong} of {count} images known/unknown differently from {parent} "
            f"({100.0 - agreement.unknown_agreement:.3g} %, limit {MAX_DISAGREEMENT:g} % = "
            f"{allowed_disagreements(count)} images of {count}; {how})")


def _percent(hits: int, count: int) -> float:
    return round(100.0 * hits / count, 3) if count else 100.0
