"""/healthz says `degraded` while a sink keeps failing and `ok` again once it recovers: a real mosquitto
stopped and restarted under a connected MqttSink, a real HTTP receiver that refuses and then accepts, each
read through a real page server's /healthz."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from edgecnn.runtime.box.failing import Failing, watch_sinks
from edgecnn.runtime.live.events import Event

from tests.box.test_events import free_port, start_broker

pytest.importorskip("uvicorn", reason="the web extra is not installed: pip install '.[web]'")
SHORT = 0.5  # failing this long is degraded here (the default, FAILING_AFTER_S, is 10 s)
EVENT = Event("shelf", "red", None, 0.9, None, "2026-12-07T05:00:00.000+00:00", 3)


@pytest.fixture
def page() -> Iterator[Any]:
    from edgecnn.runtime.live.web import LiveServer, ServeAddress

    with LiveServer(ServeAddress("127.0.0.1", 0), "shelf", say=lambda m: None) as server:
        yield server


def healthz(server: Any) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=10) as response:
        assert response.status == 200  # degraded is said in the body: the process itself still serves
        return json.loads(response.read())


def until(server: Any, status: str, seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while (report := healthz(server))["status"] != status and time.monotonic() < deadline:
        time.sleep(0.1)
    assert report["status"] == status, report
    return report


@pytest.mark.parametrize(("events", "at", "expected"), [
    ([], 100.0, None), ([(0.0, "x")], 10.0, None), ([(0.0, "x"), (5.0, "y")], 10.1, "y"),
    ([(0.0, "x"), (9.0, None)], 20.0, None), ([(0.0, "x"), (9.0, None), (15.0, "z")], 24.0, None)])
def test_a_failure_counts_once_it_lasts_longer_than_failing_after_s(
        events: list[tuple[float, str | None]], at: float, expected: str | None) -> None:
    now = [0.0]
    failing = Failing("webhook w", after_s=10.0, clock=lambda: now[0])
    for when, reason in events:  # a reason: a failed try; None: a try that worked
        now[0] = when
        failing.failed(reason) if reason else failing.ok()
    now[0] = at
    said = failing.problem()
    assert (said and said.endswith(f"({expected})")) if expected else said is None, said


def test_a_broker_that_stops_makes_healthz_degraded_until_it_is_back(tmp_path: Path, page: Any) -> None:
    from edgecnn.runtime.box.mqtt import MqttSink

    port = free_port()
    broker = start_broker(tmp_path, port)
    sink = MqttSink(f"mqtt://127.0.0.1:{port}", ["shelf"], ["red"], failing_after_s=SHORT)
    watch_sinks([page], [sink])
    try:
        until(page, "ok", 15)
        broker.terminate()
        broker.wait(10)
        reasons = until(page, "degraded", 15)["reasons"]
        assert len(reasons) == 1 and reasons[0].startswith(f"mqtt: broker 127.0.0.1:{port} (camera shelf) "
                                                           "failing for "), reasons
        broker = start_broker(tmp_path, port)
        assert until(page, "ok", 30)["reasons"] == []  # paho's backoff: 1, 2, 4 s ...
    finally:
        sink.close()
        broker.terminate()
        broker.wait(10)


def refusing_receiver() -> tuple[ThreadingHTTPServer, threading.Event, list[Any]]:
    """A loopback HTTP receiver answering 503 while `refusing` is set, else 204 keeping the body."""
    refusing, received = threading.Event(), []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if not refusing.is_set():
                received.append(json.loads(body))
            self.send_response(503 if refusing.is_set() else 204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    refusing.set()
    return server, refusing, received


def test_a_refusing_webhook_makes_healthz_degraded_until_it_accepts(page: Any) -> None:
    from edgecnn.runtime.box.webhook import WebhookSink

    server, refusing, received = refusing_receiver()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    sink = WebhookSink([url], failing_after_s=SHORT)
    watch_sinks([page], [sink])
    try:
        assert until(page, "ok", 1)["reasons"] == []  # nothing sent yet: nothing failing
        sink.event(EVENT)
        reasons = until(page, "degraded", 15)["reasons"]
        assert len(reasons) == 1 and reasons[0].startswith(f"webhook: webhook {url} failing for "), reasons
        assert reasons[0].endswith("(answered HTTP 503)")
        refusing.clear()
        until(page, "ok", 15)  # the next retry (backoff 0.2, 0.4, 0.8 s ...) gets through
        assert received == [EVENT.to_json()]
    finally:
        sink.close()
        server.shutdown()


def test_an_unreachable_webhook_says_so(page: Any) -> None:
    from edgecnn.runtime.box.webhook import WebhookSink

    url = f"http://127.0.0.1:{free_port()}/hook"  # nobody listens
    sink = WebhookSink([url], failing_after_s=SHORT)
    watch_sinks([page], [sink])
    try:
        sink.event(EVENT)
        reasons = until(page, "degraded", 15)["reasons"]
        assert len(reasons) == 1 and "unreachable" in reasons[0] and "refused" in reasons[0], reasons
    finally:
        sink.close()


def test_the_wiring_hands_every_failing_sink_to_the_page(page: Any) -> None:
    from edgecnn.runtime.box.wiring import EventOptions, event_sinks

    options = EventOptions(mqtt=f"mqtt://127.0.0.1:{free_port()}", webhooks=("http://127.0.0.1:1/hook",))
    wiring = event_sinks(options, ["shelf"], ["red"], extra=[page])
    try:
        mqtt, webhook = wiring.owned
        assert page.health.probes == {"mqtt": mqtt.problem, "webhook": webhook.problem}
        assert healthz(page)["status"] == "ok"  # down for less than FAILING_AFTER_S (10 s): not yet
    finally:
        wiring.close()


def scrape(server: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The page's /metrics, read with prometheus_client's own parser, by name and labels."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def failures(server: Any, camera: str, sink: str) -> float:
    return scrape(server).get(("edgecnn_sink_failures_total", (("camera", camera), ("sink", sink))), 0)


def test_metrics_count_each_cameras_sink_failures(page: Any) -> None:
    """A webhook on a closed loopback port and a broker nobody runs: /metrics counts their failed tries,
    the webhook's by the camera whose event failed, MQTT's on each camera's own client."""
    pytest.importorskip("prometheus_client")
    from edgecnn.runtime.box.metrics import CameraMetrics
    from edgecnn.runtime.box.wiring import EventOptions, event_sinks, with_metrics

    options = EventOptions(mqtt=f"mqtt://127.0.0.1:{free_port()}",
                           webhooks=(f"http://127.0.0.1:{free_port()}/hook",))
    metrics = CameraMetrics()
    page.metrics = metrics.render
    wiring = with_metrics(event_sinks(options, ["shelf", "door"], ["red"], extra=[page]), metrics)
    try:
        for sink in wiring.tracker.sinks:
            sink.event(EVENT)  # the shelf's event, to every event sink (metrics included)
        deadline = time.monotonic() + 20  # webhook retries at 0.2, 0.4, 0.8 s; paho reconnects at 1, 2 s
        while time.monotonic() < deadline and not (failures(page, "shelf", "webhook") >= 2 and all(
                failures(page, camera, "mqtt") >= 1 for camera in ("shelf", "door"))):
            time.sleep(0.2)
        assert failures(page, "shelf", "webhook") >= 2, scrape(page)
        assert failures(page, "shelf", "mqtt") >= 1 and failures(page, "door", "mqtt") >= 1, scrape(page)
        assert failures(page, "door", "webhook") == 0  # the door sent nothing to the webhook
    finally:
        wiring.close()
    assert wiring.counts()["webhook_sent"] == 0
