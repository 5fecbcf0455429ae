"""A viewer that stops reading the picture (issue 30, item 6): the camera still stops cleanly, on Ctrl-C
and at the clip's end, with no uvicorn traceback; while running, the stalled response is cut."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.reliability.conftest import ROOT
from tests.runtime.test_camera import CUP

pytest.importorskip("uvicorn", reason="the web extra is not installed: pip install '.[web]'")
STOP_WITHIN = 10.0  # seconds from Ctrl-C or the clip's end to the exit: uvicorn's own timeout is 1 s


def _send_queue(server_port: int, client_port: int) -> int | None:
    """Bytes the server's kernel holds unsent to this client (Linux's /proc/net/tcp), None when gone."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = (int(fields[i].rsplit(":", 1)[1], 16) for i in (1, 2))
        if (local, remote) == (server_port, client_port):
            return int(fields[4].split(":")[0], 16)
    return None


def _stalled_viewer(port: int) -> socket.socket:
    """Opens the picture, reads its headers, then reads nothing more."""
    viewer = socket.socket()
    viewer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # small: the buffers fill in seconds
    viewer.connect(("127.0.0.1", port))
    viewer.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert viewer.recv(15) == b"HTTP/1.1 200 OK"
    return viewer


def _wait_until_full(port: int, viewer: socket.socket, timeout: float = 20.0) -> int:
    """Until the server's send queue stops growing (the kernel holds all it will); returns its size."""
    deadline, last, steady = time.monotonic() + timeout, -1, 0
    while time.monotonic() < deadline:
        queued = _send_queue(port, viewer.getsockname()[1]) or 0
        steady = steady + 1 if queued == last and queued > 0 else 0
        if steady >= 4:  # one second without a byte moving
            return queued
        last = queued
        time.sleep(0.25)
    raise AssertionError(f"the viewer's buffers did not fill within {timeout:.0f} s (queued {last})")


def _camera(bundle: Path, *options: str) -> tuple[subprocess.Popen, int]:
    command = [sys.executable, "-m", "edgecnn", "camera", str(bundle), "--source", str(CUP), "--headless",
               "--serve", "0", "--device", "cpu", *options]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stderr.readline()
    assert line.startswith("camera page:"), line + process.communicate(timeout=30)[1]
    return process, int(line.rsplit(":", 1)[1].strip().strip("/"))


def test_stalled_viewers_neither_block_nor_spoil_the_camera_s_end(hand_bundle: Path) -> None:
    """Two runs side by side, each with a viewer whose buffers are full: one stopped by Ctrl-C (130),
    one at the end of its clip (0); both exit within seconds, their stderr free of tracebacks."""
    interrupted, interrupted_port = _camera(hand_bundle, "--loop")
    ended, ended_port = _camera(hand_bundle)
    viewers = [_stalled_viewer(interrupted_port), _stalled_viewer(ended_port)]
    try:
        _wait_until_full(interrupted_port, viewers[0])
        _wait_until_full(ended_port, viewers[1])
        assert ended.poll() is None, "the clip ended before its viewer stalled: nothing was tested"
        asked = time.monotonic()
        interrupted.send_signal(signal.SIGINT)
        _, interrupted_err = interrupted.communicate(timeout=30)
        interrupted_took = time.monotonic() - asked
        _, ended_err = ended.communicate(timeout=30)
    finally:
        for process in (interrupted, ended):
            if process.poll() is None:
                process.kill()
        for viewer in viewers:
            viewer.close()
    for err in (interrupted_err, ended_err):
        assert "Traceback" not in err and "Exception in ASGI" not in err and "ERROR" not in err, err
    assert interrupted.returncode == 130 and interrupted_took < STOP_WITHIN, (interrupted_took,
                                                                              interrupted_err)
    assert ended.returncode == 0, ended_err


@contextmanager
def _guarded_server(app: object, stall: float) -> Iterator[tuple[str, int]]:
    """`app` on a real uvicorn with the page server's protocol, on a free loopback port."""
    import uvicorn
    from edgecnn.runtime.live.web_guard import guarded_protocol

    config = uvicorn.Config(app, log_level="error", lifespan="off", http=guarded_protocol(8, stall=stall))
    server, sock = uvicorn.Server(config), socket.socket()
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=lambda: server.run(sockets=[sock]), daemon=True)
    thread.start()
    try:
        while not server.started and thread.is_alive():
            time.sleep(0.05)
        yield sock.getsockname()
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_a_stalled_response_is_cut_and_its_stream_ends() -> None:
    """A response the client stopped reading is reset once stalled for `stall` seconds (nothing is left
    queued for it), and the stream behind it runs its `finally`."""
    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    ended = threading.Event()

    async def chunks() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"x" * 65536
                await asyncio.sleep(0)
        finally:
            ended.set()

    async def stream(request: object) -> StreamingResponse:
        return StreamingResponse(chunks())

    with _guarded_server(Starlette(routes=[Route("/", stream)]), stall=1.0) as address:
        viewer = socket.socket()
        viewer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        viewer.connect(address)
        viewer.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert ended.wait(timeout=20), "the stalled response was never cut"
        time.sleep(0.2)
        assert not _send_queue(address[1], viewer.getsockname()[1])  # reset: the kernel holds nothing for it
        viewer.close()
