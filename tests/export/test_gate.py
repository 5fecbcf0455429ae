"""The INT8 gate's rules on hand-made probabilities: a confident flip fails, a lone near-tie does not."""

from __future__ import annotations

import numpy as np
import pytest
from edgecnn.export.gate import MIN_CONFIDENT, AgreementTally, judge, paired_drop_interval, wilson_interval


def probabilities(top: list[int], confidence: list[float], classes: int = 10) -> np.ndarray:
    """One row per image: `confidence` on class `top`, the rest spread evenly (near-ties below 0.5)."""
    rows = np.full((len(top), classes), 0.0)
    for row, (cls, p) in enumerate(zip(top, confidence, strict=True)):
        rows[row] = (1.0 - p) / (classes - 1)
        rows[row, cls] = p
    return rows


def agreement(fp32_top: list[int], int8_top: list[int], confidence: list[float],
              targets: list[int] | None = None) -> object:
    tally = AgreementTally()
    fp32 = probabilities(fp32_top, confidence)
    # INT8 keeps FP32's distribution but moves the winning mass where its top-1 differs.
    int8 = probabilities(int8_top, confidence)
    tally.add(fp32, int8, None if targets is None else np.array(targets))
    return tally.result(labelled=targets is not None)


def test_a_confident_flip_fails_even_when_everything_else_agrees() -> None:
    count = 40
    fp32 = [i % 10 for i in range(count)]
    int8 = [*fp32[:-1], (fp32[-1] + 1) % 10]
    result = agreement(fp32, int8, [0.9] * count)
    assert result.confident_flips == 1 and result.flips == 1
    verdict = judge("onnx int8", "onnx fp32", result, labelled=False, max_drop=5.0)
    assert not verdict.passed and "confident" in verdict.problem


def test_a_near_tie_flip_passes_unlabelled_when_enough_answers_are_confident() -> None:
    count = MIN_CONFIDENT + 10
    fp32 = [i % 10 for i in range(count)]
    int8 = [(fp32[0] + 1) % 10, *fp32[1:]]
    result = agreement(fp32, int8, [0.3] + [0.9] * (count - 1))
    assert result.flips == 1 and result.confident_flips == 0 and result.confident_images == count - 1
    assert judge("openvino int8", "openvino fp32", result, labelled=False, max_drop=1.0).passed


def test_too_few_confident_images_fall_back_to_overall_agreement() -> None:
    fp32 = [i % 10 for i in range(30)]
    int8 = [(t + 1) % 10 if i < 3 else t for i, t in enumerate(fp32)]  # 3 near-tie flips of 30 = 10 points
    result = agreement(fp32, int8, [0.3] * 30)
    verdict = judge("onnx int8", "onnx fp32", result, labelled=False, max_drop=1.0)
    assert not verdict.passed and f"fewer than the {MIN_CONFIDENT}" in verdict.problem


@pytest.mark.parametrize("lost, passed", [(1, True), (2, False)])
def test_one_lost_near_tie_on_a_small_labelled_set_never_fails_alone(lost: int, passed: bool) -> None:
    count = 38  # the second data set: one image is 2.6 points, above --max-drop 1
    targets = [i % 5 for i in range(count)]
    int8 = [(t + 1) % 5 if i < lost else t for i, t in enumerate(targets)]
    result = agreement(targets, int8, [0.4] * lost + [0.9] * (count - lost), targets)
    assert result.lost == lost and result.gained == 0
    assert result.drop == pytest.approx(100 * lost / count, 1e-3)
    low, high = result.drop_interval
    assert low < 0 < result.drop < high  # one or two images of 38 cannot rule out "no loss at all"
    assert judge("onnx int8", "onnx fp32", result, labelled=True, max_drop=1.0).passed is passed


def test_top5_overlap_and_kl_are_zero_distance_for_identical_models() -> None:
    fp32 = probabilities([1, 2, 3], [0.6, 0.7, 0.2])
    tally = AgreementTally()
    tally.add(fp32, fp32.copy())
    result = tally.result(labelled=False)
    assert result.top1_agreement == 100.0 and result.top5_overlap == 100.0 and result.mean_kl == 0.0


def test_intervals() -> None:
    # Wilson 95 %: with no hit the upper bound is z^2 / (n + z^2), 9.18 % for 38 images.
    assert wilson_interval(0, 38) == pytest.approx((0.0, 9.18), abs=0.01)
    assert wilson_interval(5, 121) == pytest.approx((1.78, 9.31), abs=0.01)
    # Newcombe's paired interval: contains the estimate, excludes 0 for 12 lost vs 2 gained of 50, and
    # for no flip at all is the Wilson half-width on either side.
    low, high = paired_drop_interval(36, 12, 2, 0)
    assert 0 < low < 20.0 < high < 40
    assert paired_drop_interval(38, 0, 0, 0) == pytest.approx((-9.18, 9.18), abs=0.01)
