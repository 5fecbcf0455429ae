"""The camera's --jsonl line as a typed record, declared with the record engine's field specs, and the one
reader of a --jsonl file (tests, `--collect` checks, tools that replay a run).

The fields are those the camera loop writes for each processed frame (`camera.py`'s `_record`), rounded
as written there; `to_json()` gives the line's object back, key for key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgecnn.runtime.core.files import read_bounded
from edgecnn.runtime.core.records import Origin, from_dict, read_json, spec

MAX_JSONL_BYTES = 2_000_000_000  # a day of one camera at 30 fps is about 700 MB
MAX_LINE_CHARS = 1_000_000  # one frame's record; its top-k labels are the longest part


@dataclass(frozen=True)
class Shown:
    """One of a frame's top-k classes."""

    label: str
    probability: float = spec(low=0.0, high=1.0)


@dataclass(frozen=True)
class FrameRecord:
    """One processed frame, as --jsonl writes it."""

    source: str  # credentials masked
    frame: int  # index in its source
    timestamp: float = spec()  # seconds into the source
    label: str = spec()  # what is shown: a class, "uncertain" (top-1 below --min-prob) or "unknown"
    top: tuple[Shown, ...] = spec()  # best first
    unknown_score: float | None = spec()  # None: the model has no unknown detector
    unknown: bool = spec()
    inference_ms: float = spec()  # the batch this frame was in
    latency_ms: float = spec()  # camera-to-result

    def to_json(self) -> dict[str, Any]:
        """The line's object, as the camera writes it."""
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
