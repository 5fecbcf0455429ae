"""`edgecnn camera --serve` over real HTTP: a live loopback camera, the real ImageNet model, real viewers."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.live.web import LiveServer, ServeAddress, check_access, parse_address
from typer.testing import CliRunner

from edgecnn.cli import app
from tests.runtime.cameras import served_camera, wait_for
from tests.runtime.test_camera import CUP

pytest.importorskip("uvicorn", reason="the web extra is not installed: pip install '.[web]'")
LOOPBACK = ServeAddress("127.0.0.1", 0)


@pytest.fixture(scope="module")
def engine(imagenet_bundle: Path) -> Any:
    from edgecnn.runtime import load

    with load(imagenet_bundle, device="cpu", precision="int8") as engine:
        yield engine


def get(port: int, path: str, headers: dict[str, str] | None = None, host: str = "127.0.0.1") -> Any:
    connection = http.client.HTTPConnection(host, port, timeout=10)
    connection.request("GET", path, headers=headers or {})
    response = connection.getresponse()
    return response.status, dict(response.getheaders()), response.read()


def state(port: int, query: str = "") -> dict[str, Any]:
    status, _, body = get(port, "/api/state" + query)
    assert status == 200, body
    return json.loads(body)


def read_jpegs(port: int, count: int, path: str = "/stream.mjpg") -> list[np.ndarray]:
    """`count` pictures from the MJPEG stream, parsed part by part as a browser does."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path)
    response = connection.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Type").startswith("multipart/x-mixed-replace")
    images = []
    while len(images) < count:
        assert response.readline() == b"--frame\r\n"
        headers = {}
        while (line := response.readline()) != b"\r\n":
            name, _, value = line.decode().partition(":")
            headers[name.lower()] = value.strip()
        assert headers["content-type"] == "image/jpeg"
        jpeg = response.read(int(headers["content-length"]))
        assert response.readline() == b"\r\n"
        images.append(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR))
    connection.close()
    return images


@pytest.fixture(scope="module")
def live(engine: Any) -> Any:
    """A camera page served on a free loopback port, fed by a real camera run."""
    server = LiveServer(LOOPBACK, source="http://cam:hunter2@127.0.0.1/live.mjpg", say=lambda m: None)
    with served_camera(engine, CUP, server, top_k=5) as run:
        wait_for(lambda: state(server.port)["frame"] is not None)
        yield server, run
    assert run.error is not None and "hunter2" not in str(run.error)


def test_state_is_the_newest_result(live: Any) -> None:
    server, _ = live
    first = state(server.port)
    wait_for(lambda: state(server.port)["frame"] > first["frame"] + 5)
    now = state(server.port)
    assert now["source"] == "http://***@127.0.0.1/live.mjpg"
    shown = ("unknown",) if now["unknown"] else (now["top"][0]["label"], "uncertain")
    assert len(now["top"]) == 5 and now["label"] in shown
    probabilities = [entry["probability"] for entry in now["top"]]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1.0001
    assert now["inference_ms"] > 0 and now["latency_ms"] >= now["inference_ms"] * 0.5
    assert 0 < time.time() - now["captured_at"] < 5 and now["published_at"] >= now["captured_at"]
    stats = now["stats"]
    assert stats["fps"] > 3 and stats["frames_processed"] > 5
    assert stats["frames_read"] >= stats["frames_processed"]
    assert {"frames_dropped", "reconnects", "viewers", "jpeg_frames"} <= set(stats)


def test_stream_shows_the_annotated_camera_and_encodes_only_while_watched(live: Any) -> None:
    server, _ = live
    wait_for(lambda: server.viewers == 0, timeout=5)
    time.sleep(0.2)  # a picture still being encoded for a viewer who just left
    before = state(server.port)["stats"]["jpeg_frames"]
    time.sleep(0.5)
    assert state(server.port)["stats"]["jpeg_frames"] == before  # nobody watches: nothing is encoded
    images = read_jpegs(server.port, 6)
    assert all(image.shape == (480, 640, 3) for image in images)
    assert any(np.abs(a.astype(int) - b).mean() > 1 for a, b in zip(images, images[1:], strict=False))
    panel, rest = images[-1][:60, :200], images[-1][300:, 400:]
    assert panel.mean() < rest.mean()  # the overlay's dimmed panel, with white text on it
    assert (panel > 200).mean() > 0.01
    wait_for(lambda: server.viewers == 0, timeout=5)  # the viewer left: counted out at once
    after = state(server.port)["stats"]["jpeg_frames"]
    assert after >= before + 6
    time.sleep(0.5)
    assert state(server.port)["stats"]["jpeg_frames"] <= after + 1  # at most the frame in flight


