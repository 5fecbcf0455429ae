"""Since when a sink has been failing, and why: the hook the MQTT and webhook sinks call, read by /healthz.

A sink calls `failed(reason)` on each failed try (broker unreachable, a webhook refusing) and `ok()` on
each success; its `problem()` names the failure once it has lasted longer than FAILING_AFTER_S, so a
single lost try does not flap the box's health. `watch_sinks` hands every sink's `problem()` to the
page's `CameraHealth` (runtime/live/health.py), which says `degraded` with it as the reason. Each failed
try is also told to the `listeners` (`listen_failures`: Prometheus' sink failures, by camera and sink);
a listener attached after a try (the wiring adds metrics once the sinks exist) does not see it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

FAILING_AFTER_S = 10.0  # a sink failing this long makes the box degraded (paho's first retries: 1, 2, 4 s)


class Failing:
    """One sink target's failure streak: when it began and the latest reason. `sink` names the sink
    ("mqtt", "webhook") and `camera` the camera a target serves (None: each failure names its own)."""

    def __init__(self, what: str, after_s: float = FAILING_AFTER_S,
                 clock: Callable[[], float] = time.monotonic, sink: str = "",
                 camera: str | None = None) -> None:
        self.what, self.after_s, self.clock = what, after_s, clock
        self.sink, self.camera = sink, camera
        self.since: float | None = None
        self.reason = ""
        self.listeners: list[Callable[[str, str], None]] = []  # (camera, sink) per failed try

    def failed(self, reason: str, camera: str | None = None) -> None:
        """A failed try (of `camera`'s message, where the target serves several cameras)."""
        if self.since is None:
            self.since = self.clock()
        self.reason = reason
        camera = camera or self.camera
        for listener in self.listeners if camera else ():
            listener(camera, self.sink)

    def ok(self) -> None:
        self.since = None

    def problem(self) -> str | None:
        since = self.since  # read once: the sink's thread may clear it meanwhile
        if since is None or self.clock() - since <= self.after_s:
            return None
        return f"{self.what} failing for {self.clock() - since:.0f} s ({self.reason})"


def problems(failures: Iterable[Failing]) -> str | None:
    """The problems of several targets of one sink in one line, or None when none is failing."""
    said = [problem for failing in failures if (problem := failing.problem())]
    return "; ".join(said) or None


def listen_failures(sinks: Iterable[Any], listener: Callable[[str, str], None]) -> None:
    """`listener(camera, sink)` told each failed try of every sink with a `failing` dict of targets."""
    for sink in sinks:
        for failing in getattr(sink, "failing", {}).values():
            failing.listeners.append(listener)


def watch_sinks(pages: Iterable[Any], sinks: Iterable[Any]) -> None:
    """Each sink with a `problem()` watched by each page's health (a page: anything with `.health`)."""
    sinks = list(sinks)
    for page in pages:
        health = getattr(page, "health", None)
        for sink in sinks if health is not None else ():
            if callable(getattr(sink, "problem", None)):
                health.watch(type(sink).__name__.removesuffix("Sink").lower(), sink.problem)
