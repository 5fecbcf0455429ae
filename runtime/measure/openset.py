"""Open-set figures from unknown scores (higher = more likely unknown): AUROC, ROC curve, acceptance.

Torch-free: used by `edgecnn eval --unknown` on exported models and by benchmarks/openset.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def auroc(known: np.ndarray, unknown: np.ndarray) -> float:
    """Probability that an unknown image scores above a known one (ties count half)."""
    known, unknown = np.asarray(known, np.float64), np.asarray(unknown, np.float64)
    if not len(known) or not len(unknown):
        return float("nan")
    ordered = np.sort(known)
    below = np.searchsorted(ordered, unknown, side="left")
    tied = np.searchsorted(ordered, unknown, side="right") - below
    return float((below + 0.5 * tied).sum() / (len(known) * len(unknown)))


def roc_curve(known: np.ndarray, unknown: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate) with unknown as the positive class, every threshold."""
    thresholds = np.unique(np.concatenate([known, unknown]))[::-1]
    fpr = [0.0] + [float(np.mean(known >= t)) for t in thresholds]
    tpr = [0.0] + [float(np.mean(unknown >= t)) for t in thresholds]
    return np.asarray(fpr), np.asarray(tpr)


@dataclass(frozen=True)
class OpenSetFigures:
    """What an unknown detector does at its threshold on known and unknown images."""

    auroc: float
    known_images: int
    unknown_images: int
    known_accepted: float  # share of known images with score <= threshold
    unknown_accepted: float  # share of unknown images with score <= threshold (lower is better)
    top1: float  # on every known image
    top1_accepted: float  # on the accepted known images only
    threshold: float


def figures(known_scores: np.ndarray, unknown_scores: np.ndarray, known_correct: np.ndarray,
            threshold: float) -> OpenSetFigures:
    known_scores, unknown_scores = np.asarray(known_scores), np.asarray(unknown_scores)
    accepted = known_scores <= threshold
    correct = np.asarray(known_correct, bool)
    return OpenSetFigures(
        auroc=auroc(known_scores, unknown_scores), known_images=len(known_scores),
        unknown_images=len(unknown_scores), known_accepted=_mean(accepted),
        unknown_accepted=_mean(unknown_scores <= threshold), top1=_mean(correct),
        top1_accepted=_mean(correct[accepted]), threshold=float(threshold))


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else float("nan")
