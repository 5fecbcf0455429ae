"""The camera page under hostile clients (issue 31, item 1): a slowloris flood, oversized bodies, odd
record labels over real loopback sockets, against a real `edgecnn camera --serve` run that ends normally."""

from __future__ import annotations

import http.client
import json
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from edgecnn.runtime.live.recorder import MAX_LABELS
from edgecnn.runtime.live.web import MAX_BODY

from edgecnn.cli import app
from tests.reliability.conftest import ROOT, assert_user_error, runner
from tests.runtime.test_camera import CUP
from tests.runtime.test_web import read_jpegs

pytest.importorskip("uvicorn", reason="the web extra is not installed: pip install '.[web]'")
FLOOD = 300  # slow-header connections held open at once: more than the 64 a 256-fd process allows
FD_LIMIT = 256  # the tester's `ulimit -n 256`


@contextmanager
def camera_page(bundle: Path, *options: object, fd_limit: int = FD_LIMIT) -> Iterator[tuple[int, Any]]:
    """`edgecnn camera --serve 0` playing the cup clip in real time; yields its port and the process."""
    command = [sys.executable, "-m", "edgecnn", "camera", bundle, "--source", CUP, "--headless",
               "--realtime", "--serve", "0", "--device", "cpu", *options]
    process = subprocess.Popen(
        list(map(str, command)), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit)))
    try:
        while not (line := process.stderr.readline()).startswith("camera page:"):
            assert line, process.communicate(timeout=30)
        yield int(line.rsplit(":", 1)[1].strip().strip("/")), process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


@contextmanager
def slowloris(port: int, count: int = FLOOD, seconds: float = 60.0) -> Iterator[dict[str, int]]:
    """`count` connections that send a request head one byte a second; a closed one is opened again."""
    tally, stop = {"opened": 0, "closed_by_server": 0}, threading.Event()

    def open_one() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        sock.setblocking(False)
        tally["opened"] += 1
        return sock

    def flood() -> None:
        socks = [open_one() for _ in range(count)]
        deadline = time.monotonic() + seconds
        while not stop.wait(1.0) and time.monotonic() < deadline:
            for i, sock in enumerate(socks):
                try:
                    sock.send(b"x")
                    if sock.recv(1, socket.MSG_PEEK) == b"":
                        raise ConnectionResetError
                except BlockingIOError:
                    continue
                except OSError:
                    tally["closed_by_server"] += 1
                    sock.close()
                    socks[i] = open_one()
        for sock in socks:
            sock.close()

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    while tally["opened"] < count and thread.is_alive():
        time.sleep(0.05)
    try:
        yield tally
    finally:
        stop.set()
        thread.join(timeout=30)


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    return response.status, response.read()


def test_slowloris_flood_leaves_viewers_the_camera_and_the_model(hand_bundle: Path) -> None:
    """300 slow-header connections under `ulimit -n 256`: a viewer still gets /api/state and the stream,
    the model loads, the run ends with exit 0 and no 'Too many open files' in its log."""
    started = time.monotonic()
    with camera_page(hand_bundle) as (port, process), slowloris(port) as tally:
        for _ in range(3):
            status, body = request(port, "GET", "/api/state")
            assert status == 200 and "stats" in json.loads(body)
        assert len(read_jpegs(port, 3)) == 3
        time.sleep(6.0)  # past HEAD_TIMEOUT: the flood's heads are overdue and get closed
        assert request(port, "GET", "/healthz")[0] == 200
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "Too many open files" not in err and "Traceback" not in err, err[-2000:]
    assert tally["closed_by_server"] >= FLOOD - 64, tally  # pushed out or timed out, never kept
    assert time.monotonic() - started < 60


BODIES = {  # name -> (body, headers, status)
    "300 MB declared": (b"{}", {"Content-Length": str(300 * 2**20)}, 413),
    "chunked past the limit": (iter([b'{"label": "' + b"a" * MAX_BODY, b'"}']), {}, 413),
    "a plain label": (b'{"label": "cup"}', {}, 200),
    "a path": (b'{"label": "../outside"}', {}, 400),
    "a backslash": (b'{"label": "a\\\\b"}', {}, 400),
    "an existing file": (b'{"label": "taken"}', {}, 400),
    "a link out of the data": (b'{"label": "link"}', {}, 400),
    "a dot name": (b'{"label": ".hidden"}', {}, 400),
    "not an object": (b'["cup"]', {}, 400),
}


