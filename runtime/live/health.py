"""What /healthz and /api/state say about every camera of a run: `ok`, or `degraded` with the reasons.

A camera is degraded when it has given no result for longer than DEGRADED_AFTER_S (or five of its own
frame intervals, for a slow slideshow), which is what a stream reconnecting looks like from outside, or
when it has given none at all that long after the start. A sink (MQTT, webhooks, clips: anything with a
`problem()` saying what fails, or None) is degraded while it says so. Fed by the page's `publish` on the
camera thread, read on the web thread: plain dict updates, no lock needed for these reads.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

DEGRADED_AFTER_S = 10.0  # a camera silent this long (a stream reconnecting) makes the box degraded
SLOW_INTERVALS = 5  # ... or this many of its usual frame intervals, when that is longer


class CameraHealth:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self.cameras: dict[str, dict[str, Any]] = {}
        self.probes: dict[str, Callable[[], str | None]] = {}
        self.forgotten: set[str] = set()

    def expect(self, names: Iterable[str], regions: Mapping[str, Any] | None = None) -> None:
        """The run's cameras, so that one that never gives a result is noticed too; `regions`: each
        camera's `Region` (None: the whole frame), for /api/state."""
        for name in names:
            self.forgotten.discard(name)
            self.cameras.setdefault(name, {"results": 0, "last": None, "interval": 0.0, "reconnects": 0,
                                           "source": None, "region": None, "model": None})
            if regions is not None and name in regions:
                self.cameras[name]["region"] = _box(regions[name])

    def forget(self, names: Iterable[str]) -> None:
        """Cameras removed from the run (the box's reload): no longer expected."""
        for name in names:
            self.cameras.pop(name, None)
            self.forgotten.add(name)  # its last batch in flight may still publish: not a camera again

    def watch(self, name: str, problem: Callable[[], str | None]) -> None:
        """A sink's own check: its `problem()` is a reason to be degraded while it is not None."""
        self.probes[name] = problem

    def publish(self, camera: str, stats: dict[str, Any], record: Any = None) -> None:
        """A result of `camera`; `record` (its FrameRecord) gives the source (masked) and model version."""
        if camera in self.forgotten:
            return
        now = self.clock()
        self.expect([camera])
        state = self.cameras[camera]
        if state["last"] is not None:
            gap = now - state["last"]
            state["interval"] = gap if not state["interval"] else 0.9 * state["interval"] + 0.1 * gap
        state.update(results=state["results"] + 1, last=now, reconnects=int(stats.get("reconnects", 0)),
                     fps=stats.get("fps"))
        if record is not None:
            state.update(source=record.source, model=record.model or None)

    def report(self) -> dict[str, Any]:
        """{"status": "ok" | "degraded", "reasons": [...], "degraded_after_s": ...}."""
        now, reasons = self.clock(), []
        for name, state in self.cameras.items():
            limit = max(DEGRADED_AFTER_S, SLOW_INTERVALS * state["interval"])
            if state["last"] is None and now - self.started > limit:
                reasons.append(f"camera {name}: no result in {now - self.started:.0f} s since the start")
            elif state["last"] is not None and now - state["last"] > limit:
                reasons.append(f"camera {name}: no result for {now - state['last']:.0f} s (reconnecting?)")
        for name, problem in self.probes.items():
            said = problem()
            if said:
                reasons.append(f"{name}: {said}")
        return {"status": "degraded" if reasons else "ok", "reasons": reasons,
                "degraded_after_s": DEGRADED_AFTER_S}

    def listing(self) -> list[dict[str, Any]]:
        """Every camera for /api/state: name, source (masked), region ([x, y, w, h] in the units given; null:
        the whole frame), the model version of its last result, results, seconds since the last, reconnects
        (source and model are null until its first result)."""
        now = self.clock()
        return [{"camera": name, "source": s["source"], "region": s["region"], "model": s["model"],
                 "results": s["results"], "reconnects": s["reconnects"],
                 "last_result_s": None if s["last"] is None else round(now - s["last"], 3)}
                for name, s in self.cameras.items()]


def _box(region: Any) -> list[float] | None:
    """A Region as [x, y, w, h] (whole numbers as such: pixels, or a fraction's 0 and 1)."""
    if region is None:
        return None
    return [int(v) if float(v).is_integer() else v for v in (region.x, region.y, region.w, region.h)]
