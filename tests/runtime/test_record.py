"""The camera page's record button over real HTTP: frames of a live loopback camera saved for training."""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path
from typing import Any

import pytest
from edgecnn.runtime.core.images import read_image
from edgecnn.runtime.live.recorder import LEASE, Recorder
from edgecnn.runtime.live.web import LiveServer

from tests.runtime.cameras import served_camera, wait_for
from tests.runtime.test_camera import CUP
from tests.runtime.test_web import LOOPBACK, engine, state  # noqa: F401 - engine is a fixture

pytest.importorskip("uvicorn", reason="the web extra is not installed: pip install '.[web]'")


def post(port: int, body: Any, content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    connection.request("POST", "/api/record", body=data, headers={"Content-Type": content_type})
    response = connection.getresponse()
    return response.status, json.loads(response.read())


@pytest.fixture
def recording(engine: Any, tmp_path: Path) -> Any:  # noqa: F811 - the fixture imported above
    data = tmp_path / "data"
    recorder = Recorder(data, per_second=20)
    server = LiveServer(LOOPBACK, source=str(CUP), say=lambda m: None, recorder=recorder)
    with served_camera(engine, CUP, server, top_k=3):
        wait_for(lambda: state(server.port)["frame"] is not None)
        yield server, data
    recorder.close()


def test_holding_the_button_saves_frames_into_the_class_folder(recording: Any) -> None:
    server, data = recording
    (data / "mug").mkdir(parents=True)
    assert state(server.port)["recording"] == {"label": None, "counts": {}, "dropped": 0}
    deadline = time.monotonic() + 1.2
    while time.monotonic() < deadline:  # the page renews its hold every half second
        status, reply = post(server.port, {"label": "mug"})
        assert status == 200 and reply["label"] == "mug"
        time.sleep(0.4)
    status, reply = post(server.port, {"label": None})
    assert status == 200 and reply["label"] is None
    time.sleep(0.3)
    files = sorted((data / "mug").glob("*.jpg"))
    assert len(files) >= 5
    assert all(read_image(f).shape[:2] == (480, 640) for f in files)  # whole camera frames
    assert state(server.port)["recording"]["counts"] == {"mug": len(files)}
    time.sleep(0.5)
    assert len(list((data / "mug").glob("*.jpg"))) == len(files)  # released: nothing more


def test_a_hold_that_is_not_renewed_ends_by_itself(recording: Any) -> None:
    server, data = recording
    assert post(server.port, {"label": "cup"})[0] == 200
    time.sleep(LEASE + 0.5)  # the viewer closed the tab mid-press
    assert state(server.port)["recording"]["label"] is None
    count = len(list((data / "cup").glob("*.jpg")))
    time.sleep(0.5)
    assert 0 < count == len(list((data / "cup").glob("*.jpg")))


@pytest.mark.parametrize(("body", "content_type", "code"), [
    ({"label": "../up"}, "application/json", 400),
    ({"label": "a/b"}, "application/json", 400),
    ({"label": 3}, "application/json", 400),
    ([1, 2], "application/json", 400),
    (b"not json", "application/json", 400),
    (b"label=cup", "application/x-www-form-urlencoded", 415),  # what a form on another site could send
])
def test_bad_record_requests_are_refused_and_write_nothing(recording: Any, body: Any, content_type: str,
                                                           code: int) -> None:
    server, data = recording
    status, reply = post(server.port, body, content_type)
    assert status == code and "error" in reply
    time.sleep(0.3)
    assert not list(data.rglob("*.jpg")) and not (data.parent / "up").exists()


def test_recording_is_off_without_record_to(engine: Any) -> None:  # noqa: F811
    server = LiveServer(LOOPBACK, source=str(CUP), say=lambda m: None)
    with served_camera(engine, CUP, server, top_k=3):
        wait_for(lambda: state(server.port)["frame"] is not None)
        assert state(server.port)["recording"] is None
        status, reply = post(server.port, {"label": "cup"})
        assert status == 404 and "--record-to" in reply["error"]
