"""Each camera's state, by consensus of its recent frames: a `Sink` that turns answers into `Event`s.

    tracker = StateTracker(Consensus(k=3, n=5, min_duration=0.3), sinks=(events_file, mqtt))

A frame votes for what it shows: a class label, "none" (a class named none or background) or "unknown".
An "uncertain" frame (top-1 below --min-prob) takes a place among the last N but votes for nothing, so
uncertain frames alone never make a state. A new state is entered when at least K of the last N
processed frames voted for it and it has kept that majority for T seconds, counted from its first vote
in the window where the majority began (media time for files and folders, wall clock for live sources),
so a single odd frame never makes an event. (Counting T inside the window alone never fired at
frame rates above N/T, 17 FPS with the defaults: a 27 FPS clip made no event at all.)
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.live.events import (
    NONE_STATE,
    UNKNOWN_STATE,
    ClipDropped,
    ClipMaker,
    Event,
    EventSink,
)
from edgecnn.runtime.live.frames import FrameRecord, LiveUpdate

NONE_LABELS = ("none", "background")
UNCERTAIN = "uncertain"
# float error: at 10 fps, frames 21 to 24 (2.4 - 2.1 s = 0.29999...) must count as lasting 0.3 s
DURATION_SLACK_S = 1e-3


@dataclass(frozen=True)
class Consensus:
    """K of the last N frames, lasting T seconds (defaults: 3 of 5, 0.3 s)."""

    k: int = 3
    n: int = 5
    min_duration: float = 0.3

    @classmethod
    def parse(cls, text: str, min_duration: float = 0.3) -> Consensus:
        """--consensus K/N, e.g. 3/5."""
        try:
            k, n = (int(part) for part in text.split("/"))
        except ValueError:
            raise EdgecnnError(f"--consensus {text!r} is not K/N; give e.g. 3/5 (3 of the last 5 frames)"
                               ) from None
        return cls(k, n, min_duration).checked()

    def checked(self) -> Consensus:
        if not 1 <= self.k <= self.n <= 1000:
            raise EdgecnnError(f"--consensus {self.k}/{self.n}: give 1 <= K <= N <= 1000, e.g. 3/5")
        if not 0.0 <= self.min_duration <= 86_400:
            raise EdgecnnError(f"--min-duration {self.min_duration} is out of range; give 0 to 86400 s")
        return self


@dataclass(frozen=True)
class _Vote:
    state: str | None  # None: uncertain
    frame: int
    timestamp: float
    captured_at: float  # epoch seconds
    probability: float
    unknown_score: float | None


def vote_of(record: FrameRecord) -> str | None:
    """What one frame votes for; None for an uncertain frame."""
    if record.label == UNCERTAIN:
        return None
    if record.label == UNKNOWN_STATE:
        return UNKNOWN_STATE
    return NONE_STATE if record.label.lower() in NONE_LABELS else record.label


class CameraState:
    """One camera's window of votes and its current state."""

    def __init__(self, camera: str, consensus: Consensus) -> None:
        self.camera, self.consensus = camera, consensus
        self.votes: deque[_Vote] = deque(maxlen=consensus.n)
        self.state: str | None = None
        self.since: _Vote | None = None  # a challenger's first vote of the majority it holds now

    def add(self, record: FrameRecord, captured_at: float) -> Event | None:
        """The event this frame completes, if any."""
        state = vote_of(record)
        probability = next((s.probability for s in record.top if vote_of_label(s.label) == state), 0.0)
        self.votes.append(_Vote(state, record.frame, record.timestamp, captured_at, probability,
                                record.unknown_score))
        if self.since is not None and self._votes_for(self.since.state) < self.consensus.k:
            self.since = None  # the challenger lost its majority: its time starts again
        if state is None or state == self.state:
            return None
        agreeing = [vote for vote in self.votes if vote.state == state]
        if len(agreeing) < self.consensus.k:
            return None
        if self.since is None or self.since.state != state:
            self.since = agreeing[0]
        if record.timestamp - self.since.timestamp + DURATION_SLACK_S < self.consensus.min_duration:
            return None
        first, previous, self.state, self.since = self.since, self.state, state, None
        started = datetime.fromtimestamp(first.captured_at, timezone.utc).astimezone()
        return Event(camera=self.camera, state=state, previous=previous,
                     probability=round(sum(v.probability for v in agreeing) / len(agreeing), 5),
                     unknown_score=record.unknown_score,
                     started_at=started.isoformat(timespec="milliseconds"),
                     frame=first.frame, model=record.model)

    def _votes_for(self, state: str | None) -> int:
        return sum(vote.state == state for vote in self.votes)


def vote_of_label(label: str) -> str:
    return NONE_STATE if label.lower() in NONE_LABELS else label


class StateTracker:
    """A `Sink` of the camera loop: per-camera consensus; a change goes to the clip maker, then the sinks.
    A clip dropped later goes to the same sinks as a `ClipDropped` notice, never before its event."""

    def __init__(self, consensus: Consensus, sinks: Sequence[EventSink] = (), clips: ClipMaker | None = None
                 ) -> None:
        self.consensus, self.sinks, self.clips = consensus.checked(), tuple(sinks), clips
        self.cameras: dict[str, CameraState] = {}
        self.events = 0
        # the loop's event and the clip worker's notice reach the sinks one at a time, event first
        self._lock = threading.RLock()

    def publish(self, update: LiveUpdate) -> None:
        record = update.record
        camera = self.cameras.get(record.camera)
        if camera is None:
            camera = self.cameras[record.camera] = CameraState(record.camera, self.consensus)
        event = camera.add(record, float(update.stats.get("captured_at") or record.timestamp))
        if event is None:
            return
        with self._lock:
            if self.clips is not None:
                event = replace(event, clip=self.clips.begin(event, self.clip_dropped))
            self.events += 1
            for sink in self.sinks:
                sink.event(event)

    def clip_dropped(self, notice: ClipDropped) -> None:
        """The clip maker's word that an event's clip will never exist: told to every sink."""
        with self._lock:
            for sink in self.sinks:
                sink.clip_dropped(notice)

    def finish(self, stopped_by: str) -> None:
        """Nothing to flush here: the sinks are closed by whoever made them (wiring.py)."""
