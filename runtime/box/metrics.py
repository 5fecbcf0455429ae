"""Prometheus metrics of a camera run: a `Sink` (per frame) and an `EventSink` (per state change) that
keep prometheus-client series in their own CollectorRegistry, every series labelled by camera."""

from __future__ import annotations

import threading
import time
from typing import Any

from edgecnn.runtime.live.events import ClipDropped, Event
from edgecnn.runtime.live.frames import LiveUpdate

LATENCY_BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


class CameraMetrics:
    """Counts frames, latencies, FPS, reconnects, states, events, unknowns and sink failures per camera."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        labels, reg = ["camera"], self.registry
        self.frames = {name: Gauge(f"edgecnn_frames_{name}", f"frames {name} by the camera", labels,
                                   registry=reg) for name in ("read", "processed", "dropped")}
        self.inference = Histogram("edgecnn_inference_ms", "inference time of the frame's batch (ms)",
                                   labels, buckets=LATENCY_BUCKETS_MS, registry=reg)
        self.latency = Histogram("edgecnn_latency_ms", "camera-to-result latency (ms)", labels,
                                 buckets=LATENCY_BUCKETS_MS, registry=reg)
        self.fps = Gauge("edgecnn_fps", "recent results per second", labels, registry=reg)
        self.reconnects = Gauge("edgecnn_reconnects", "reconnects of the source", labels, registry=reg)
        self.unknown = Counter("edgecnn_unknown_frames", "frames judged unknown", labels, registry=reg)
        self.state = Gauge("edgecnn_state", "1 for the camera's current state", ["camera", "state"],
                           registry=reg)
        self.state_since = Gauge("edgecnn_state_since_seconds", "Unix time the current state began",
                                 labels, registry=reg)
        self.events = Counter("edgecnn_events", "state changes by new state", ["camera", "state"],
                              registry=reg)
        self.clips_dropped = Counter("edgecnn_clips_dropped", "clips an event named, then dropped",
                                     labels, registry=reg)
        self.sink_failures = Counter("edgecnn_sink_failures", "failures of a sink", ["camera", "sink"],
                                     registry=reg)
        self._lock = threading.Lock()

    def publish(self, update: LiveUpdate) -> None:
        """Cheap counter updates only: the loop waits for this."""
        camera, stats = update.record.camera, update.stats
        for name in self.frames:
            self.frames[name].labels(camera).set(stats.get(f"frames_{name}", 0))
        self.inference.labels(camera).observe(update.record.inference_ms)
        self.latency.labels(camera).observe(update.record.latency_ms)
        self.fps.labels(camera).set(stats.get("fps", 0.0))
        self.reconnects.labels(camera).set(stats.get("reconnects", 0))
        unknown = self.unknown.labels(camera)  # the series exists at 0 before the first unknown frame
        if update.record.unknown:
            unknown.inc()

    def event(self, event: Event) -> None:
        with self._lock:
            if event.previous is not None:
                self.state.labels(event.camera, event.previous).set(0)
            self.state.labels(event.camera, event.state).set(1)
            self.state_since.labels(event.camera).set(time.time())
            self.events.labels(event.camera, event.state).inc()

    def clip_dropped(self, notice: ClipDropped) -> None:
        """Not a state change: the events by state and the current state stay as they are."""
        self.clips_dropped.labels(notice.camera).inc()

    def failed(self, camera: str, sink: str) -> None:
        """The hook other sinks call when a send or write fails."""
        self.sink_failures.labels(camera, sink).inc()

    def render(self) -> tuple[bytes, str]:
        """The /metrics body and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def serve(self, host: str, port: int) -> Any:
        """--metrics [HOST:]PORT with no page: its own HTTP server; call .shutdown() at the end."""
        from prometheus_client import start_http_server

        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server

    def finish(self, stopped_by: str) -> None:
        pass

    def close(self) -> None:
        pass
