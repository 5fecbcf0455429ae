"""States and events end to end: a real colour model on a slideshow folder, real mosquitto, a paho
subscriber, a loopback HTTP server for webhooks and the --events file, all seeing the same events."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tests.runtime.box_files import unknown_colour_onnx

MOSQUITTO = "/usr/sbin/mosquitto"
COLOURS = {"red": (0, 0, 255), "green": (0, 255, 0), "blue": (255, 0, 0), "grey": (128, 128, 128),
           "white": (255, 255, 255), "black": (0, 0, 0)}  # BGR, as cv2 writes them
OTHERS = ["grey", "stripes", "white", "checks", "black", "grey"]  # none of red, green, blue: unknown
# red, one odd blue frame, red; green, one odd unknown (grey) frame, green; then other things
SHOW = ["red"] * 6 + ["blue"] + ["red"] * 5 + ["green"] * 4 + ["grey"] + ["green"] * 4 + OTHERS
CHANGES = {"red": 0, "green": 12, "unknown": 21}  # where each true change is in SHOW
# the default consensus, 3 of the last 5 frames lasting 0.3 s: at 10 fps each change comes out 3 frames
# after it began (within N = 5 frames)
CONSENSUS_N, REPORTED_AFTER = 5, 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_broker(folder: Path, port: int, password: str | None = None, extra: str = ""
                 ) -> subprocess.Popen[bytes]:
    """mosquitto on a loopback port (user `cam` with `password`, when given); returns once it listens."""
    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    lines = [f"listener {port} 127.0.0.1", f"allow_anonymous {'false' if password else 'true'}"]
    if password:
        subprocess.run(["mosquitto_passwd", "-c", "-b", str(folder / "passwords"), "cam", password],
                       check=True)
        lines.append(f"password_file {folder / 'passwords'}")
    if os.geteuid() == 0 and (password or extra):  # as root, mosquitto drops to user mosquitto, who
        lines.append("user root")  # cannot read (or write) tmp_path
    (folder / "mosquitto.conf").write_text("\n".join(lines) + "\n" + extra)
    process = subprocess.Popen([MOSQUITTO, "-c", str(folder / "mosquitto.conf")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return process


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    process = start_broker(tmp_path, port)
    yield port
    process.terminate()
    process.wait(10)


class Subscriber:
    def __init__(self, port: int, password: str | None = None) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, str, bool]] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        if password:
            self.client.username_pw_set("cam", password)
        self.client.on_message = lambda c, u, m: self.messages.append(
            (m.topic, m.payload.decode(), bool(m.retain)))
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("#", qos=1)
        self.client.loop_start()

    def topic(self, topic: str) -> list[str]:
        return [payload for name, payload, _ in self.messages if name == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def start_hook(port: int = 0) -> tuple[ThreadingHTTPServer, list[dict[str, Any]]]:
    """A loopback HTTP server keeping each POSTed JSON body, answering 204."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, received


@pytest.fixture
def hooks() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    server, received = start_hook()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()


def picture(name: str) -> np.ndarray:
    """A 32x32 BGR picture: a plain colour, or red, green and blue stripes or checks (a grey mean)."""
    if name not in ("stripes", "checks"):
        return np.full((32, 32, 3), COLOURS[name], np.uint8)
    pure = np.array([COLOURS["red"], COLOURS["green"], COLOURS["blue"]], np.uint8)
    rows, cols = np.indices((32, 32))
    return pure[(cols % 3) if name == "stripes" else ((rows + cols) % 3)]


def slideshow(folder: Path) -> Path:
    folder.mkdir()
    for index, name in enumerate(SHOW):
        cv2.imwrite(str(folder / f"{index:03d}.png"), picture(name))
    return folder


class EmittedAt:
    """A loop sink after the tracker: the frame at which each event came out (the tracker counts them)."""

    def __init__(self, tracker: Any) -> None:
        self.tracker, self.frames = tracker, []

    def publish(self, update: Any) -> None:
        while len(self.frames) < self.tracker.events:
            self.frames.append(update.record.frame)

    def finish(self, stopped_by: str) -> None:
        pass


