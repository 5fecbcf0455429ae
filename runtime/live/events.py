"""What a camera's state change is, and who hears of it (the interface the state tracker, the sinks and
the clip maker share; the tracker itself lives in states.py).

A camera's state is a class label, "none" (its none class) or "unknown". When the consensus of recent
frames settles on another state, one `Event` is made: first the `ClipMaker` (--clips) is asked for the
clip's file name, then every `EventSink` (--events JSONL, MQTT, webhooks, the page) gets the event. Both
must return at once: they queue their work on their own threads, never on the camera loop's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

from edgecnn.runtime.core.records import spec

NONE_STATE = "none"
UNKNOWN_STATE = "unknown"


@dataclass(frozen=True)
class Event:
    """One state change of one camera, as every sink receives it (and --events writes it, one a line)."""

    camera: str  # the camera's name (--name or derived from its source; names.py)
    state: str  # a class label, "none" or "unknown"
    previous: str | None = spec()  # None: the camera's first state
    probability: float = spec(low=0.0, high=1.0)  # of the new state's class (consensus frames' mean)
    unknown_score: float | None = spec()  # None: the model has no unknown detector
    started_at: str = spec()  # ISO 8601 with the zone: when the first frame of the new state was captured
    frame: int = spec(low=0)  # the source's frame index where the new state began
    clip: str | None = spec(None)  # the clip's file name under --clips, when one is being made
    model: str = spec("")  # the live model's version (ModelMeta.version) then: a hot swap changes it

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class EventSink(Protocol):
    """Hears of every event; `event` must return at once (queue, then send on a thread)."""

    def event(self, event: Event) -> None: ...

    def close(self) -> None:
        """The run is over: flush what can be flushed in a bounded time, then stop."""
        ...


class ClipMaker(Protocol):
    """--clips: asked first, so the event can name its clip; None when no clip will be made."""

    def begin(self, event: Event) -> str | None: ...
