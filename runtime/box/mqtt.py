"""--mqtt mqtt://[USER:PASS@]HOST[:PORT][/PREFIX] (mqtts:// = TLS): states and events over MQTT, with
Home Assistant discovery, through paho-mqtt 2.x on its own network thread.

Topics per camera: PREFIX/CAMERA/state (retained JSON of the last event), PREFIX/CAMERA/event and
PREFIX/CAMERA/availability (online/offline, retained; the last will says offline when the process dies).
mqtts:// checks the broker against the system CA store, or against a private CA's PEM file given as
--mqtt-ca FILE (config key `mqtt_ca`; checked at the start by `check_ca`; SSL_CERT_FILE works too).
Discovery: homeassistant/sensor/edgecnn_CAMERA/config (retained), sent on every (re)connect. One client
per camera, since a client has one last will. Messages wait in one bounded queue while the broker is
down (paho reconnects with backoff); what does not fit is dropped and counted. A camera's client not
connected for longer than FAILING_AFTER_S (failing.py) is the sink's `problem()`: /healthz degraded.
"""

from __future__ import annotations

import json
import queue
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from edgecnn.runtime.box.failing import FAILING_AFTER_S, Failing, problems
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.redact import mask_url
from edgecnn.runtime.live.events import NONE_STATE, UNKNOWN_STATE, ClipDropped, Event

QUEUE = 1000  # messages waiting for the broker, all cameras together
CLOSE_S = 3.0  # the end: this long to send what is queued and say offline
RECONNECT_S = (1, 30)  # paho's backoff between reconnects
DISCOVERY = "homeassistant"


@dataclass(frozen=True)
class MqttTarget:
    host: str
    port: int
    tls: bool
    prefix: str = "edgecnn"
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> MqttTarget:
        shown = mask_url(url)
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            parts, port = None, None
        if parts is None or parts.scheme not in ("mqtt", "mqtts") or not parts.hostname or port == 0:
            raise EdgecnnError(f"--mqtt {shown} is not mqtt://[USER:PASS@]HOST[:PORT][/PREFIX] (port 1-65535)"
                               "; give e.g. mqtt://127.0.0.1:1883/edgecnn (mqtts:// for TLS)")
        tls = parts.scheme == "mqtts"
        prefix = parts.path.strip("/") or "edgecnn"
        if any(c in prefix for c in "+#"):
            raise EdgecnnError(f"--mqtt {shown}: the topic prefix may not hold + or #")
        return cls(parts.hostname, port or (8883 if tls else 1883), tls, prefix,
                   unquote(parts.username) if parts.username else None,
                   unquote(parts.password) if parts.password else None)


def check_ca(ca: Path, url: str) -> Path:
    """--mqtt-ca: a readable PEM file of CA certificates (loaded as OpenSSL will), for an mqtts:// URL."""
    if not url.startswith("mqtts://"):
        raise EdgecnnError(f"--mqtt-ca {ca} goes with an mqtts:// broker (TLS), not {mask_url(url)}; "
                           "give --mqtt mqtts://HOST[:PORT] or drop --mqtt-ca")
    try:
        ssl.create_default_context(cafile=str(ca))
    except ssl.SSLError as exc:
        raise EdgecnnError(f"--mqtt-ca {ca} holds no PEM CA certificate ({exc.reason}); give the CA's "
                           "certificate file, -----BEGIN CERTIFICATE----- ...") from None
    except OSError as exc:
        raise EdgecnnError(f"--mqtt-ca {ca}: cannot read it ({exc.strerror or exc}); give the CA's PEM "
                           "certificate file") from None
    return ca


