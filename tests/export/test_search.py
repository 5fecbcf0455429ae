"""How the recipe search ranks its tries: the gate, then flips and KL; latency only where graphs differ."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from edgecnn.export.gate import AgreementTally
from edgecnn.export.search import Tried, rank


def tried(name: str, latency_ms: float, flips: int, floats: tuple[str, ...], passed: bool = True) -> Tried:
    tally = AgreementTally()
    probabilities = np.eye(5)[[0, 1, 2]] * 0.9 + 0.02
    tally.add(probabilities, probabilities)
    agreement = replace(tally.result(labelled=False), flips=flips)
    return Tried(name, 1.0, latency_ms, agreement, passed, "" if passed else "failed", floats)


def best(*tries: Tried) -> str:
    everyone = list(tries)
    return min(everyone, key=lambda t: rank(t, everyone)).recipe


def test_same_graph_timed_slower_is_noise_not_a_reason() -> None:
    # Both keep the same node in float: a 1.4x latency gap between them was load, the fewer flips win.
    assert best(tried("minmax", 10.0, 5, ("conv",)), tried("percentile", 14.0, 2, ("conv",))) == "percentile"


def test_more_float_nodes_that_cost_latency_rank_after_a_passing_recipe() -> None:
    assert best(tried("int8", 10.0, 3, ("conv",)), tried("more float", 20.0, 1, ("conv", "a", "b"))) == "int8"


def test_passing_the_gate_comes_first() -> None:
    assert best(tried("fast but failed", 5.0, 0, (), passed=False), tried("passed", 9.0, 4, ())) == "passed"
