"""What the camera loop hands on for each processed frame: its result, the one record that --jsonl, the
page and every sink share (and its one reader, `read_jsonl`), and a sink's update."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from edgecnn.runtime.core.engine import Prediction
from edgecnn.runtime.core.files import read_bounded
from edgecnn.runtime.core.records import Origin, from_dict, read_json, spec
from edgecnn.runtime.live.overlay import shown_label
from edgecnn.runtime.live.video import Frame

MAX_JSONL_BYTES = 2_000_000_000  # a day of one camera at 30 fps is about 700 MB
MAX_LINE_CHARS = 1_000_000  # one frame's record; its top-k labels are the longest part

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
    camera: str = ""  # the camera's name (names.py)
    model: str = ""  # the version of the model that gave it (ModelMeta.version): it changes on a hot swap


@dataclass(frozen=True)
class Shown:
    """One of a frame's top-k classes, as a record shows it."""

    label: str
    probability: float = spec(low=0.0, high=1.0)


@dataclass(frozen=True)
class FrameRecord:
    """One processed frame as --jsonl writes it, the page shows it and a sink receives it (rounded);
    declared with the record engine's specs, so `read_jsonl` reads it back checked."""

    source: str  # credentials masked
    frame: int  # index in its source
    timestamp: float = spec()  # seconds into the source
    label: str = spec()  # what is shown: a class, "uncertain" (top-1 below --min-prob) or "unknown"
    top: tuple[Shown, ...] = spec()  # best first
    unknown_score: float | None = spec()  # None: the model has no unknown detector
    unknown: bool = spec()
    inference_ms: float = spec()  # the batch this frame was in
    latency_ms: float = spec()  # camera-to-result
    camera: str = spec("")  # the camera's name (--name or derived from the source; names.py)
    model: str = spec("")  # the model's version (export time and metadata digest): changes on a hot swap

    @classmethod
    def of(cls, result: FrameResult, min_prob: float) -> FrameRecord:
        return cls(source=result.source, frame=result.frame.index, timestamp=round(result.frame.timestamp, 4),
                   label=shown_label(result.top, min_prob, result.unknown),
                   top=tuple(Shown(p.label, round(p.probability, 5)) for p in result.top),
                   unknown_score=None if result.unknown_score is None else round(result.unknown_score, 5),
                   unknown=result.unknown, inference_ms=round(result.inference_ms, 3),
                   latency_ms=round(result.latency_ms, 3), camera=result.camera,
                   model=result.model)

    def to_json(self) -> dict[str, Any]:
        """The JSONL line's object (the page's /api/state carries the same keys)."""
        return asdict(self) | {"top": [asdict(shown) for shown in self.top]}


def read_jsonl(path: str | Path) -> list[FrameRecord]:
    """Every record of a --jsonl file; EdgecnnError naming the line and field that is wrong."""
    text = read_bounded(path, MAX_JSONL_BYTES, "--jsonl file").decode("utf-8", errors="replace")
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            origin = Origin(f"{path} line {number}", "is not a frame record",
                            "give a file that `edgecnn camera --jsonl` wrote", "the line")
            records.append(from_dict(FrameRecord, read_json(line, origin, MAX_LINE_CHARS), origin))
    return records


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

    def finish(self, stopped_by: str) -> None:
        """The run is over: end | max_frames | quit | interrupt | error (the page says so)."""
        ...