def discovery(camera: str, prefix: str, states: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """Home Assistant's MQTT discovery topic and payload of one camera's sensor (an enum sensor)."""
    base = f"{prefix}/{camera}"
    return f"{DISCOVERY}/sensor/edgecnn_{camera}/config", {
        "name": "State", "unique_id": f"edgecnn_{camera}_state", "object_id": f"edgecnn_{camera}",
        "state_topic": f"{base}/state", "value_template": "{{ value_json.state }}",
        "json_attributes_topic": f"{base}/state", "availability_topic": f"{base}/availability",
        "payload_available": "online", "payload_not_available": "offline",
        "device_class": "enum", "options": list(states), "icon": "mdi:cctv",
        "device": {"identifiers": [f"edgecnn_{camera}"], "name": f"edgecnn {camera}",
                   "manufacturer": "edgecnn", "model": "camera"}}


class MqttSink:
    """An `EventSink`: one paho client per camera, one bounded queue, never blocking the loop."""

    def __init__(self, url: str, cameras: Sequence[str], labels: Sequence[str],
                 failing_after_s: float = FAILING_AFTER_S, ca: Path | None = None) -> None:
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise EdgecnnError("--mqtt needs paho-mqtt: pip install 'edgecnn[box]'") from None
        self.target, self.shown = MqttTarget.parse(url), mask_url(url)
        self.ca = None if ca is None else check_ca(ca, url)
        states = [*dict.fromkeys([*labels, NONE_STATE, UNKNOWN_STATE])]
        self.sent = self.dropped = 0
        self._latest: dict[str, Event] = {}  # each camera's last event, as its retained state says
        self._queue: queue.Queue[tuple[str, str, str, bool] | None] = queue.Queue(QUEUE)
        self._connected = {camera: threading.Event() for camera in cameras}
        where = f"broker {self.target.host}:{self.target.port}"
        self.failing = {camera: Failing(f"{where} (camera {camera})", failing_after_s, sink="mqtt",
                                        camera=camera) for camera in cameras}
        for failing in self.failing.values():
            failing.failed("not connected yet")  # a broker down at the start counts from the start
        self._clients = {camera: self._client(mqtt, camera, states) for camera in cameras}
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="edgecnn-mqtt", daemon=True)
        self._thread.start()

    def _client(self, mqtt: Any, camera: str, states: list[str]) -> Any:
        target, base = self.target, f"{self.target.prefix}/{camera}"
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"edgecnn-{camera}-{id(self):x}")
        if target.username is not None:
            client.username_pw_set(target.username, target.password)
        if target.tls:
            client.tls_set(ca_certs=None if self.ca is None else str(self.ca))
        client.will_set(f"{base}/availability", "offline", qos=1, retain=True)
        client.reconnect_delay_set(*RECONNECT_S)
        topic, payload = discovery(camera, target.prefix, states)

        def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
            if not reason.is_failure:
                client.publish(topic, json.dumps(payload), qos=1, retain=True)
                client.publish(f"{base}/availability", "online", qos=1, retain=True)
                self._connected[camera].set()
                self.failing[camera].ok()
            else:
                self.failing[camera].failed(f"refused: {reason}")

        def on_disconnect(client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
            self._connected[camera].clear()
            if reason.is_failure:  # not our own disconnect at the end
                self.failing[camera].failed(f"disconnected: {reason}")

        def on_connect_fail(client: Any, userdata: Any) -> None:
            self.failing[camera].failed("cannot connect")

        client.on_connect, client.on_disconnect = on_connect, on_disconnect
        client.on_connect_fail = on_connect_fail
        client.connect_async(target.host, target.port, keepalive=30)
        client.loop_start()
        return client

    def problem(self) -> str | None:
        """Why the broker has not been reachable for a while (None when every camera is connected)."""
        return problems(self.failing.values())

    def event(self, event: Event) -> None:
        self._latest[event.camera] = event
        payload = json.dumps(event.to_json())
        base = f"{self.target.prefix}/{event.camera}"
        for topic, retain in ((f"{base}/event", False), (f"{base}/state", True)):
            self._put(event.camera, topic, payload, retain)

    def clip_dropped(self, notice: ClipDropped) -> None:
        """The notice on the event topic; the retained state again, with `clip` null, only while the event
        whose clip it was is still the camera's latest (a later state stays retained as it is)."""
        base = f"{self.target.prefix}/{notice.camera}"
        self._put(notice.camera, f"{base}/event", json.dumps(notice.to_json()), False)
        latest = self._latest.get(notice.camera)
        if latest is not None and notice.follows(latest):
            self._latest[notice.camera] = latest = replace(latest, clip=None)
            self._put(notice.camera, f"{base}/state", json.dumps(latest.to_json()), True)

    def _put(self, camera: str, topic: str, payload: str, retain: bool) -> None:
        try:
            self._queue.put_nowait((camera, topic, payload, retain))
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            camera, topic, payload, retain = item
            while not self._connected[camera].wait(0.2):
                if self._closing:
                    self.dropped += 1
                    break
            else:
                info = self._clients[camera].publish(topic, payload, qos=1, retain=retain)
                if info.rc == 0:
                    self.sent += 1
                else:
                    self.dropped += 1

    def close(self) -> None:
        """Send what is queued (bounded), say offline, disconnect."""
        deadline = time.monotonic() + CLOSE_S
        while not self._queue.empty() and time.monotonic() < deadline:
            time.sleep(0.02)
        self._closing = True
        self._queue.put(None)
        self._thread.join(CLOSE_S)
        for camera, client in self._clients.items():
            if self._connected[camera].is_set():
                info = client.publish(f"{self.target.prefix}/{camera}/availability", "offline", qos=1,
                                      retain=True)
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            client.disconnect()
            client.loop_stop()
