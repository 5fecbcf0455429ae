"""The INT8 gate: how far an INT8 model's answers stray from its FP32 parent's, and whether it may ship.

Measured per image against the FP32 parent: top-1 agreement, top-5 overlap, KL divergence, and the
images where FP32 is confident (top-1 probability >= CONFIDENT). Rules, in order:
1. A confident answer changed fails, labelled or not: that is a decision INT8 took differently.
2. Labelled images: the top-1 drop (FP32 right and INT8 wrong, minus the reverse) may not exceed
   `max_drop` points, but never less than one image: a single near-tie flip on a small set is below
   what the set can resolve (one image of 38 is 2.6 points) and must not fail the export alone.
3. No labels: rule 1 decides, provided at least MIN_CONFIDENT images are confident; with fewer, the
   overall disagreement is judged like a drop (rule 2), and the report says why.
4. With an unknown detector, the known/unknown decisions may differ from FP32's on at most 2 % of the
   images (export/unknown_gate.py: no one-image floor; a threshold refitted on INT8's own scores may
   fix it), judged after rules 1-3 pass: the same verdict, the same report, the same search for a
   recipe that passes. A model failing on this rule alone is *held back*, not failed: it ships, `auto`
   never runs it (the runtime takes its FP32 parent), the report says so loudly, and the export does
   not fail for it (its answers are FP32's; only its confidence floor moved).
The drop comes with a 95 % Newcombe interval (paired difference of proportions, from Wilson
intervals) and the flip rate with a 95 % Wilson interval, so a reader sees what a small set can tell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from edgecnn.export.unknown_gate import MAX_DISAGREEMENT, unknown_problem
from edgecnn.runtime.core.bundle import Int8Agreement as Agreement  # the record the report carries

CONFIDENT = 0.5  # FP32 top-1 probability from which an answer counts as a decision (more than all others)
MIN_CONFIDENT = 20  # fewer confident images than this cannot carry the unlabelled gate alone
Z95 = 1.959964


@dataclass(frozen=True)
class Verdict:
    passed: bool
    rule: str  # which rule decided, in words
    problem: str  # why it failed ("" when passed)
    unknown_only: bool = False  # failed on rule 4 alone: top-1 answers kept, known/unknown decisions moved


class AgreementTally:
    """Running sums over batches of (FP32, INT8) probabilities; `result()` gives the Agreement."""

    def __init__(self) -> None:
        self.same: list[bool] = []
        self.confident: list[bool] = []
        self.overlap: list[float] = []
        self.kl: list[float] = []
        self.right32: list[bool] = []
        self.right8: list[bool] = []

    def add(self, fp32: np.ndarray, int8: np.ndarray, targets: np.ndarray | None = None) -> None:
        top32, top8 = fp32.argmax(1), int8.argmax(1)
        self.same += (top32 == top8).tolist()
        self.confident += (fp32.max(1) >= CONFIDENT).tolist()
        k = min(5, fp32.shape[1])
        five32, five8 = np.argsort(-fp32, 1)[:, :k], np.argsort(-int8, 1)[:, :k]
        self.overlap += [len(set(a) & set(b)) / k for a, b in zip(five32, five8, strict=True)]
        self.kl += kl_divergence(fp32, int8).tolist()
        if targets is not None:
            self.right32 += (top32 == targets).tolist()
            self.right8 += (top8 == targets).tolist()

    def result(self, labelled: bool) -> Agreement:
        same, confident = np.array(self.same, bool), np.array(self.confident, bool)
        count = int(same.size)
        flips = int((~same).sum())
        figures = {}
        if labelled and self.right32:
            right32, right8 = np.array(self.right32), np.array(self.right8)
            lost, gained = int((right32 & ~right8).sum()), int((~right32 & right8).sum())
            both = int((right32 & right8).sum())
            neither = count - both - lost - gained
            figures = {"lost": lost, "gained": gained, "drop": round(100.0 * (lost - gained) / count, 3),
                       "drop_interval": paired_drop_interval(both, lost, gained, neither)}
        return Agreement(
            images=count, flips=flips, flip_rate_interval=wilson_interval(flips, count),
            top1_agreement=_percent(same), top5_overlap=round(100.0 * float(np.mean(self.overlap or [0])), 3),
            mean_kl=round(float(np.mean(self.kl or [0])), 5), confident_images=int(confident.sum()),
            confident_flips=int((confident & ~same).sum()), **figures)


def judge(name: str, parent: str, agreement: Agreement, labelled: bool, max_drop: float) -> Verdict:
    """Apply the gate (module docstring) to one INT8 model."""
    verdict = _judge_top1(name, parent, agreement, labelled, max_drop)
    problem = unknown_problem(name, parent, agreement) if verdict.passed else ""
    if problem:
        return Verdict(False, f"{verdict.rule}; unknown decisions within {MAX_DISAGREEMENT:g} %", problem,
                       unknown_only=True)
    if verdict.passed and agreement.unknown_disagreements is not None:
        return Verdict(True, f"{verdict.rule}; unknown decisions within {MAX_DISAGREEMENT:g} %", "")
    return verdict


def _judge_top1(name: str, parent: str, agreement: Agreement, labelled: bool, max_drop: float) -> Verdict:
    """Rules 1-3: the top-1 answers."""
    n = agreement.images
    allowed_images = max(max_drop * n / 100.0, 1.0)  # never finer than one image
    allowed = 100.0 * allowed_images / n if n else 100.0
    if agreement.confident_flips:
        return Verdict(False, "confident answers", (
            f"{name} changed {agreement.confident_flips} of {agreement.confident_images} answers "
            f"{parent} is confident in (top-1 probability >= {CONFIDENT:g})"))
    if labelled and agreement.lost is not None:
        rule = f"top-1 drop <= {allowed:.3g} points (--max-drop {max_drop:g}, at least one image of {n})"
        if agreement.lost - agreement.gained > allowed_images + 1e-9:
            return Verdict(False, rule, (
                f"{name} lost {agreement.drop:g} points of top-1 against {parent} ({agreement.lost} images "
                f"lost, {agreement.gained} gained of {n}; --max-drop {max_drop:g})"))
        return Verdict(True, rule, "")
    if agreement.confident_images >= MIN_CONFIDENT:
        return Verdict(True, f"no confident answer changed ({agreement.confident_images} confident images)",
                       "")
    rule = (f"only {agreement.confident_images} confident images (< {MIN_CONFIDENT}): overall disagreement "
            f"<= {allowed:.3g} points")
    if agreement.flips > allowed_images + 1e-9:
        disagreement = round(100.0 - agreement.top1_agreement, 3)
        return Verdict(False, rule, (
            f"{name} disagrees with {parent} on {agreement.flips} of {n} images ({disagreement:g} points; "
            f"--max-drop {max_drop:g}; only {agreement.confident_images} images are confident, "
            f"fewer than the {MIN_CONFIDENT} the confident-answer gate needs)"))
    return Verdict(True, rule, "")


def kl_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(p || q) per row, in nats; probabilities floored at 1e-12 so a zero never gives infinity."""
    p, q = np.clip(p.astype(np.float64), 1e-12, 1.0), np.clip(q.astype(np.float64), 1e-12, 1.0)
    return np.sum(p * (np.log(p) - np.log(q)), axis=1)