def test_a_stalled_viewer_slows_neither_the_camera_nor_the_others(live: Any) -> None:
    server, _ = live
    stalled = socket.create_connection(("127.0.0.1", server.port))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # ...and never reads
    try:
        wait_for(lambda: server.viewers == 1, timeout=5)
        time.sleep(2.0)  # the stalled socket's buffers fill up
        fps_with_stall = state(server.port)["stats"]["fps"]
        started = time.perf_counter()
        images = read_jpegs(server.port, 10)
        seconds = time.perf_counter() - started
        assert len(images) == 10 and seconds < 10 / 25 * 4  # the other viewer keeps the camera's pace
        assert fps_with_stall > 10
        wait_for(lambda: server.viewers == 1, timeout=5)  # the reader left; the stalled one is still there
    finally:
        stalled.close()
    wait_for(lambda: server.viewers == 0, timeout=5)  # the stalled one hung up: cleaned up too


def test_events_stream_state_as_server_sent_events(live: Any) -> None:
    server, _ = live
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", "/events")
    response = connection.getresponse()
    assert response.getheader("Content-Type").startswith("text/event-stream")
    events = []
    while len(events) < 3:
        line = response.readline()
        if line.startswith(b"data: "):
            events.append(json.loads(line[6:]))
    connection.close()
    frames = [event["frame"] for event in events]
    assert frames == sorted(frames) and frames[-1] > frames[0] and all(event["top"] for event in events)


@pytest.mark.parametrize("path", ["/../../etc/passwd", "/static/camera.html", "/%2e%2e/web.py",
                                  "/runtime/web.py", "/stream.mjpg/../../pyproject.toml"])
def test_no_request_path_reaches_the_file_system(live: Any, path: str) -> None:
    status, _, body = get(live[0].port, path)
    assert status == 404 and b"root:" not in body and b"import" not in body


