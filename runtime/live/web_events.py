"""The page's timeline: the recent events of each camera, kept for /api/state and the /events stream."""

from __future__ import annotations

from collections import deque
from typing import Any

from edgecnn.runtime.live.events import Event

RECENT = 20  # events kept per camera


class Timeline:
    """Recent events per camera (bounded), in the order they happened."""

    def __init__(self, cameras: tuple[str, ...] = ()) -> None:
        self.cameras: dict[str, deque[dict[str, Any]]] = {name: deque(maxlen=RECENT) for name in cameras}

    def add(self, event: Event) -> None:
        self.cameras.setdefault(event.camera, deque(maxlen=RECENT)).append(event.to_json())

    def state(self) -> dict[str, list[dict[str, Any]]]:
        return {name: list(events) for name, events in self.cameras.items()}
