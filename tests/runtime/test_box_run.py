"""`edgecnn run BOX.toml` for real: three cameras (two crops of one video sharing its decoder, one folder
slideshow) each with its own JSONL; the systemd unit it prints; the sd_notify watchdog over a real
datagram socket; the health of the cameras; SIGHUP re-reading the file."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from edgecnn.runtime.box.service import Watchdog
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.live.health import CameraHealth
from edgecnn.runtime.live.regions import Region

from tests.runtime.box_files import colour_bundle

ROOT = Path(__file__).resolve().parents[2]
CUP = ROOT / "samples" / "videos" / "cup.mp4"
TOOLS = ROOT / "samples" / "photos" / "tools"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return colour_bundle(tmp_path_factory)


def box_file(folder: Path, bundle: Path, extra: str = "") -> Path:
    path = folder / "box.toml"
    path.write_text(f'model = "{bundle}"\ndevice = "cpu"\nheadless = true\njsonl = "out/{{camera}}.jsonl"\n'
                    f'{extra}'
                    f'[[camera]]\nsource = "{CUP}"\nname = "left"\nregion = [0, 0, 0.5, 1]\n'
                    f'[[camera]]\nsource = "{CUP}"\nname = "right"\n'
                    f'region = {{ x = 320, y = 0, w = 320, h = 480 }}\n'
                    f'[[camera]]\nsource = "{TOOLS}"\nname = "slides"\n')
    (folder / "out").mkdir(exist_ok=True)
    return path


def edgecnn(*args: str, env: dict[str, str] | None = None, **kwargs: object) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "edgecnn", *args], env=environment, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def first_frame(clip: Path) -> np.ndarray:
    capture = cv2.VideoCapture(str(clip))
    ok, image = capture.read()
    capture.release()
    assert ok
    return image


def test_three_cameras_run_each_with_its_own_jsonl(bundle: Path, tmp_path: Path) -> None:
    from edgecnn.runtime import load
    from edgecnn.runtime.core.preprocess import fit_frame

    process = edgecnn("run", str(box_file(tmp_path, bundle)), "--check")
    assert process.wait(60) == 0, process.stderr.read()
    (tmp_path / "box.toml").write_text((tmp_path / "box.toml").read_text().replace(
        "headless = true\n", "headless = true\njson_out = true\n"))
    process = edgecnn("run", str(tmp_path / "box.toml"))
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    frames = int(cv2.VideoCapture(str(CUP)).get(cv2.CAP_PROP_FRAME_COUNT))
    photos = len(list(TOOLS.iterdir()))
    records = {name: [json.loads(line) for line in (tmp_path / "out" / f"{name}.jsonl").read_text(
    ).splitlines()] for name in ("left", "right", "slides")}
    assert [len(records[n]) for n in ("left", "right", "slides")] == [frames, frames, photos]
    assert all(r["camera"] == name for name, rows in records.items() for r in rows)
    assert [row["frames_read"] for row in summary["sources"]] == [frames, frames, photos]
    # the classifier saw only the region: frame 0 of each crop, through the same model by hand
    image = first_frame(CUP)
    with load(bundle, device="cpu") as engine:
        for name, crop in (("left", image[:, :320]), ("right", image[:, 320:])):
            expected = engine.submit_scored(fit_frame(crop, engine.preprocess, bgr=True)[None]).result()
            top = records[name][0]["top"][0]
            best = int(np.argmax(expected.probabilities[0]))
            assert top["label"] == engine.labels[best]
            assert top["probability"] == pytest.approx(float(expected.probabilities[0][best]), abs=1e-4)
    assert records["left"][0]["top"] != records["right"][0]["top"]  # two halves, two answers


def test_the_printed_unit_passes_systemd_analyze_verify(bundle: Path, tmp_path: Path) -> None:
    verify = shutil.which("systemd-analyze")
    if verify is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    process = edgecnn("run", str(box_file(tmp_path, bundle)), "--unit", "--user", "root")
    unit, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    # WatchdogSec: twice camera's longest reconnect (30 s --reconnect-timeout + 15 s of open and read) + 10
    for line in ("Type=notify", "Restart=always", "User=root", "WatchdogSec=100", "StandardOutput=journal",
                 f"ExecStart={Path(sys.prefix).absolute()}/bin/", f"run {tmp_path / 'box.toml'}"):
        assert line in unit
    good, bad = tmp_path / "edgecnn-box.service", tmp_path / "broken.service"
    good.write_text(unit)
    bad.write_text(unit.replace("Type=notify", "Type=notifyy"))  # the control: verify does see mistakes
    checked = subprocess.run([verify, "verify", str(good)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0 and checked.stdout + checked.stderr == "", checked.stderr
    control = subprocess.run([verify, "verify", str(bad)], capture_output=True, text=True, timeout=60)
    assert "notifyy" in control.stdout + control.stderr


class NotifySocket:
    """What systemd listens on: a real AF_UNIX datagram socket; `messages` collects what arrived."""

    def __init__(self, folder: Path) -> None:
        self.path = str(folder / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self.messages: list[str] = []

    def drain(self, seconds: float) -> list[str]:
        end, got = time.monotonic() + seconds, []
        while time.monotonic() < end:
            try:
                got.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
        self.messages += got
        return got


def test_watchdog_keep_alives_stop_when_the_loop_stalls(tmp_path: Path) -> None:
    listener = NotifySocket(tmp_path)
    watchdog = Watchdog(listener.path, watchdog_s=0.4)  # a keep-alive every 0.1 s while results are fresh
    with watchdog:
        for _ in range(6):  # the loop delivering results
            watchdog.publish(None)
            listener.drain(0.1)
        assert listener.messages[0] == "READY=1\nSTATUS=cameras running"
        assert sum(m.startswith("READY=1") for m in listener.messages) == 1
        assert "WATCHDOG=1" in listener.messages
        listener.drain(0.25)  # the loop stalls: past the fresh window (0.2 s) the keep-alives stop ...
        stalled = listener.drain(0.6)
        assert stalled == [] and watchdog._thread.is_alive()  # ... though the thread sending them runs
        watchdog.publish(None)  # the loop back: keep-alives again
        assert "WATCHDOG=1" in listener.drain(0.3)
    assert listener.drain(0.1)[-1].startswith("STOPPING=1")


def test_run_under_a_fake_systemd_says_ready_keeps_alive_and_stopping(bundle: Path, tmp_path: Path) -> None:
    listener = NotifySocket(tmp_path)
    box = box_file(tmp_path, bundle, extra="realtime = true\n")  # ~9 s of video at its own pace
    process = edgecnn("run", str(box), env={"NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "400000"})
    try:
        got: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            got += listener.drain(0.2)
        got += listener.drain(0.5)
    finally:
        if process.poll() is None:
            process.kill()
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert got[0].startswith("READY=1") and got.count("WATCHDOG=1") >= 3 and got[-1].startswith("STOPPING=1")


def page_port(process: subprocess.Popen) -> int:
    """The port of the page the run announces on stderr ("camera page: http://127.0.0.1:PORT/")."""
    import re

    for line in process.stderr:
        found = re.search(r"camera page: http://[^:]+:(\d+)/", line)
        if found:
            return int(found[1])
    raise AssertionError("the run announced no page")


def get_json(port: int, path: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return json.loads(response.read())


def cameras_on_the_page(port: int, until: Callable[[dict[str, int]], bool]) -> dict[str, int]:
    """{camera: results} from /api/state, polled until `until` holds (at most ~20 s)."""
    for _ in range(200):
        seen = {c["camera"]: c["results"] for c in get_json(port, "/api/state")["cameras"]}
        if until(seen):
            return seen
        time.sleep(0.1)
    raise AssertionError(f"the page never showed the cameras wanted: {seen}")


def test_sighup_adds_and_removes_cameras_while_the_others_go_on(bundle: Path, tmp_path: Path) -> None:
    box = box_file(tmp_path, bundle, extra='realtime = true\nloop = true\n[page]\nserve = "127.0.0.1:0"\n')
    process = edgecnn("run", str(box))
    try:
        port = page_port(process)
        first = cameras_on_the_page(port, lambda seen: len(seen) == 3 and all(seen.values()))
        assert sorted(first) == ["left", "right", "slides"] and get_json(port, "/healthz")["status"] == "ok"
        right = (f'[[camera]]\nsource = "{CUP}"\nname = "right"\n'
                 'region = { x = 320, y = 0, w = 320, h = 480 }\n')
        assert right in box.read_text()
        more = f'[[camera]]\nsource = "{TOOLS}"\nname = "more"\n'
        box.write_text(box.read_text().replace(right, "") + more)
        process.send_signal(signal.SIGHUP)
        later = cameras_on_the_page(port, lambda seen: seen.get("more", 0) > 0 and "right" not in seen)
        assert later["left"] > first["left"] and later["slides"] >= first["slides"]  # never restarted
        box.write_text(box.read_text() + "top_kk = 1\n")
        process.send_signal(signal.SIGHUP)
        cameras_on_the_page(port, lambda seen: seen["left"] > later["left"] + 5)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    reloads = [line for line in err.splitlines() if line.startswith("reload")]  # one line each, unwrapped
    assert any("cameras added: more; removed: right" in line for line in reloads), err
    assert any(line.startswith("reload: camera more started") for line in reloads), err
    assert "reload refused: " in err and "top_kk" in err and "the running cameras go on unchanged" in err
    assert process.returncode == 130 and "Traceback" not in err
    lines = {name: len((tmp_path / "out" / f"{name}.jsonl").read_text().splitlines())
             for name in ("left", "right", "more")}
    assert lines["more"] > 0 and lines["right"] < lines["left"]


def test_health_is_degraded_with_the_reason_when_a_camera_goes_quiet() -> None:
    now = [100.0]
    health = CameraHealth(clock=lambda: now[0])
    health.expect(["door", "shelf"])
    for _ in range(5):
        now[0] += 0.1
        health.publish("door", {"reconnects": 0, "fps": 10.0})
    assert health.report()["status"] == "ok"  # shelf has not been silent 10 s yet
    now[0] += 11.0
    report = health.report()
    assert report["status"] == "degraded" and len(report["reasons"]) == 2
    assert "camera door: no result for 11 s" in report["reasons"][0]
    assert report["reasons"][1].startswith("camera shelf: no result in 11 s since the start")
    health.publish("door", {"reconnects": 1})
    health.publish("shelf", {})
    health.forget(["shelf"])
    health.publish("shelf", {})  # its last batch, still in flight when it was removed
    health.watch("mqtt", lambda: "broker unreachable")
    assert health.report()["reasons"] == ["mqtt: broker unreachable"]
    assert [c["camera"] for c in health.listing()] == ["door"]


@pytest.mark.parametrize(("text", "box"), [
    ("0,0,0.5,1", (0, 0, 320, 480)),
    ("320,0,320,480", (320, 0, 640, 480)),
    ([0.25, 0.25, 0.5, 0.5], (160, 120, 480, 360)),
    ("0,0,1,1", (0, 0, 640, 480)),
    ("600,400,100,100", (600, 400, 640, 480)),  # pixels past the edge: cut at the edge
])
def test_region_boxes(text: object, box: tuple[int, int, int, int]) -> None:
    region = Region.parse(text)
    assert region.box(640, 480) == box
    assert region.crop(np.zeros((480, 640, 3), np.uint8)).shape == (box[3] - box[1], box[2] - box[0], 3)


def test_a_region_outside_the_frame_is_an_error() -> None:
    with pytest.raises(EdgecnnError, match="lies outside the 640x480 frame"):
        Region.parse("700,0,10,10").box(640, 480)
    assert Region.parse("full") is None


def test_regions_of_one_source_share_one_decoder() -> None:
    from edgecnn.runtime.live.camera import CameraConfig
    from edgecnn.runtime.live.regions import REGION_QUEUE, RegionSource, open_sources
    from edgecnn.runtime.live.video import VideoSource

    config = CameraConfig(sources=(str(CUP), str(CUP), str(CUP), str(TOOLS)), regions=(
        Region.parse("0,0,0.5,1"), Region.parse("0.5,0,0.5,1"), None, Region.parse("0,0,10,10")))
    opened = open_sources(config, lambda image: image, print, lambda: None)
    assert [type(source) for source in opened] == [RegionSource, RegionSource, VideoSource, RegionSource]
    assert opened[0].decoder is opened[1].decoder and opened[3].decoder is not opened[0].decoder
    for source in opened:
        source.start()
    try:
        taken: list[list] = [[], []]
        for _ in range(400):  # 5 frames from each region, taken in turn as the loop takes them
            for i in (0, 1):
                if len(taken[i]) < 5 and opened[i].ready():
                    taken[i].append(opened[i].get())
            if all(len(t) == 5 for t in taken):
                break
            time.sleep(0.01)
        (left, *_), (right, *_) = taken
        whole = first_frame(CUP)
        assert [f.index for f in taken[0]] == [f.index for f in taken[1]] == [0, 1, 2, 3, 4]
        assert np.array_equal(left.image, whole[:, :320]) and np.array_equal(right.image, whole[:, 320:])
        # one decode for both: 5 frames + the regions' short queues, not 2 x 5
        assert opened[0].decoder.video.frames_delivered <= 5 + REGION_QUEUE < 10
    finally:
        for source in opened:
            source.close()