def wilson_interval(hits: int, count: int) -> tuple[float, float]:
    """95 % Wilson score interval of hits/count, in percent."""
    if not count:
        return (0.0, 100.0)
    p, z2 = hits / count, Z95 * Z95
    centre = (p + z2 / (2 * count)) / (1 + z2 / count)
    half = Z95 * math.sqrt(p * (1 - p) / count + z2 / (4 * count * count)) / (1 + z2 / count)
    return (round(100.0 * max(0.0, centre - half), 3), round(100.0 * min(1.0, centre + half), 3))


def paired_drop_interval(both: int, lost: int, gained: int, neither: int) -> tuple[float, float]:
    """95 % interval of the top-1 drop (FP32 accuracy minus INT8 accuracy on the same images), in points:
    Newcombe's method 10 for paired proportions (Statistics in Medicine 1998)."""
    n = both + lost + gained + neither
    if not n:
        return (-100.0, 100.0)
    p1, p2 = (both + lost) / n, (both + gained) / n
    l1, u1 = (x / 100 for x in wilson_interval(both + lost, n))
    l2, u2 = (x / 100 for x in wilson_interval(both + gained, n))
    cross = both * neither - lost * gained
    denominator = (both + lost) * (gained + neither) * (both + gained) * (lost + neither)
    phi = 0.0 if not denominator else (max(cross - n / 2, 0) if cross > 0 else cross) / math.sqrt(denominator)
    diff = p1 - p2
    below = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    above = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return (round(100.0 * max(-1.0, diff - below), 3), round(100.0 * min(1.0, diff + above), 3))


def _percent(hits: np.ndarray) -> float:
    return round(100.0 * float(hits.mean()), 3) if hits.size else 0.0
