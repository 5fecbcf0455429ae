"""What a camera's state change is, and who hears of it (the interface the state tracker, the sinks and
the clip maker share; the tracker itself lives in states.py).

A camera's state is a class label, "none" (its none class) or "unknown". When the consensus of recent
frames settles on another state, one `Event` is made: first the `ClipMaker` (--clips) is asked for the
clip's file name, then every `EventSink` (--events JSONL, MQTT, webhooks, the page) gets the event. Both
must return at once: they queue their work on their own threads, never on the camera loop's.

An event names its clip before the clip is written; when that clip is then dropped (a write error, a full
disk, no frame of its camera reached it, a name taken meanwhile), every `EventSink` hears of it once, after
the event itself, through `clip_dropped` (a `ClipDropped` notice: not a state change).
"""

from __future__ import annotations

from collections.abc import Callable
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


@dataclass(frozen=True)
class ClipDropped:
    """The clip an event named will never exist: the event it follows is (camera, started_at, frame).

    Sent as `{camera, state, started_at, frame, clip: null, clip_dropped, why}` (one JSON object: a line
    of --events, an MQTT event message, a webhook POST); a reader tells it from an event by `clip_dropped`.
    """

    camera: str
    state: str  # the state of the event it follows (not a new state)
    started_at: str  # that event's, as it gave it
    frame: int  # that event's
    clip_dropped: str  # the file name the event gave in `clip`
    why: str  # one line: the write error, "no frame of the camera reached the clip", ...

    @classmethod
    def of(cls, event: Event, clip: str, why: str) -> ClipDropped:
        """The notice for `event`, whose clip was to be `clip`."""
        return cls(event.camera, event.state, event.started_at, event.frame, clip, why)

    def follows(self, event: Event) -> bool:
        """Whether `event` is the one whose clip this is."""
        return (event.camera, event.started_at, event.clip) == (self.camera, self.started_at,
                                                                 self.clip_dropped)

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        return {key: record[key] for key in ("camera", "state", "started_at", "frame")} | {
            "clip": None, "clip_dropped": self.clip_dropped, "why": self.why}


class EventSink(Protocol):
    """Hears of every event; `event` and `clip_dropped` must return at once (queue, then send on a
    thread). They are never called at the same time (the tracker holds one lock around both)."""

    def event(self, event: Event) -> None: ...

    def clip_dropped(self, notice: ClipDropped) -> None:
        """An event's clip will never exist (after that event, from the clip worker's thread)."""
        ...

    def close(self) -> None:
        """The run is over: flush what can be flushed in a bounded time, then stop."""
        ...


class ClipMaker(Protocol):
    """--clips: asked first, so the event can name its clip; None when no clip will be made. When the
    named clip is dropped later, `dropped` is called with the notice (never from within `begin`)."""

    def begin(self, event: Event, dropped: Callable[[ClipDropped], None]) -> str | None: ...
