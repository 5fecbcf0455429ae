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


def _scrape(url: str) -> dict[str, float]:
    """The samples of a /metrics page, by name and labels (empty until it answers)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    return {f"{s.name}{sorted(s.labels.items())}": s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_a_camera_run_serves_metrics_on_its_port_and_on_the_page(imagenet_bundle, tmp_path) -> None:
    """A real `edgecnn camera` on a looping clip: both /metrics count its frames, labelled by camera."""
    import signal
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    ports = []
    for _ in range(2):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    clip = Path(__file__).parents[3] / "samples/videos/cup.mp4"
    camera = subprocess.Popen([sys.executable, "-m", "edgecnn", "camera", str(imagenet_bundle), "--source",
                               str(clip), "--headless", "--loop", "--serve", str(ports[0]), "--metrics",
                               str(ports[1])], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    key = "edgecnn_frames_processed[('camera', 'cup')]"
    try:
        deadline = time.monotonic() + 90
        while _scrape(f"http://127.0.0.1:{ports[1]}/metrics").get(key, 0) < 5 and time.monotonic() < deadline:
            time.sleep(0.5)
        own, page = (_scrape(f"http://127.0.0.1:{port}/metrics") for port in (ports[1], ports[0]))
        assert own.get(key, 0) >= 5 and page.get(key, 0) >= 5, (own, page)
        assert any(name.startswith("edgecnn_latency_ms_count") for name in page)
    finally:
        camera.send_signal(signal.SIGINT)
        output = camera.communicate(timeout=30)[0].decode()
    assert camera.returncode == 130 and "Traceback" not in output, output
