"""`edgecnn camera --serve`: the live annotated picture, top-k and timings in any browser.

    server = LiveServer(parse_address("8080"), source="cup.mp4").start()
    try: run_camera(engine, config, sinks=[server])
    finally: server.close()

Starlette on uvicorn runs on its own thread and event loop. The camera loop only swaps in the newest
result (`publish`); one encoder thread draws and JPEG-encodes the newest frame, and only while a
viewer is connected; each viewer is sent the newest JPEG and skips the rest, so a slow or stalled
viewer holds up nobody but itself. Endpoints: / (the page), /stream.mjpg, /events (SSE),
/api/state, /healthz. No request path reaches the file system: the page is read once at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import ipaddress
import json
import os
import re
import secrets
import socket
import threading
import time
from base64 import b64encode
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from edgecnn.runtime.core.errors import EdgecnnError, install_hint
from edgecnn.runtime.core.redact import mask_text
from edgecnn.runtime.live.frames import LiveUpdate
from edgecnn.runtime.live.health import CameraHealth
from edgecnn.runtime.live.web_events import Timeline

PAGE = Path(__file__).with_name("static") / "camera.html"
JPEG_QUALITY = 80
STREAM_FPS = 30.0  # pictures/s to viewers at most: past a camera's rate, encoding only takes the model's CPU
EVENTS_PER_SECOND = 10  # the page's text needs no more; the picture has its own stream
FINAL_STATE_S = 0.3  # at closing, how long open pages get to receive how the run ended (3 event intervals)
RUN_ENDED = {"end": "source ended", "max_frames": "stopped after --max-frames", "quit": "stopped",
             "interrupt": "stopped (Ctrl-C)", "error": "stopped by an error (see the terminal)"}
DEFAULT_HOST = "127.0.0.1"
HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
BOUNDARY = "frame"
MAX_BODY = 4096  # bytes of a POST /api/record: {"label": NAME} with a 120-character name is ~150
BODY_TIMEOUT = 5.0  # seconds for that body: a trickled one would hold a connection slot for ever
# ASCII digits only: \d and int() also take '٨٠٨٠' (Arabic-Indic) as a port
ADDRESS = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]:|(?P<host>[A-Za-z0-9.\-]*):)?(?P<port>[0-9]{1,5})")
TOKEN_VARIABLE = "EDGECNN_TOKEN"  # the CLI's --token reads it
Say = Callable[[str], None]


@dataclass(frozen=True)
class ServeAddress:
    host: str
    port: int  # 0: any free port

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def loopback(self) -> bool:
        return _is_loopback(self.host)


def parse_address(text: str, option: str = "--serve") -> ServeAddress:
    """`--serve [HOST:]PORT`: 8080, 0.0.0.0:8080, localhost:8080 or [::1]:8080; host defaults to loopback."""
    match = ADDRESS.fullmatch(text.strip())
    port = int(match["port"]) if match else -1
    if not match or port > 65535:
        raise EdgecnnError(f"{option} {text!r} is not [HOST:]PORT; give e.g. 8080, 127.0.0.1:8080 or "
                           "0.0.0.0:8080 (port 0 picks a free one)")
    return ServeAddress(match["v6"] or match["host"] or DEFAULT_HOST, port)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise EdgecnnError(f"--serve: cannot resolve host {host!r}; give an IP address such as "
                           "127.0.0.1 or 0.0.0.0") from None
    return all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def check_access(address: ServeAddress, token: str | None, no_auth: bool, say: Say) -> str | None:
    """The token viewers must give, or None for open access; refuses an open non-loopback address."""
    if token is not None and not token.strip():
        raise EdgecnnError(f"--token is empty (also when read from {TOKEN_VARIABLE}); give a secret word, "
                           "e.g. --token \"$(openssl rand -hex 16)\"")
    if token is None and os.environ.get(TOKEN_VARIABLE, "x").strip() == "":
        # Click reads a set-but-empty variable as no token at all: a failed $(...) would serve openly.
        raise EdgecnnError(f"{TOKEN_VARIABLE} is set but empty; give it a secret word (export "
                           f"{TOKEN_VARIABLE}=\"$(openssl rand -hex 16)\") or unset it")
    if token is not None and no_auth:
        raise EdgecnnError("give either --token TOKEN or --no-auth, not both")
    if address.loopback:
        return token
    say(f"warning: --serve {address} is reachable from other machines, not only this one")
    if token is None and not no_auth:
        raise EdgecnnError(f"--serve {address} is reachable from other machines: give --token TOKEN "
                           "(viewers open /?token=TOKEN) or --no-auth to let anyone on the network watch")
    return token


def bind_address(address: ServeAddress, option: str = "--serve") -> socket.socket:
    """Listen in the caller, so a port in use is a one-line error before the camera starts."""
    try:
        family, kind, proto, _, where = socket.getaddrinfo(address.host, address.port,
                                                            type=socket.SOCK_STREAM)[0]
    except socket.gaierror:
        raise EdgecnnError(f"{option}: cannot resolve host {address.host!r}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart is not refused for TIME_WAIT
    try:
        sock.bind(where)
        sock.listen(64)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise EdgecnnError(f"{option} {address}: port {address.port} is in use; stop what uses it or "
                               "pick another port (0 picks a free one)") from None
        raise EdgecnnError(f"{option} {address}: cannot listen there ({exc.strerror}); give an address of "
                           "this machine, e.g. 127.0.0.1:8080 or 0.0.0.0:8080") from None
    return sock


class _Broadcast:
    """Wakes every coroutine waiting for "something new"; `fire` may be called from any thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop, self.event = loop, asyncio.Event()

    def fire(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting any more
            self.loop.call_soon_threadsafe(self._fire)

    def _fire(self) -> None:
        event, self.event = self.event, asyncio.Event()
        event.set()


class LiveServer:
    """The web page of one camera run; a `Sink` for `run_camera`."""

    def __init__(self, address: ServeAddress, source: str, token: str | None = None,
                 say: Say = print, recorder: Any = None, routes: tuple[Any, ...] = ()) -> None:
        self.address, self.token, self.say = address, token, say
        self.recorder = recorder  # runtime.recorder.Recorder: the page's record button, when given
        self.routes = routes  # more Starlette routes behind the same gate (web_review.py's)
        self.source = mask_text(source, source)  # the one masking rule (runtime/core/redact.py)
        self.viewers = 0  # open /stream.mjpg connections; read by the camera thread
        self.jpeg_frames = 0
        self.port = address.port
        self._latest: LiveUpdate | None = None
        self._run = "live"  # or how the run ended, in words (`finish`): the page shows it over the picture
        self._listeners = 0  # open /events streams
        self._published_at = 0.0
        self._updates = 0
        self._jpeg: tuple[int, bytes] = (0, b"")
        self._pending: Callable[[], Any] | None = None
        self._frame_ready = threading.Condition()
        self._closing = False
        self._server: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._new_state: _Broadcast | None = None
        self._new_jpeg: _Broadcast | None = None
        self._threads: list[threading.Thread] = []
        self.health = CameraHealth()  # /healthz: degraded with reasons; /api/state's cameras
        self.timeline = Timeline()  # web_events.py: the events of each camera, as the page lists them
        self.metrics: Callable[[], tuple[bytes, str]] | None = None  # /metrics: (body, content type)
        self.reload_model: Callable[[], bool] | None = None  # POST /api/model/reload (web_model.py)

    @property
    def url(self) -> str:
        host = self.address.host if self.address.host not in ("0.0.0.0", "::") else socket.gethostname()
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/"

    # -- the camera thread ---------------------------------------------------------------------
    def publish(self, update: LiveUpdate) -> None:
        """Keep the newest result; hand its picture to the encoder only while someone watches."""
        self._latest, self._published_at = update, time.time()
        self.health.publish(update.record.camera or update.record.source, update.stats, update.record)
        if self.recorder is not None:
            self.recorder.offer(update.image, update.record.frame)
        self._updates += 1
        if self.viewers > 0:
            with self._frame_ready:
                self._pending = update.draw
                self._frame_ready.notify()
        if self._new_state is not None:
            self._new_state.fire()

    def event(self, event: Any) -> None:
        """An `EventSink` too: the event joins the page's timeline at the next /events message."""
        self.timeline.add(event)
        self._updates += 1
        if self._new_state is not None:
            self._new_state.fire()

    def clip_dropped(self, notice: Any) -> None:
        """An event's clip will never exist: the timeline drops its name (web_events.py)."""
        self.timeline.clip_dropped(notice)
        self._updates += 1
        if self._new_state is not None:
            self._new_state.fire()

    def finish(self, stopped_by: str) -> None:
        """The run is over: the page says how, over its last picture, instead of looking live."""
        self._run = RUN_ENDED.get(stopped_by, "stopped")
        self._updates += 1
        if self._new_state is not None:
            self._new_state.fire()

    # -- life cycle ----------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> LiveServer:
        try:
            import uvicorn  # noqa: F401
            from starlette.applications import Starlette  # noqa: F401
        except ImportError:
            raise EdgecnnError(f"--serve needs the web extra: {install_hint('web')}") from None
        sock = bind_address(self.address)
        self.port = sock.getsockname()[1]
        started = threading.Event()
        serve = threading.Thread(target=self._serve, args=(sock, started), name="edgecnn-web", daemon=True)
        encode = threading.Thread(target=self._encode, name="edgecnn-jpeg", daemon=True)
        self._threads = [serve, encode]
        for thread in self._threads:
            thread.start()
        if not started.wait(timeout):
            self.close()
            raise EdgecnnError(f"the web server on {self.address} did not start within {timeout:.0f} s")
        return self

    def close(self) -> None:
        """Stop serving: open streams end, the threads finish (bounded waits)."""
        if self._run != "live" and self._listeners:
            time.sleep(FINAL_STATE_S)  # the state saying how the run ended reaches the open pages first
        self._closing = True
        with self._frame_ready:
            self._frame_ready.notify_all()
        for broadcast in (self._new_state, self._new_jpeg):
            if broadcast is not None:
                broadcast.fire()
        if self._server is not None:
            self._server.should_exit = True
        for thread in self._threads:
            thread.join(timeout=5.0)

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _serve(self, sock: socket.socket, started: threading.Event) -> None:
        import uvicorn
        from edgecnn.runtime.live import web_guard as guard

        config = uvicorn.Config(self._app(), log_level="error", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=1, server_header=False, ws="none",
                                http=guard.guarded_protocol(guard.max_connections()),
                                timeout_keep_alive=guard.KEEP_ALIVE, backlog=guard.BACKLOG,
                                h11_max_incomplete_event_size=guard.MAX_HEAD_BYTES)
        self._server = uvicorn.Server(config)

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            self._new_state, self._new_jpeg = _Broadcast(self._loop), _Broadcast(self._loop)
            task = asyncio.create_task(self._server.serve(sockets=[sock]))
            while not self._server.started and not task.done():
                await asyncio.sleep(0.01)
            if self._server.started:
                sock.listen(guard.LISTEN_QUEUE)  # asyncio's accept burst stays `backlog` (web_guard.py)
            started.set()
            await task

        try:
            asyncio.run(serve())
        finally:
            sock.close()

    # -- the encoder thread --------------------------------------------------------------------
    def _encode(self) -> None:
        import cv2

        encoded = 0.0
        while True:
            time.sleep(max(0.0, encoded + 1.0 / STREAM_FPS - time.perf_counter()))
            encoded = time.perf_counter()
            with self._frame_ready:
                while self._pending is None and not self._closing:
                    self._frame_ready.wait()
                if self._closing:
                    return
                draw, self._pending = self._pending, None
            ok, jpeg = cv2.imencode(".jpg", draw(), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if ok:
                self._jpeg = (self._jpeg[0] + 1, jpeg.tobytes())
                self.jpeg_frames += 1
                self._new_jpeg.fire()

    # -- the web side (event-loop thread) ------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """What /api/state returns: the newest result (the --jsonl record) and the run's counters."""
        update = self._latest
        record = update.record.to_json() if update is not None else {"frame": None, "label": None, "top": []}
        stats = dict(update.stats) if update is not None else {}
        captured_at = stats.pop("captured_at", None)
        stats.update(viewers=self.viewers, jpeg_frames=self.jpeg_frames)
        # The page's own source name wins over the record's (several sources: the record names one of them).
        recording = None if self.recorder is None else self.recorder.state()
        return {**record, "source": self.source, "captured_at": captured_at,
                "published_at": self._published_at or None, "stats": stats, "recording": recording,
                "run": self._run, "server_time": time.time(), "cameras": self.health.listing(),
                "events": self.timeline.state()}

    async def _metrics_page(self, request: Any) -> Any:
        from starlette.responses import Response

        if self.metrics is None:
            return Response("no metrics in this run (pip install 'edgecnn[box]')\n", status_code=404)
        body, kind = self.metrics()
        return Response(body, media_type=kind, headers=HEADERS)

    def _app(self) -> Any:
        from edgecnn.runtime.live.web_model import model_routes
        from starlette.applications import Starlette
        from starlette.responses import HTMLResponse, JSONResponse, StreamingResponse
        from starlette.routing import Route

        page = PAGE.read_text(encoding="utf-8")
        script = re.search(r"<script>(.*?)</script>", page, re.S)[1]
        digest = b64encode(hashlib.sha256(script.encode()).digest()).decode()
        page_headers = {**HEADERS, "Content-Security-Policy": (
            f"default-src 'none'; img-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
            f"script-src 'sha256-{digest}'; frame-ancestors 'none'; base-uri 'none'")}

        async def index(request: Any) -> Any:
            return HTMLResponse(page, headers=page_headers)

        async def stream(request: Any) -> Any:
            return StreamingResponse(self._mjpeg(), headers=HEADERS,
                                     media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}")

        async def events(request: Any) -> Any:
            return StreamingResponse(self._events(), headers=HEADERS, media_type="text/event-stream")

        async def api_state(request: Any) -> Any:
            return JSONResponse(self.state(), headers=HEADERS)

        async def healthz(request: Any) -> Any:
            age = time.time() - self._published_at if self._published_at else None
            return JSONResponse({**self.health.report(), "results": self._updates, "last_result_s": age},
                                headers=HEADERS)

        async def record(request: Any) -> Any:
            return await self._record(request)

        routes = [Route("/", index), Route("/stream.mjpg", stream), Route("/events", events),
                  Route("/api/state", api_state), Route("/healthz", healthz),
                  Route("/api/record", record, methods=["POST"]), Route("/metrics", self._metrics_page),
                  *self.routes, *model_routes(self, HEADERS)]
        app = Starlette(routes=routes)
        return _Gate(app, self.token, loopback_only=self.address.loopback)

    async def _record(self, request: Any) -> Any:
        """POST {"label": NAME} starts or renews a hold of the record button, {"label": null} ends it.

        JSON only: a form on another site cannot send it without a CORS preflight, which gets no
        permission here, so a page elsewhere cannot record through a viewer's browser."""
        from starlette.responses import JSONResponse

        if self.recorder is None:
            return JSONResponse({"error": "recording is off: start the camera with --record-to DATA"}, 404,
                                headers=HEADERS)
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSONResponse({"error": "send JSON"}, 415, headers=HEADERS)
        try:
            body = await asyncio.wait_for(_read_at_most(request, MAX_BODY), BODY_TIMEOUT)
        except TimeoutError:
            return JSONResponse({"error": f"the request body took over {BODY_TIMEOUT:.0f} s"}, 408,
                                headers={**HEADERS, "Connection": "close"})
        if body is None:
            return JSONResponse({"error": f"a record request is at most {MAX_BODY} bytes"}, 413,
                                headers={**HEADERS, "Connection": "close"})  # the rest is never read
        try:
            body = json.loads(body)
            if not isinstance(body, dict) or not isinstance(body.get("label"), str | None):
                raise ValueError('send {"label": "NAME"} to record, {"label": null} to stop')
            self.recorder.hold(body.get("label"))
        except (ValueError, EdgecnnError) as exc:
            return JSONResponse({"error": str(exc)}, 400, headers=HEADERS)
        return JSONResponse(self.recorder.state(), headers=HEADERS)

    async def _mjpeg(self) -> AsyncIterator[bytes]:
        self.viewers += 1
        try:
            sent = self._jpeg[0]  # a new viewer waits for a fresh frame, never an old one
            while not self._closing:
                wake = self._new_jpeg.event
                number, jpeg = self._jpeg
                if number == sent:
                    await wake.wait()
                    continue
                sent = number
                yield (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                       ).encode() + jpeg + b"\r\n"
        finally:
            self.viewers -= 1

    async def _events(self) -> AsyncIterator[str]:
        sent = -1
        self._listeners += 1
        try:
            while not self._closing:
                wake = self._new_state.event
                if self._updates == sent:
                    await wake.wait()
                    continue
                sent = self._updates
                yield f"data: {json.dumps(self.state())}\n\n"
                await asyncio.sleep(1.0 / EVENTS_PER_SECOND)
        finally:
            self._listeners -= 1


async def _read_at_most(request: Any, limit: int) -> bytes | None:
    """The request body, or None once over `limit` bytes, read no further (a 300 MB POST was held whole)."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


class _Gate:
    """Checks every request before routing: the token (401, nothing else said) and, on loopback, the
    Host header (a web page elsewhere cannot reach a loopback server through DNS rebinding)."""

    LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")

    def __init__(self, app: Any, token: str | None, loopback_only: bool) -> None:
        self.app, self.loopback_only = app, loopback_only
        self.token = token.encode() if token is not None else None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        from starlette.responses import PlainTextResponse

        if scope["type"] == "http":
            headers = dict(scope["headers"])
            if self.loopback_only and not self._loopback_host(headers.get(b"host", b"").decode("latin-1")):
                await PlainTextResponse("bad host\n", 400, headers=HEADERS)(scope, receive, send)
                return
            if not self._authorised(scope, headers):
                challenge = {**HEADERS, "WWW-Authenticate": "Bearer"}
                refusal = PlainTextResponse("unauthorized\n", 401, headers=challenge)
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _authorised(self, scope: dict[str, Any], headers: dict[bytes, bytes]) -> bool:
        if self.token is None:
            return True
        given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[-1].encode()
        bearer = headers.get(b"authorization", b"")
        if bearer.lower().startswith(b"bearer "):
            given = bearer[7:].strip()
        return secrets.compare_digest(given, self.token)

    def _loopback_host(self, host: str) -> bool:
        name = host[1:host.find("]")] if host.startswith("[") else host.rsplit(":", 1)[0]
        if name in self.LOOPBACK_NAMES:
            return True
        try:
            return ipaddress.ip_address(name).is_loopback
        except ValueError:
            return False