def run_slideshow(tmp_path: Path, options: Any, page: Any = None, metrics: Any = None,
                  clip_frames: bool = True) -> tuple[Any, list[int]]:
    """The slideshow through the colour model with an unknown detector; the wiring and the frames at
    which its events came out. `metrics`: a CameraMetrics wired in; `clip_frames=False`: no frame reaches
    the clip worker (each clip is dropped: NoFrame)."""
    from edgecnn.runtime import load
    from edgecnn.runtime.box.wiring import event_sinks, with_metrics
    from edgecnn.runtime.live.camera import CameraConfig, run_camera
    from edgecnn.runtime.live.video import VideoOptions

    model = unknown_colour_onnx(tmp_path / "bundle" / "model.onnx")
    config = CameraConfig(sources=(str(slideshow(tmp_path / "show")),), names=("shelf",), min_prob=0.5,
                          headless=True, video=VideoOptions(fps=10))
    pages = [] if page is None else [page]
    with load(model.parent) as engine:
        wiring = event_sinks(options, config.camera_names, engine.labels, extra=pages)
        wiring = wiring if metrics is None else with_metrics(wiring, metrics)
        loop = [sink for sink in wiring.loop_sinks if clip_frames or sink is not wiring.clips]
        emitted = EmittedAt(wiring.tracker)
        try:
            run_camera(engine, config, say=lambda _: None, sinks=[*pages, *loop, emitted])
        finally:
            wiring.close()
    return wiring, emitted.frames


def test_slideshow_states_reach_the_file_mqtt_webhook_and_page_alike(tmp_path: Path, broker: int,
                                                                     hooks: Any) -> None:
    from edgecnn.runtime.box.wiring import EventOptions
    from edgecnn.runtime.live.web import LiveServer, ServeAddress

    url, received = hooks
    subscriber = Subscriber(broker)
    events = tmp_path / "events.jsonl"
    with LiveServer(ServeAddress("127.0.0.1", 0), "show", say=lambda _: None) as page:
        wiring, emitted = run_slideshow(tmp_path, EventOptions(
            events=events, mqtt=f"mqtt://127.0.0.1:{broker}/box", webhooks=(url,)), page)
        shown = json.loads(urllib.request.urlopen(f"{page.url}api/state", timeout=10).read())["events"]
    time.sleep(0.5)
    subscriber.close()
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert [(e["state"], e["previous"], e["frame"]) for e in lines] == [
        ("red", None, 0), ("green", "red", 12), ("unknown", "green", 21)]  # the odd frames made none
    assert [at - CHANGES[e["state"]] for at, e in zip(emitted, lines, strict=True)] == [REPORTED_AFTER] * 3
    assert REPORTED_AFTER <= CONSENSUS_N
    assert lines[2]["unknown_score"] > 0.5 and lines[1]["unknown_score"] == 0.0
    assert datetime.fromisoformat(lines[0]["started_at"]).tzinfo is not None  # ISO 8601 with its zone
    assert received == lines
    assert [json.loads(p) for p in subscriber.topic("box/shelf/event")] == lines
    assert shown == {"shelf": lines}
    assert json.loads(subscriber.topic("box/shelf/state")[-1])["state"] == "unknown"
    assert subscriber.topic("box/shelf/availability")[-1] == "offline"  # a clean end says so too
    config = json.loads(subscriber.topic("homeassistant/sensor/edgecnn_shelf/config")[-1])
    for key in ("unique_id", "name", "state_topic", "value_template", "availability_topic",
                "json_attributes_topic", "options", "device"):
        assert key in config
    assert config["options"] == ["red", "green", "blue", "none", "unknown"]
    counts = wiring.counts()
    assert counts["events"] == 3 and counts["mqtt_sent"] == 6 and counts["webhook_sent"] == 3


def test_a_broker_down_at_start_gets_the_queued_events_when_it_comes_up(tmp_path: Path) -> None:
    from edgecnn.runtime.box.mqtt import MqttSink
    from edgecnn.runtime.live.events import Event

    port = free_port()
    sink = MqttSink(f"mqtt://user:s3cret@127.0.0.1:{port}", ["shelf"], ["red"])
    event = Event("shelf", "red", None, 0.9, None, "2026-12-07T05:00:00.000+00:00", 3)
    sink.event(event)  # nobody listens yet: it waits in the queue, the call returns at once
    process = start_broker(tmp_path, port)
    try:
        subscriber = Subscriber(port)
        deadline = time.monotonic() + 15  # paho's first retry comes after RECONNECT_S[0]
        while not subscriber.topic("edgecnn/shelf/event") and time.monotonic() < deadline:
            time.sleep(0.1)
        sink.close()
        subscriber.close()
        assert [json.loads(p) for p in subscriber.topic("edgecnn/shelf/event")] == [event.to_json()]
        assert "s3cret" not in sink.shown
    finally:
        process.terminate()
        process.wait(10)