def test_page_and_health(live: Any) -> None:
    server, _ = live
    status, headers, body = get(server.port, "/")
    assert status == 200 and b'id="picture"' in body and b"http" not in body.split(b"<script>")[1]  # no CDN
    assert "script-src 'sha256-" in headers["content-security-policy"]
    status, _, body = get(server.port, "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"


def test_loopback_server_refuses_foreign_host_names(live: Any) -> None:
    """A page on another site cannot reach a loopback server by DNS rebinding: the Host header is checked."""
    status, _, body = get(live[0].port, "/api/state", headers={"Host": "attacker.example:80"})
    assert status == 400 and b"label" not in body
    assert get(live[0].port, "/healthz", headers={"Host": f"localhost:{live[0].port}"})[0] == 200


def test_token_is_checked_on_every_endpoint(engine: Any) -> None:
    server = LiveServer(LOOPBACK, source="cup", token="s3cret-word", say=lambda m: None)
    with served_camera(engine, CUP, server):
        wait_for(lambda: state(server.port, "?token=s3cret-word")["frame"] is not None)
        for path in ["/", "/stream.mjpg", "/events", "/api/state", "/healthz", "/nothing-here"]:
            for query in ["", "?token=wrong", "?token="]:
                status, headers, body = get(server.port, path + query)
                assert (status, body) == (401, b"unauthorized\n"), path + query
                assert "content-security-policy" not in headers
        status, _, body = get(server.port, "/api/state", headers={"Authorization": "Bearer s3cret-word"})
        assert status == 200 and json.loads(body)["top"]
        assert get(server.port, "/?token=s3cret-word")[0] == 200
        assert len(read_jpegs(server.port, 2, "/stream.mjpg?token=s3cret-word")) == 2


@pytest.mark.parametrize(("text", "host", "port"), [
    ("8080", "127.0.0.1", 8080), ("0.0.0.0:9000", "0.0.0.0", 9000), ("localhost:0", "localhost", 0),
    ("[::1]:8080", "::1", 8080), (":8080", "127.0.0.1", 8080), (" 8080 ", "127.0.0.1", 8080)])
def test_parse_address(text: str, host: str, port: int) -> None:
    assert parse_address(text) == ServeAddress(host, port)


@pytest.mark.parametrize("text", ["", "http", "80800", "host:", "::1:8080", "1.2.3.4:80:80", "a b:80", "-1"])
def test_parse_address_refuses(text: str) -> None:
    with pytest.raises(EdgecnnError, match=r"is not \[HOST:\]PORT"):
        parse_address(text)


def test_access_rules() -> None:
    said: list[str] = []
    assert check_access(ServeAddress("127.0.0.1", 80), None, False, said.append) is None and not said
    with pytest.raises(EdgecnnError, match="reachable from other machines: give --token"):
        check_access(ServeAddress("0.0.0.0", 80), None, False, said.append)
    assert said and said[-1].startswith("warning:")
    assert check_access(ServeAddress("0.0.0.0", 80), "t0ken", False, said.append) == "t0ken"
    assert check_access(ServeAddress("0.0.0.0", 80), None, True, said.append) is None
    for token, no_auth, message in [(" ", False, "--token is empty"), ("x", True, "not both")]:
        with pytest.raises(EdgecnnError, match=message):
            check_access(ServeAddress("0.0.0.0", 80), token, no_auth, said.append)


@pytest.mark.parametrize("source", ["rtsp://admin:p@ss/w0rd@10.0.0.7:554/stream?token=s3cr3t",
                                    "http://cam:hunter2@127.0.0.1/a.mjpg, rtsp://u:w0rd@10.0.0.8/b"])
def test_page_and_state_show_the_source_masked(source: str) -> None:
    shown = LiveServer(LOOPBACK, source=source, say=lambda m: None).state()["source"]
    assert "***@" in shown and not any(secret in shown for secret in ("p@ss", "w0rd", "s3cr3t", "hunter2"))


def test_port_in_use_is_one_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(EdgecnnError, match=f"port {port} is in use"):
            LiveServer(ServeAddress("127.0.0.1", port), source="cup").start()


def test_cli_port_in_use_is_one_line_before_the_model_loads(imagenet_bundle: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["camera", str(imagenet_bundle), "--source", str(CUP), "--headless",
                                          "--serve", f"127.0.0.1:{port}"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [f"error: --serve 127.0.0.1:{port}: port {port} is in use; stop what uses it or pick "
                     "another port (0 picks a free one)"], result.output  # nothing else: not even the model


def test_without_the_web_extra_serve_says_what_to_install(imagenet_bundle: Path) -> None:
    script = ("import sys; sys.modules['uvicorn'] = None  # as if the [web] extra were not installed\n"
              "from edgecnn.cli import app; app(sys.argv[1:])")
    done = subprocess.run([sys.executable, "-c", script, "camera", str(imagenet_bundle), "--source", str(CUP),
                           "--headless", "--serve", "0"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: --serve needs the web extra: pip install '.[web]' (in the edgecnn clone)"]


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("this machine has no IPv6")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("::1 is not configured here")
    with LiveServer(parse_address("[::1]:0"), source="cup", say=lambda m: None) as server:
        assert server.url == f"http://[::1]:{server.port}/"
        connection = http.client.HTTPConnection("::1", server.port, timeout=10)
        connection.request("GET", "/healthz")
        assert connection.getresponse().status == 200


def test_a_viewer_that_hangs_up_mid_stream_is_counted_out(live: Any) -> None:
    server, run = live
    for _ in range(3):
        viewer = socket.create_connection(("127.0.0.1", server.port))
        viewer.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert viewer.recv(100).startswith(b"HTTP/1.1 200")
        viewer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        viewer.close()  # a reset, mid-picture
    wait_for(lambda: server.viewers == 0, timeout=5)
    frame = state(server.port)["frame"]
    wait_for(lambda: state(server.port)["frame"] > frame)  # the camera goes on
    assert run.thread.is_alive()


runner = CliRunner()


@pytest.mark.parametrize(("options", "message"), [
    (["--serve", "80800"], "is not [HOST:]PORT"),
    (["--serve", "0.0.0.0:0"], "reachable from other machines: give --token"),
    (["--serve", "0", "--token", ""], "--token is empty"),
    (["--no-auth"], "--no-auth goes with --serve"),
])
def test_cli_serve_bad_input_exits_2_with_one_line(imagenet_bundle: Path, options: list[str],
                                                   message: str) -> None:
    result = runner.invoke(app, ["camera", str(imagenet_bundle), "--source", str(CUP), "--headless",
                                 *options])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in result.output


def test_cli_serve_with_save_and_jsonl(imagenet_bundle: Path, tmp_path: Path) -> None:
    """--serve beside --headless, --save and --jsonl: a viewer watches while the files are written."""
    command = [sys.executable, "-m", "edgecnn", "camera", str(imagenet_bundle), "--source", str(CUP),
               "--headless", "--realtime", "--serve", "0", "--save", str(tmp_path / "out.mp4"),
               "--jsonl", str(tmp_path / "out.jsonl"), "--max-frames", "80", "--device", "cpu"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "COLUMNS": "200"})
    try:
        line = process.stderr.readline()
        assert line.startswith("camera page: http://127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1].strip().strip("/"))
        assert len(read_jpegs(port, 3)) == 3
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 80
    assert (tmp_path / "out.mp4").stat().st_size > 0
