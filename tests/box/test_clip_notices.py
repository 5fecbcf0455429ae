"""A clip an event named and then dropped is told to every event sink (issue 27, clips): real mosquitto,
a loopback webhook receiver, the --events file, the page's /api/state and /metrics; and clip names that
never collide across processes sharing one --clips folder."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.box.test_clips import CHILD
from tests.box.test_events import Subscriber, free_port, run_slideshow, start_broker, start_hook
from tests.box.test_sink_health import scrape

av = pytest.importorskip("av")

ROOT = str(Path(__file__).resolve().parents[2])
NO_FRAME = "no frame of the camera reached the clip"


@pytest.fixture
def hook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A loopback webhook receiver: its URL and the JSON bodies it got."""
    server, received = start_hook()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    process = start_broker(tmp_path, port)
    yield port
    process.terminate()
    process.wait(10)


def notice_of(event: dict[str, Any], why: str) -> dict[str, Any]:
    return {"camera": event["camera"], "state": event["state"], "started_at": event["started_at"],
            "frame": event["frame"], "clip": None, "clip_dropped": event["clip"], "why": why}


def test_a_dropped_clip_is_told_to_the_file_mqtt_webhook_page_and_metrics(tmp_path: Path, mosquitto: int,
                                                                         hook: Any) -> None:
    """No frame reaches the clip worker: each of the 3 clips is dropped (NoFrame) at the end, after its
    event; every sink gets a notice naming it; the page lists no clip; MQTT's retained state is sent
    again (clip null) for the latest event only; metrics count no extra state change."""
    from edgecnn.runtime.box.metrics import CameraMetrics
    from edgecnn.runtime.box.wiring import EventOptions
    from edgecnn.runtime.live.web import LiveServer, ServeAddress

    url, received, broker = *hook, mosquitto
    subscriber, events, metrics = Subscriber(broker), tmp_path / "events.jsonl", CameraMetrics()
    options = EventOptions(events=events, mqtt=f"mqtt://127.0.0.1:{broker}/box", webhooks=(url,),
                           clips=tmp_path / "clips", pre_roll=0.5)
    with LiveServer(ServeAddress("127.0.0.1", 0), "show", say=lambda _: None) as page:
        page.metrics = metrics.render
        wiring, _ = run_slideshow(tmp_path, options, page, metrics=metrics, clip_frames=False)
        shown = json.loads(urllib.request.urlopen(f"{page.url}api/state", timeout=10).read())["events"]
        scraped = scrape(page)
    time.sleep(0.5)
    subscriber.close()
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    made = lines[:3]
    assert [e["state"] for e in made] == ["red", "green", "unknown"] and all(e["clip"] for e in made)
    assert lines[3:] == [notice_of(e, NO_FRAME) for e in made]  # after the events, one each
    assert received == lines
    assert [json.loads(p) for p in subscriber.topic("box/shelf/event")] == lines
    states = [json.loads(p) for p in subscriber.topic("box/shelf/state")]
    assert states == [*made, made[2] | {"clip": None}]  # red's and green's notices re-sent no state
    late = Subscriber(broker)  # a subscriber coming later gets the retained state: no missing clip named
    time.sleep(0.5)
    late.close()
    assert [json.loads(p) for p in late.topic("box/shelf/state")] == [made[2] | {"clip": None}]
    assert shown == {"shelf": [e | {"clip": None} for e in made]}
    camera = (("camera", "shelf"),)
    assert scraped[("edgecnn_clips_dropped_total", camera)] == 3
    assert sum(v for (name, _), v in scraped.items() if name == "edgecnn_events_total") == 3
    assert scraped[("edgecnn_state", (("camera", "shelf"), ("state", "unknown")))] == 1
    counts = wiring.counts()
    assert counts["clips_dropped"] == 3 and counts["clips_missing"] == [e["clip"] for e in made]
    assert counts["mqtt_sent"] == 6 + 3 + 1 and counts["webhook_sent"] == 6
    assert not list((tmp_path / "clips").iterdir())