def test_record_requests_are_bounded_and_never_end_the_run(hand_bundle: Path, tmp_path: Path) -> None:
    """Every row's status, while recording: none of them ends the camera run (an existing-file label
    did, with exit 2), nothing is written outside DATA, and only the plain label gets a folder."""
    data, outside = tmp_path / "data", tmp_path / "outside"
    data.mkdir()
    outside.mkdir()
    (data / "taken").write_text("a file, not a class folder")
    (data / "link").symlink_to(outside)
    with camera_page(hand_bundle, "--record-to", data) as (port, process):
        for name, (body, headers, status) in BODIES.items():
            headers = {"Content-Type": "application/json", **headers}
            if name == "300 MB declared":
                assert _declared_only(port, headers) == status, name
                continue
            assert request(port, "POST", "/api/record", body, headers)[0] == status, name
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert (data / "taken").read_text() == "a file, not a class folder"
    assert {p.name for p in data.iterdir()} - {"cup"} == {"link", "taken"}  # cup: when frames came in time
    assert list(outside.iterdir()) == []


def _declared_only(port: int, headers: dict[str, str]) -> int:
    """Send only the head of a 300 MB POST: the answer (413) comes without waiting for the body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.putrequest("POST", "/api/record")
    for name, value in headers.items():
        connection.putheader(name, value)
    connection.endheaders()
    return connection.getresponse().status


TRICKLES = {  # name -> (method, path, status): a body declared as 100 bytes, 10 of them sent, then nothing
    "POST /api/record": ("POST", "/api/record", 408),
    "GET /api/state (a body nobody reads)": ("GET", "/api/state", 200),
}


def _trickle(port: int, method: str, path: str) -> tuple[int, bool]:
    """The answer's status and whether the server then closed the connection (within 10 s)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 "Content-Length: 100\r\n\r\n".encode() + b'{"label":')
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
        closed = True
    except TimeoutError:
        closed = False
    sock.close()
    return int(received.split(b" ", 2)[1]) if received else 0, closed


def test_a_trickled_body_holds_no_connection(hand_bundle: Path, tmp_path: Path) -> None:
    """A slow-body client gets its answer (408 for a record body over BODY_TIMEOUT) and is closed."""
    results: dict[str, tuple[int, bool]] = {}
    with camera_page(hand_bundle, "--record-to", tmp_path / "data") as (port, process):
        threads = [threading.Thread(target=lambda n=n, m=m, p=p: results.update({n: _trickle(port, m, p)}))
                   for n, (m, p, _) in TRICKLES.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=20)
        process.communicate(timeout=60)
    assert results == {name: (status, True) for name, (_, _, status) in TRICKLES.items()}
    assert process.returncode == 0


def test_the_page_keeps_a_bounded_set_of_labels(hand_bundle: Path, tmp_path: Path) -> None:
    """3000 distinct labels grew memory and /api/state (195 KB): past MAX_LABELS a new one is 400."""
    with camera_page(hand_bundle, "--record-to", tmp_path / "data") as (port, process):
        statuses = [request(port, "POST", "/api/record", json.dumps({"label": f"class{i}"}).encode(),
                            {"Content-Type": "application/json"})[0] for i in range(MAX_LABELS + 20)]
        status, body = request(port, "GET", "/api/state")
        process.communicate(timeout=60)
    assert statuses == [200] * MAX_LABELS + [400] * 20
    assert len(json.loads(body)["recording"]["counts"]) == MAX_LABELS
    assert process.returncode == 0


SERVE_REFUSALS = {  # name -> (options, environment, words)
    "EDGECNN_TOKEN set but empty": (["--serve", "0"], {"EDGECNN_TOKEN": ""}, ("EDGECNN_TOKEN", "empty")),
    "EDGECNN_TOKEN blank": (["--serve", "0"], {"EDGECNN_TOKEN": "  "}, ("EDGECNN_TOKEN", "empty")),
    "Arabic-Indic port": (["--serve", "٨٠٨٠"], {}, ("is not [HOST:]PORT",)),
    "Arabic-Indic port with a host": (["--serve", "127.0.0.1:٨٠"], {}, ("is not [HOST:]PORT",)),
}


@pytest.mark.parametrize("name", list(SERVE_REFUSALS))
def test_serve_refuses_before_the_camera_starts(name: str, hand_bundle: Path) -> None:
    options, environment, words = SERVE_REFUSALS[name]
    result = runner.invoke(app, ["camera", str(hand_bundle), "--source", str(CUP), "--headless", *options],
                           env=environment)
    assert_user_error(result, *words)
