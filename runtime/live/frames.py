"""What the camera loop hands on for each processed frame: its result, the one record that --jsonl, the
page and every sink share, and a sink's update."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from edgecnn.runtime.core.engine import Prediction
from edgecnn.runtime.live.overlay import shown_label
from edgecnn.runtime.live.video import Frame


@dataclass(frozen=True)
class FrameResult:
    """One frame's result, as the loop hands it to the display, the recorders and a `sink`."""

    source_index: int
    source: str  # credentials masked
    frame: Frame
    top: list[Prediction]  # best first
    probabilities: np.ndarray  # smoothed
    inference_ms: float  # the batch this frame was in
    latency_ms: float  # camera-to-result
    fps: float  # this source's recent results per second
    annotated: np.ndarray | None = None  # drawn when a window shows it
    unknown_score: float | None = None  # smoothed like the probabilities; None: the model has no detector
    unknown: bool = False  # the smoothed score above the model's unknown threshold


@dataclass(frozen=True)
class FrameRecord:
    """One processed frame as --jsonl writes it, the page shows it and a sink receives it (rounded)."""

    source: str  # credentials masked
    frame: int
    timestamp: float  # seconds into the source
    label: str  # what is shown: a class, "uncertain" (top-1 below --min-prob) or "unknown"
    top: tuple[tuple[str, float], ...]  # (label, probability), best first
    unknown_score: float | None
    unknown: bool
    inference_ms: float
    latency_ms: float

    @classmethod
    def of(cls, result: FrameResult, min_prob: float) -> FrameRecord:
        return cls(source=result.source, frame=result.frame.index, timestamp=round(result.frame.timestamp, 4),
                   label=shown_label(result.top, min_prob, result.unknown),
                   top=tuple((p.label, round(p.probability, 5)) for p in result.top),
                   unknown_score=None if result.unknown_score is None else round(result.unknown_score, 5),
                   unknown=result.unknown, inference_ms=round(result.inference_ms, 3),
                   latency_ms=round(result.latency_ms, 3))

    def to_json(self) -> dict[str, Any]:
        """The JSONL line's object (the page's /api/state carries the same keys)."""
        return {"source": self.source, "frame": self.frame, "timestamp": self.timestamp, "label": self.label,
                "top": [{"label": label, "probability": p} for label, p in self.top],
                "unknown_score": self.unknown_score, "unknown": self.unknown,
                "inference_ms": self.inference_ms, "latency_ms": self.latency_ms}


@dataclass(frozen=True)
class LiveUpdate:
    """What the loop hands a sink for each result: the --jsonl record, run counters, and the frame."""

    record: FrameRecord
    stats: dict[str, Any]  # fps, frames_read/processed/dropped, reconnects, min_prob, captured_at
    draw: Callable[[], np.ndarray]  # the annotated BGR frame (several sources: the grid), drawn on first call
    image: np.ndarray | None = None  # this source's frame as captured (BGR), for sinks that keep frames


class Sink(Protocol):
    """A live consumer of results (the web page). `publish` must return at once: the loop waits for it."""

    def publish(self, update: LiveUpdate) -> None: ...