def test_a_full_disk_drop_reaches_a_webhook_after_its_event(tmp_path: Path, hook: Any) -> None:
    """RLIMIT_FSIZE in a child: every clip fails to write; the webhook (in this process) gets each event
    and then a notice naming its clip, with the write error as `why`."""
    url, received = hook
    script = CHILD.format(root=ROOT, tmp=str(tmp_path), options=f", webhooks=({url!r},)")
    child = subprocess.run([sys.executable, "-c", script],
                           capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert child.returncode == 0, child.stderr[-2000:]
    made = [body for body in received if "clip_dropped" not in body]
    told = [body for body in received if "clip_dropped" in body]
    assert [e["state"] for e in made] == ["red", "green", "unknown"] and len(told) == 3
    assert [notice["clip_dropped"] for notice in told] == [e["clip"] for e in made]
    for event, notice in zip(made, told, strict=True):
        assert received.index(event) < received.index(notice)
        assert notice == notice_of(event, notice["why"]) and "too large" in notice["why"].lower(), notice


def frames_into(sink: Any, first: int, last: int) -> None:
    """64x48 frames `first`..`last` of camera shelf at 10 fps."""
    from types import SimpleNamespace

    import numpy as np

    for frame in range(first, last + 1):
        image = np.full((48, 64, 3), frame * 8 % 256, np.uint8)
        sink.publish(SimpleNamespace(image=image, record=SimpleNamespace(camera="shelf", frame=frame,
                                                                         timestamp=frame / 10)))


def green_at(frame: int) -> Any:
    from edgecnn.runtime.live.events import Event

    return Event("shelf", "green", "red", 0.9, None, "2026-12-07T13:00:00+00:00", frame)


def test_a_name_taken_meanwhile_is_never_replaced_and_the_drop_is_told(tmp_path: Path) -> None:
    """Another writer takes the clip's name before the clip is complete: its file stays as it is, the clip
    is dropped, and the event's sinks are told why."""
    from edgecnn.runtime.box.clips import ClipSink

    sink, told = ClipSink(tmp_path / "clips", pre_roll=0.5, post_roll=5.0), []
    frames_into(sink, 0, 10)
    name = str(sink.begin(green_at(8), told.append))
    (tmp_path / "clips" / name).write_bytes(b"someone else's")
    frames_into(sink, 11, 14)
    sink.close()
    assert (tmp_path / "clips" / name).read_bytes() == b"someone else's"
    assert [p.name for p in (tmp_path / "clips").iterdir()] == [name]  # no temporary file left
    assert sink.counts()["clips_dropped"] == 1 and len(told) == 1
    assert told[0].clip_dropped == name and "no free name" in told[0].why


def test_a_failed_worker_tells_the_clips_begun_and_names_no_more(tmp_path: Path) -> None:
    """A frame the worker cannot convert (1x1: nothing left after the odd row and column) ends the worker:
    the clip begun is dropped and told, later events name no clip, the loop's publish and close go on."""
    from types import SimpleNamespace

    import numpy as np
    from edgecnn.runtime.box.clips import ClipSink

    sink, told = ClipSink(tmp_path / "clips", pre_roll=0.5, post_roll=5.0), []
    frames_into(sink, 0, 10)
    name = sink.begin(green_at(8), told.append)
    sink.publish(SimpleNamespace(image=np.zeros((1, 1, 3), np.uint8),
                                 record=SimpleNamespace(camera="shelf", frame=11, timestamp=1.1)))
    deadline = time.monotonic() + 30
    while not told and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [n.clip_dropped for n in told] == [name] and "the clip worker failed" in told[0].why
    frames_into(sink, 12, 200)  # more than the queue holds: the loop never waits on a dead worker
    assert sink.begin(green_at(150), told.append) is None
    started = time.monotonic()
    sink.close()
    assert time.monotonic() - started < 2 and len(told) == 1 and sink.counts()["clips_dropped"] == 1
    assert not list((tmp_path / "clips").iterdir())


def test_begin_after_close_names_no_clip(tmp_path: Path) -> None:
    from edgecnn.runtime.box.clips import ClipSink

    sink, told = ClipSink(tmp_path / "clips"), []
    sink.close()
    assert sink.begin(green_at(0), told.append) is None
    assert told == [] and sink.counts() == {"clips_written": 0, "clips_dropped": 0, "clip_frames_dropped": 0}


TWO_SINKS = """
import json, sys
sys.path.insert(0, {root!r})
from pathlib import Path
from edgecnn.runtime.box.clips import ClipSink
from tests.box.test_clip_notices import frames_into, green_at
sinks = [ClipSink(Path({folder!r}), pre_roll=0.5, post_roll=0.3) for _ in range(2)]
for sink in sinks:
    frames_into(sink, 0, 10)
print("ready", flush=True)
sys.stdin.readline()  # go: both processes begin their clips at once
names = [sink.begin(green_at(8)) for sink in sinks]
for sink in sinks:
    frames_into(sink, 11, 15)
    sink.close()
print(json.dumps([names, [sink.counts() for sink in sinks]]))
"""


def test_two_processes_with_two_sinks_each_on_one_folder_in_one_second_never_collide(tmp_path: Path
                                                                                     ) -> None:
    """Two edgecnn processes, each with two ClipSinks on the same folder and camera name, begin their
    clips in the same UTC second: four names, four complete clips, each under the name its event gave."""
    folder = tmp_path / "clips"
    script = TWO_SINKS.format(root=ROOT, folder=str(folder))
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    children = [subprocess.Popen([sys.executable, "-c", script], text=True, cwd=ROOT, **pipes)
                for _ in range(2)]
    for child in children:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    time.sleep(1.05 - time.time() % 1)  # just after a second begins: both begin well within it
    results = []
    for child in children:
        out, err = child.communicate("go\n", timeout=120)
        assert child.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    names = [name for names, _ in results for name in names]
    assert len({name.split("-")[1] for name in names}) == 1, names  # the same UTC second
    assert len(set(names)) == 4 and sorted(p.name for p in folder.iterdir()) == sorted(names)
    assert all(counts["clips_written"] == 1 for _, each in results for counts in each)
    for name in names:
        with av.open(str(folder / name)) as container:
            assert container.streams.video[0].codec_context.name == "h264"
            assert len(list(container.decode(video=0))) == 9  # frames 3..11 (0.5 s before, 0.3 s after)
