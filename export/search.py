"""Pick an INT8 recipe by measurement: quantise with each, check it against FP32, keep the best.

The ranking: passing the gate first, then fewest changed confident answers, known/unknown decisions and
flipped answers, then the smallest KL divergence from
FP32; a recipe that keeps more nodes in float and runs more than LATENCY_SLACK times slower than the
fastest one tried ranks after every passing one that is not. The search stops early at a recipe that
flips nothing (nothing left to gain), so a well-behaved fine-tuned model pays for one recipe only.
Every try, its figures and its time are kept for the report.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgecnn.export.gate import Agreement, Verdict
from edgecnn.runtime.core.bundle import RecipeTry
from edgecnn.runtime.core.errors import EdgecnnError

LATENCY_SLACK = 1.25  # ratio to the fastest recipe beyond which a recipe pays too much for its accuracy


Tried = RecipeTry  # one recipe tried, as the report lists it


class CannotCalibrate(EdgecnnError):
    """A recipe whose calibration cannot run on these images (the search skips it, saying why)."""


SKIPPED = "cannot calibrate"  # the problem of a recipe the search skipped (listed in the report, never kept)


Check = Callable[..., tuple[Agreement, Verdict, Any]]  # model file -> figures, verdict, its predict function
Timer = Callable[[list[Any]], list[float]]  # predict functions -> batch-1 latency ms, timed interleaved


# The figures of a recipe that never produced a model (skipped): no images compared.
NOTHING = Agreement(images=0, flips=0, flip_rate_interval=(0.0, 0.0), top1_agreement=0.0, top5_overlap=0.0,
                    mean_kl=None, confident_images=0, confident_flips=0)


def flips_nothing(tried: Tried) -> bool:
    return tried.passed and tried.agreement.flips == 0 and not tried.agreement.unknown_disagreements


def search(recipes: Sequence[Any], quantize: Callable[[Any, Path], tuple[Path, tuple[str, ...]]],
           check: Check, timer: Timer, out: Path, say: Callable[[str], None] = lambda _: None,
           stop: Callable[[Tried], bool] = flips_nothing, incumbent: Tried | None = None,
           fallback: Sequence[Any] = ()) -> list[Tried]:
    """Quantise with each recipe (`quantize(recipe, path)` -> (file, float nodes)) until `stop`; the best
    file ends at `out`. `incumbent`: an earlier try whose file is already `out`, kept unless beaten.
    `fallback`: recipes tried only when none of `recipes` could calibrate. Returns the new tries in order,
    the kept one marked (none when the incumbent stays), then the skipped ones (problem SKIPPED: ...)."""
    tried, predicts, skipped = _try_each(recipes, quantize, check, out, say, stop)
    if not tried and skipped and fallback and incumbent is None:
        say(f"INT8: falling back to {fallback[0].name} for this export ({skipped[0].problem})")
        tried, predicts, more = _try_each(fallback, quantize, check, out, say, stop)
        skipped += more
    if not tried and incumbent is not None:
        return skipped
    if not tried:
        first = skipped[0]
        raise EdgecnnError(f"no INT8 recipe could calibrate on these images ({first.recipe}: "
                           f"{first.problem}); try --calibration-method minmax or other --calibration images")
    # Timed together, round-robin, so a busy machine slows every recipe alike.
    latency = timer(predicts)
    tried = [(replace(t, latency_ms=round(ms, 3)), path)
             for (t, path), ms in zip(tried, latency, strict=True)]
    everyone = ([incumbent] if incumbent else []) + [t for t, _ in tried]  # ties: the earlier
    best = min(everyone, key=lambda t: rank(t, everyone))
    for one, path in tried:
        if one is best:
            _move(path, out)
        else:
            _remove(path)
    return [replace(t, kept=True) if t is best else t for t, _ in tried] + skipped


def _try_each(recipes: Sequence[Any], quantize: Callable[[Any, Path], tuple[Path, tuple[str, ...]]],
              check: Check, out: Path, say: Callable[[str], None], stop: Callable[[Tried], bool]
              ) -> tuple[list[tuple[Tried, Path]], list[Any], list[Tried]]:
    """Quantise and check each recipe in turn until `stop`; a recipe that cannot calibrate is skipped."""
    tried: list[tuple[Tried, Path]] = []
    predicts: list[Any] = []
    skipped: list[Tried] = []
    for index, recipe in enumerate(recipes):
        say(f"INT8 recipe {index + 1}/{len(recipes)}: {recipe.name}")
        start = time.perf_counter()
        try:
            path, floats = quantize(recipe, out.with_name(f".try{index}.{out.name}"))
        except CannotCalibrate as exc:
            say(f"INT8 recipe {recipe.name} skipped: {exc}")
            skipped.append(Tried(recipe.name, round(time.perf_counter() - start, 1), 0.0, NOTHING, False,
                                 f"{SKIPPED}: {exc}"))
            continue
        agreement, verdict, predict = check(path)
        tried.append((Tried(recipe.name, round(time.perf_counter() - start, 1), 0.0, agreement,
                            verdict.passed, verdict.problem, floats), path))
        predicts.append(predict)
        if stop(tried[-1][0]):
            break
    return tried, predicts, skipped


def rank(one: Tried, everyone: list[Tried]) -> tuple:
    ran = [t for t in everyone if t.latency_ms > 0]  # 0: did not run
    fastest = min(ran, key=lambda t: t.latency_ms) if ran else one
    # Only a recipe that keeps more in float can be slower; with the same graph a gap is timing noise.
    slow = (one.latency_ms > LATENCY_SLACK * fastest.latency_ms
            and len(one.float_nodes) > len(fastest.float_nodes))
    return (not one.passed, slow, one.agreement.confident_flips, one.agreement.unknown_disagreements or 0,
            one.agreement.flips, one.agreement.mean_kl)


def _move(path: Path, out: Path) -> None:
    os.replace(path, out)
    if path.suffix == ".xml":  # an IR is two files
        os.replace(path.with_suffix(".bin"), out.with_suffix(".bin"))


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    if path.suffix == ".xml":
        path.with_suffix(".bin").unlink(missing_ok=True)
