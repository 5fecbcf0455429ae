"""The page's timeline: the recent events of each camera, kept for /api/state and the /events stream.
An event whose clip was dropped (`ClipDropped`) stays listed, its `clip` null: no link to a missing file."""

from __future__ import annotations

from collections import deque
from typing import Any

from edgecnn.runtime.live.events import ClipDropped, Event

RECENT = 20  # events kept per camera


class Timeline:
    """Recent events per camera (bounded), in the order they happened."""

    def __init__(self, cameras: tuple[str, ...] = ()) -> None:
        self.cameras: dict[str, deque[dict[str, Any]]] = {name: deque(maxlen=RECENT) for name in cameras}

    def add(self, event: Event) -> None:
        self.cameras.setdefault(event.camera, deque(maxlen=RECENT)).append(event.to_json())

    def clip_dropped(self, notice: ClipDropped) -> None:
        events = self.cameras.get(notice.camera, ())
        for index, shown in enumerate(events):
            if (shown["started_at"], shown["clip"]) == (notice.started_at, notice.clip_dropped):
                events[index] = shown | {"clip": None}

    def state(self) -> dict[str, list[dict[str, Any]]]:
        return {name: list(events) for name, events in self.cameras.items()}
