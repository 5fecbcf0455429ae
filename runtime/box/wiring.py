"""The event sinks of a camera run, built in one place so `edgecnn camera` and `edgecnn run` share them:

    wiring = event_sinks(EventOptions(events=Path("events.jsonl"), mqtt="mqtt://box/edgecnn"), cameras,
                         labels)
    run_camera(engine, config, sinks=[*sinks, *wiring.loop_sinks])   ...   wiring.close(); wiring.counts()
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecnn.runtime.box.failing import listen_failures, watch_sinks
from edgecnn.runtime.box.states import Consensus, StateTracker
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.outputs import check_output_path, check_writable
from edgecnn.runtime.live.events import ClipDropped, Event, EventSink
from edgecnn.runtime.live.recording import BackgroundWriter, JsonlWriter, is_stdout

EVENTS_QUEUE = 4096


@dataclass(frozen=True)
class EventOptions:
    events: Path | None = None  # --events FILE (JSONL, one event a line)
    mqtt: str | None = None
    webhooks: tuple[str, ...] = ()
    consensus: Consensus = field(default_factory=Consensus)
    force: bool = False
    append: bool = False  # --append: add to an existing --events file (a restarted service keeps them)
    clips: Path | None = None  # --clips DIR: one H.264 MP4 per event (clips.py)
    pre_roll: float = 3.0  # --pre-roll S: seconds of a clip before its change
    post_roll: float = 3.0  # --post-roll S: seconds after it (or to the next event, or the end)
    mqtt_ca: Path | None = None  # --mqtt-ca FILE: a private CA (PEM) for an mqtts:// broker
    clips_buffer_mb: float = 64.0  # --clips-buffer-mb: each camera's pre-roll buffer cap (clips.BUFFER_MB)

    @property
    def wanted(self) -> bool:
        return self.events is not None or self.mqtt is not None or bool(self.webhooks) or \
            self.clips is not None

    def check(self) -> None:
        """Before the model loads: a bad URL or an existing --events file fails at once."""
        from edgecnn.runtime.box.mqtt import MqttTarget
        from edgecnn.runtime.box.webhook import check_webhook

        self.consensus.checked()
        if self.mqtt is not None:
            MqttTarget.parse(self.mqtt)
        if self.mqtt_ca is not None:
            from edgecnn.runtime.box.mqtt import check_ca

            if self.mqtt is None:
                raise EdgecnnError(f"--mqtt-ca {self.mqtt_ca} goes with --mqtt mqtts://HOST[:PORT]")
            check_ca(self.mqtt_ca, self.mqtt)
        for url in self.webhooks:
            check_webhook(url)
        if self.clips is not None:
            check_clips(self.clips, self.pre_roll, self.post_roll, self.clips_buffer_mb)
        if self.events is not None and not is_stdout(self.events):  # `--events -`: on standard output
            check_output_path(self.events, "--events", suffix=".jsonl")
            check_writable(self.events, "--events")
            if self.events.exists() and not self.force and not self.append:
                raise EdgecnnError(f"--events {self.events} already exists; pass --force to overwrite it, "
                                   "--append to add to it or choose another --events")


class EventsFile:
    """--events: one JSON line per event, written off the loop, renamed into place on close (appended to
    the file, a line at a time, with --append)."""

    def __init__(self, path: Path, append: bool = False) -> None:
        self.writer = BackgroundWriter("--events", JsonlWriter(path, append), EVENTS_QUEUE)

    def event(self, event: Event) -> None:
        self.writer.put(event.to_json())

    def clip_dropped(self, notice: ClipDropped) -> None:
        """A line too: the clip the event named will never exist."""
        self.writer.put(notice.to_json())

    def close(self) -> None:
        self.writer.close()


class EventWiring:
    """The tracker (a loop `Sink`) and the event sinks it owns; `close` flushes them, `counts` sums up."""

    def __init__(self, tracker: StateTracker, owned: Sequence[Any], clips: Any = None) -> None:
        self.tracker, self.owned, self.clips = tracker, tuple(owned), clips
        self.loop_sinks = (tracker,) if clips is None else (clips, tracker)  # frames reach clips first

    def close(self) -> None:
        for sink in (*(() if self.clips is None else (self.clips,)), *self.owned):
            sink.close()

    def counts(self) -> dict[str, Any]:
        counts = {"events": self.tracker.events} | ({} if self.clips is None else self.clips.counts())
        for sink in self.owned:
            kind = type(sink).__name__
            if kind == "EventsFile":
                counts |= {"events_written": sink.writer.written, "events_dropped": sink.writer.dropped}
            elif kind == "MqttSink":
                counts |= {"mqtt_sent": sink.sent, "mqtt_dropped": sink.dropped}
            elif kind == "WebhookSink":
                counts |= {"webhook_sent": sink.sent, "webhook_dropped": sink.dropped,
                           "webhook_failed": sink.failed}
        return counts


def with_metrics(wiring: EventWiring, metrics: Any) -> EventWiring:
    """Prometheus metrics (runtime/box/metrics.py) as a loop sink beside the tracker and as an event sink,
    counting each failed try of MQTT and the webhooks by camera."""
    listen_failures(wiring.owned, metrics.failed)
    wiring.tracker.sinks = (*wiring.tracker.sinks, metrics)
    wiring.loop_sinks = (*wiring.loop_sinks, metrics)
    return wiring


def event_sinks(options: EventOptions, cameras: Sequence[str], labels: Sequence[str],
                extra: Sequence[EventSink] = ()) -> EventWiring:
    """The tracker handing events to --events, --mqtt, --webhook and `extra` (the page)."""
    owned: list[Any] = []
    if options.events is not None:
        owned.append(EventsFile(options.events, options.append))
    if options.mqtt is not None:
        from edgecnn.runtime.box.mqtt import MqttSink

        owned.append(MqttSink(options.mqtt, cameras, labels, ca=options.mqtt_ca))
    if options.webhooks:
        from edgecnn.runtime.box.webhook import WebhookSink

        owned.append(WebhookSink(options.webhooks))
    clips = None
    if options.clips is not None:
        from edgecnn.runtime.box.clips import CONSENSUS_LAG, ClipSink

        clips = ClipSink(options.clips, options.pre_roll, options.post_roll,
                         lag=CONSENSUS_LAG + options.consensus.min_duration,  # the change stays buffered
                         buffer_mb=options.clips_buffer_mb)
    watch_sinks(extra, owned)  # a failing MQTT broker or webhook makes the page's /healthz degraded
    return EventWiring(StateTracker(options.consensus, [*owned, *extra], clips=clips), owned, clips)


def check_clips(folder: Path, pre_roll: float, post_roll: float, buffer_mb: float = 64.0) -> None:
    """--clips needs PyAV (its FFmpeg has libx264), a folder it can write, sane roll lengths and buffer."""
    import importlib.util

    from edgecnn.runtime.core.errors import install_hint

    if importlib.util.find_spec("av") is None:
        raise EdgecnnError(f"--clips needs PyAV for H.264: {install_hint('box')}")
    check_output_path(folder, "--clips", folder=True)
    check_writable(folder, "--clips")
    for option, seconds in (("--pre-roll", pre_roll), ("--post-roll", post_roll)):
        if not 0.0 <= seconds <= 60.0:
            raise EdgecnnError(f"{option} {seconds} is out of range; give 0 to 60 seconds (e.g. 3)")
    if not 1.0 <= buffer_mb <= 4096.0:
        raise EdgecnnError(f"--clips-buffer-mb {buffer_mb} is out of range; give 1 to 4096 MiB (e.g. 64)")