def test_bad_options_are_one_line_errors(tmp_path: Path) -> None:
    from edgecnn.runtime.box.states import Consensus
    from edgecnn.runtime.box.wiring import EventOptions
    from edgecnn.runtime.core.errors import EdgecnnError

    with pytest.raises(EdgecnnError, match=r"--mqtt mqtt://\*\*\*@"):
        EventOptions(mqtt="mqtt://u:s3cret@/x").check()
    with pytest.raises(EdgecnnError, match="K/N"):
        Consensus.parse("three")
    with pytest.raises(EdgecnnError, match="1 <= K <= N"):
        Consensus.parse("6/5")
    with pytest.raises(EdgecnnError, match="--webhook"):
        EventOptions(webhooks=("ftp://x",)).check()




def test_killing_the_camera_makes_availability_offline_and_hides_the_password(
        imagenet_bundle: Path, tmp_path: Path) -> None:
    import signal
    import sys

    port = free_port()
    broker = start_broker(tmp_path, port, password="s3cret-pw")
    watcher = Subscriber(port, password="s3cret-pw")
    camera = subprocess.Popen(
        [sys.executable, "-m", "edgecnn", "camera", str(imagenet_bundle), "--source",
         str(Path(__file__).parents[2] / "samples/videos/cup.mp4"), "--headless", "--loop", "--realtime",
         "--mqtt", f"mqtt://cam:s3cret-pw@127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    topic = "edgecnn/cup/availability"
    try:
        deadline = time.monotonic() + 60
        while "online" not in watcher.topic(topic) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert watcher.topic(topic)[-1:] == ["online"]
        os.kill(camera.pid, signal.SIGKILL)
        output = camera.communicate(timeout=10)[0].decode()
        deadline = time.monotonic() + 10
        while watcher.topic(topic)[-1] != "offline" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert watcher.topic(topic)[-1] == "offline"  # the broker sent the last will
        assert "s3cret-pw" not in output
    finally:
        if camera.poll() is None:
            camera.kill()
        watcher.close()
        broker.terminate()
        broker.wait(10)


def test_a_webhook_that_is_down_costs_the_loop_nothing_and_counts_failures() -> None:
    from edgecnn.runtime.box import webhook
    from edgecnn.runtime.live.events import Event

    sink = webhook.WebhookSink([f"http://127.0.0.1:{free_port()}/hook"])
    event = Event("shelf", "red", None, 0.9, None, "2026-12-07T05:00:00.000+00:00", 3)
    for _ in range(webhook.QUEUE + 5):
        sink.event(event)  # never blocks: the worker is stuck retrying the first
    assert sink.dropped >= 4
    sink.close()
    assert sink.sent == 0 and sink.failed + sink.dropped == webhook.QUEUE + 5


def test_the_page_server_keeps_each_cameras_recent_events() -> None:
    from edgecnn.runtime.live.events import Event
    from edgecnn.runtime.live.web import LiveServer, ServeAddress

    server = LiveServer(ServeAddress("127.0.0.1", 0), "show")
    for index in range(25):
        server.event(Event("shelf", f"s{index}", None, 0.9, None, "2026-12-07T05:00:00.000+00:00", index))
    events = server.state()["events"]["shelf"]
    assert len(events) == 20 and events[-1]["state"] == "s24"  # bounded, newest last



def wait_for(received: list[Any], count: int, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds  # the next try comes within the backoff (0.2, 0.4, 0.8 s ...)
    while len(received) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_webhook_down_for_a_while_gets_every_event_once_in_order_when_it_comes_back() -> None:
    from edgecnn.runtime.box.webhook import WebhookSink
    from edgecnn.runtime.live.events import Event

    port = free_port()
    sink = WebhookSink([f"http://127.0.0.1:{port}/hook"])
    sent = [Event("shelf", state, None, 0.9, None, "2026-12-07T05:00:00.000+00:00", i)
            for i, state in enumerate(("red", "green", "unknown"))]
    for event in sent:
        sink.event(event)  # nobody listens: they wait, in order
    time.sleep(1.0)  # a few refused tries
    server, received = start_hook(port)
    try:
        wait_for(received, 3)
        sink.close()
    finally:
        server.shutdown()
    assert received == [event.to_json() for event in sent]
    assert (sink.sent, sink.failed, sink.dropped) == (3, 0, 0)


def test_a_full_webhook_queue_drops_the_oldest_and_counts_it() -> None:
    from edgecnn.runtime.box import webhook
    from edgecnn.runtime.live.events import Event

    port = free_port()
    sink = webhook.WebhookSink([f"http://127.0.0.1:{port}/hook"])
    total = webhook.QUEUE + 10
    for index in range(total):  # the receiver is down: the queue fills, then the oldest go
        sink.event(Event("shelf", "red", None, 0.9, None, "2026-12-07T05:00:00.000+00:00", index))
    server, received = start_hook(port)
    try:
        wait_for(received, total - sink.dropped, seconds=60)
        sink.close()
    finally:
        server.shutdown()
    frames = [event["frame"] for event in received]
    assert frames[-webhook.QUEUE:] == list(range(10, total))  # the newest kept, in order, once each
    assert sink.dropped >= 9 and sink.sent == len(received) == total - sink.dropped


def test_a_broker_that_goes_away_mid_run_gets_the_events_made_meanwhile(tmp_path: Path) -> None:
    import paho.mqtt.client as mqtt
    from edgecnn.runtime.box.mqtt import MqttSink
    from edgecnn.runtime.live.events import Event

    port = free_port()
    (tmp_path / "conf").mkdir()
    persist = f"persistence true\npersistence_location {tmp_path}/\n"
    broker = start_broker(tmp_path / "conf", port, extra=persist)
    received: list[str] = []
    watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="watcher", clean_session=False)
    watcher.on_message = lambda c, u, m: received.append(m.payload.decode())
    watcher.on_connect = lambda c, u, f, r, p: c.subscribe("edgecnn/shelf/event", qos=1)
    watcher.reconnect_delay_set(0.2, 1)
    watcher.connect("127.0.0.1", port)
    watcher.loop_start()
    sink = MqttSink(f"mqtt://127.0.0.1:{port}", ["shelf"], ["red", "green"])
    sent = [Event("shelf", state, None, 0.9, None, "2026-12-07T05:00:00.000+00:00", i)
            for i, state in enumerate(("red", "green", "unknown"))]
    try:
        sink.event(sent[0])
        wait_for(received, 1, seconds=15)
        broker.terminate()  # the broker goes away (it keeps the watcher's session on disk)
        broker.wait(10)
        sink.event(sent[1])  # made while it is away: they wait in the queue
        sink.event(sent[2])
        time.sleep(1.0)
        broker = start_broker(tmp_path / "conf", port, extra=persist)
        wait_for(received, 3, seconds=30)  # paho reconnects with backoff (RECONNECT_S)
        sink.close()
    finally:
        watcher.disconnect()
        watcher.loop_stop()
        broker.terminate()
        broker.wait(10)
    assert [json.loads(p) for p in received] == [event.to_json() for event in sent]
    assert sink.dropped == 0


def make_tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """A self-signed CA and a server certificate for 127.0.0.1 signed by it (openssl CLI)."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=edgecnn test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1")
    (folder / "san.ext").write_text("subjectAltName = IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
    return folder / "ca.pem", folder / "server.pem", folder / "server.key"


@contextlib.contextmanager
def tls_broker(tmp_path: Path) -> Iterator[tuple[Path, int, list[str]]]:
    """A mosquitto TLS listener with its own CA (openssl CLI) and a subscriber to edgecnn/shelf/state:
    (the CA file, the port, the payloads received)."""
    import paho.mqtt.client as mqtt

    ca, cert, key = make_tls_files(tmp_path)
    port = free_port()
    (tmp_path / "conf").mkdir()
    broker = start_broker(tmp_path / "conf", port, extra=f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\n")
    received: list[str] = []
    watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    watcher.tls_set(ca_certs=str(ca))
    watcher.on_message = lambda c, u, m: received.append(m.payload.decode())
    watcher.connect("127.0.0.1", port)
    watcher.subscribe("edgecnn/shelf/state", qos=1)
    watcher.loop_start()
    try:
        yield ca, port, received
    finally:
        watcher.disconnect()
        watcher.loop_stop()
        broker.terminate()
        broker.wait(10)


def test_mqtts_reaches_a_tls_broker_trusting_the_ca_from_ssl_cert_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgecnn.runtime.box.mqtt import MqttSink
    from edgecnn.runtime.live.events import Event

    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is not installed")
    with tls_broker(tmp_path) as (ca, port, received):
        monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # how a box trusts its own CA: OpenSSL's default store
        sink = MqttSink(f"mqtts://127.0.0.1:{port}", ["shelf"], ["red"])
        event = Event("shelf", "red", None, 0.9, None, "2026-12-07T05:00:00.000+00:00", 3)
        sink.event(event)
        wait_for(received, 1, seconds=15)
        sink.close()
    assert [json.loads(p) for p in received] == [event.to_json()]
