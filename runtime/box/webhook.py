"""--webhook URL: each event POSTed as JSON by one background worker (timeouts, retries with backoff, a
bounded queue): a slow or dead receiver never blocks the camera loop; what failed is counted.

A receiver that is down or answers 5xx/408/429 is retried (backoff up to 30 s) until it comes back, the
events after it waiting in order; when the queue is full the oldest waiting event is dropped and counted.
Only a refusal (another 4xx) or the end of the run gives an event up as failed. A URL whose tries have
all failed for longer than FAILING_AFTER_S (failing.py) is the sink's `problem()`: /healthz degraded,
until a POST to it succeeds again."""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from urllib.parse import urlsplit

from edgecnn.runtime.box.failing import FAILING_AFTER_S, Failing, problems
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.redact import mask_url
from edgecnn.runtime.live.events import ClipDropped, Event

QUEUE = 1000  # events waiting (all URLs together)
TIMEOUT_S = 5.0  # one POST
RETRIED_HTTP = (408, 429)  # 4xx answers worth another try; the rest of 4xx refuse the event for good
BACKOFF_S = (0.2, 30.0)  # first and longest wait between tries
CLOSE_S = 5.0  # what is still queued at the end gets this long


def check_webhook(url: str) -> str:
    """The URL's form (scheme, host, port 1-65535 in ASCII digits), at the start and by `run --check`."""
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError: out of range, or not ASCII digits
    except ValueError:
        parts, port = None, None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        raise EdgecnnError(f"--webhook {mask_url(url)} is not an http:// or https:// URL with a host (and a "
                           "port 1-65535); give e.g. http://127.0.0.1:8123/api/webhook/ID")
    return url


class WebhookSink:
    """An `EventSink`: POSTs each event to every URL, in order, on its own thread."""

    def __init__(self, urls: Sequence[str], failing_after_s: float = FAILING_AFTER_S) -> None:
        self.urls = tuple(check_webhook(url) for url in urls)
        self.failing = {url: Failing(f"webhook {mask_url(url)}", failing_after_s, sink="webhook")
                        for url in self.urls}
        self.sent = self.dropped = self.failed = 0
        self._queue: queue.Queue[tuple[str, str, bytes] | None] = queue.Queue(QUEUE)
        self._deadline = float("inf")
        self._closing = threading.Event()  # wakes a worker waiting out its backoff
        self._thread = threading.Thread(target=self._run, name="edgecnn-webhook", daemon=True)
        self._thread.start()

    def problem(self) -> str | None:
        """Why a receiver has failed every try for a while (None when each has answered lately)."""
        return problems(self.failing.values())

    def event(self, event: Event | ClipDropped) -> None:
        """POST the event (or a `ClipDropped` notice: `clip_dropped`) to every URL."""
        body = json.dumps(event.to_json()).encode()
        for url in self.urls:
            while True:
                try:
                    self._queue.put_nowait((url, event.camera, body))
                    break
                except queue.Full:
                    self._drop_oldest()

    def clip_dropped(self, notice: ClipDropped) -> None:
        self.event(notice)

    def _drop_oldest(self) -> None:
        try:
            self._queue.get_nowait()
            self.dropped += 1
        except queue.Empty:
            pass

    def close(self) -> None:
        self._deadline = time.monotonic() + CLOSE_S
        self._closing.set()
        try:
            self._queue.put(None, timeout=CLOSE_S)
        except queue.Full:
            pass
        self._thread.join(CLOSE_S + TIMEOUT_S)
        self.dropped += self._queue.qsize()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if time.monotonic() > self._deadline:
                self.dropped += 1
                continue
            if self._deliver(*item):
                self.sent += 1
            else:
                self.failed += 1

    def _deliver(self, url: str, camera: str, body: bytes) -> bool:
        """True once delivered; False when refused (4xx) or the run ends first. Down: retried meanwhile."""
        wait, failing = BACKOFF_S[0], self.failing[url]
        while True:
            try:
                request = urllib.request.Request(url, body, {"Content-Type": "application/json",
                                                             "User-Agent": "edgecnn"}, method="POST")
                with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                    if response.status < 300:
                        failing.ok()
                        return True
                    failing.failed(f"answered HTTP {response.status}", camera)
            except urllib.error.HTTPError as error:
                failing.failed(f"answered HTTP {error.code}", camera)
                if 400 <= error.code < 500 and error.code not in RETRIED_HTTP:
                    return False
            except (OSError, ValueError) as error:  # refused, timed out, reset
                failing.failed(f"unreachable: {getattr(error, 'reason', error)}", camera)
            if time.monotonic() + wait > self._deadline:
                return False
            self._closing.wait(wait)
            wait = min(wait * 2, BACKOFF_S[1])
