"""The metrics sink, read back with prometheus_client's own parser and over its own HTTP server."""

from __future__ import annotations

import urllib.request

import pytest

pytest.importorskip("prometheus_client")
from edgecnn.runtime.box.metrics import CameraMetrics
from edgecnn.runtime.live.events import Event
from edgecnn.runtime.live.frames import FrameRecord, LiveUpdate, Shown
from prometheus_client.parser import text_string_to_metric_families


def _update(camera: str, frame: int, unknown: bool) -> LiveUpdate:
    record = FrameRecord(source="cup.mp4", frame=frame, timestamp=frame / 30, label="cup",
                         top=(Shown("cup", 0.9),), unknown_score=0.1, unknown=unknown, inference_ms=4.0,
                         latency_ms=30.0, camera=camera)
    stats = {"fps": 12.5, "frames_read": frame + 1, "frames_processed": frame + 1, "frames_dropped": 0,
             "reconnects": 0}
    return LiveUpdate(record, stats, lambda: None, None)


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_series_per_camera_and_events() -> None:
    metrics = CameraMetrics()
    for frame in range(5):
        metrics.publish(_update("cup", frame, unknown=frame == 4))
        metrics.publish(_update("box", frame, unknown=False))
    metrics.event(Event("cup", "cup", None, 0.9, 0.1, "2026-12-07T05:00:00+00:00", 0))
    metrics.event(Event("cup", "unknown", "cup", 0.5, 0.9, "2026-12-07T05:00:01+00:00", 4))
    metrics.failed("cup", "webhook")
    samples = _samples(metrics.render()[0].decode())
    assert samples[("edgecnn_frames_read", (("camera", "cup"),))] == 5
    assert samples[("edgecnn_latency_ms_count", (("camera", "box"),))] == 5
    assert samples[("edgecnn_unknown_frames_total", (("camera", "cup"),))] == 1
    assert samples[("edgecnn_unknown_frames_total", (("camera", "box"),))] == 0
    assert samples[("edgecnn_state", (("camera", "cup"), ("state", "unknown")))] == 1
    assert samples[("edgecnn_state", (("camera", "cup"), ("state", "cup")))] == 0
    assert samples[("edgecnn_events_total", (("camera", "cup"), ("state", "cup")))] == 1
    assert samples[("edgecnn_sink_failures_total", (("camera", "cup"), ("sink", "webhook")))] == 1


def test_own_port_serves_and_stops() -> None:
    metrics = CameraMetrics()
    metrics.publish(_update("cup", 0, unknown=False))
    server = metrics.serve("127.0.0.1", 0)
    try:
        port = server.server_address[1]
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert _samples(text)[("edgecnn_fps", (("camera", "cup"),))] == 12.5
