"""The consensus that turns per-frame answers into states, at the frame rates real cameras have."""

from __future__ import annotations

import pytest
from edgecnn.runtime.box.states import CameraState, Consensus
from edgecnn.runtime.live.frames import FrameRecord, Shown


def record(frame: int, fps: float, label: str) -> FrameRecord:
    return FrameRecord(source="cam", frame=frame, timestamp=round(frame / fps, 4), label=label,
                       top=(Shown(label, 0.9),), unknown_score=None, unknown=False, inference_ms=1.0,
                       latency_ms=1.0, camera="cam")


def first_event_frame(labels: list[str], fps: float) -> list[tuple]:
    state = CameraState("cam", Consensus())  # the defaults: 3 of 5, 0.3 s
    events = [state.add(record(i, fps, label), i / fps) for i, label in enumerate(labels)]
    return [(i, e.state, e.frame) for i, e in enumerate(events) if e is not None]


@pytest.mark.parametrize("fps", [5.0, 10.0, 27.0, 60.0])
def test_a_steady_answer_becomes_a_state_after_the_minimum_duration_at_any_frame_rate(fps: float) -> None:
    events = first_event_frame(["cup"] * 100, fps)
    assert len(events) == 1, events  # 27 FPS made no event when T was counted inside the 5-frame window
    at, state, started = events[0]
    assert state == "cup" and started == 0
    assert (at - started) / fps >= 0.3 - 1e-3 and at - started <= max(2, round(0.3 * fps) + 1)


def test_a_challenger_that_loses_its_majority_starts_its_time_again() -> None:
    fps = 30.0  # 0.3 s = 9 frames
    labels = ["cup"] * 20 + ["box"] * 6 + ["cup"] * 6 + ["box"] * 20
    events = first_event_frame(labels, fps)
    assert [e[1] for e in events] == ["cup", "box"], events
    assert events[1][2] == 32  # the second run of "box", not the first, which never lasted 0.3 s
    assert events[1][0] >= 32 + 9


def test_an_event_says_which_model_was_live() -> None:
    # issue 28 item 4: after a hot swap, the events name the new model's version, as the JSONL records do
    from dataclasses import replace

    state = CameraState("cam", Consensus())
    versions = ["v1"] * 30 + ["v2"] * 30
    labels = ["cup"] * 30 + ["box"] * 30
    events = [state.add(replace(record(i, 30.0, label), model=model), i / 30.0)
              for i, (label, model) in enumerate(zip(labels, versions, strict=True))]
    assert [(e.state, e.model) for e in events if e is not None] == [("cup", "v1"), ("box", "v2")]
    assert [e.to_json()["model"] for e in events if e is not None] == ["v1", "v2"]
