"""The page server under hostile clients: a bounded count of connections, a deadline for each request head.

uvicorn (0.55, h11) has neither: a connection that trickles its headers never reaches the app (so never
the token check), its keep-alive timer is cancelled by every byte, and `limit_concurrency` only answers
503 to a request whose head has arrived. 400 such connections ran a camera process out of file
descriptors (issue 31). `guarded_protocol` wraps uvicorn's own h11 protocol with two rules:

1. A request head (request line and headers) must arrive within `HEAD_TIMEOUT` seconds of the connection
   opening or of the previous response ending; a slower one is closed. A connection answered before the
   client finished its body (a body nobody reads) is closed, so a trickled body cannot hold a slot either.
2. At most `max_connections()` are open at once. A new connection over the cap pushes out the oldest one
   still sending its head (a real viewer sends it within milliseconds, so a flood of half-open
   connections cannot lock viewers out); when every open one is serving a request, the new one is closed.
3. A response that makes no progress for `STALL_TIMEOUT` seconds (a viewer that stopped reading: the
   kernel's buffers and the transport's are full) is cut, and at shutdown such a connection is cut at once:
   otherwise its stream waits in `send` for ever, the slot and the encoder stay busy, and uvicorn cancels
   it after its graceful timeout with "Exception in ASGI application" and a 40-line traceback (issue 30).
"""

from __future__ import annotations

import resource
import socket
import struct
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEAD_TIMEOUT = 5.0  # seconds: a browser sends its head in one packet; 5 s covers a slow mobile link
MAX_HEAD_BYTES = 16 * 1024  # h11's limit on a request head; this page's requests carry no cookies
KEEP_ALIVE = 5  # seconds an idle keep-alive connection stays open (uvicorn's default, said once here)
# asyncio accepts up to `backlog` connections per wake-up before any protocol can refuse one, and uvicorn's
# default is 2048: one burst took every descriptor the process had. asyncio also makes it the kernel's
# queue, which at 16 drops a fast client's SYNs (a 1 s retry each), so the queue is widened once serving.
BACKLOG = 16
LISTEN_QUEUE = 128
MOST_CONNECTIONS = 256  # viewers of one camera page are a handful; each open connection costs one fd
# A browser reads an MJPEG stream as it comes; a phone in a tunnel may stall for seconds, and is then
# cut and reconnects by itself (the page retries), so 10 s costs a real viewer little.
STALL_TIMEOUT = 10.0


def max_connections() -> int:
    """256, or a quarter of the file-descriptor limit: the model and the camera keep the rest."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MOST_CONNECTIONS
    return max(8, min(MOST_CONNECTIONS, soft // 4))


def guarded_protocol(cap: int, stall: float = STALL_TIMEOUT) -> type:
    """The protocol class for `uvicorn.Config(http=...)`: `GuardedH11` holding at most `cap` connections,
    cutting a response stalled for `stall` seconds."""
    return type("GuardedH11", (GuardedH11,), {"cap": cap, "stall": stall})


class GuardedH11(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request head and a connection cap."""

    cap = MOST_CONNECTIONS
    stall = STALL_TIMEOUT

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._head_timer: Any = None
        self._stall_timer: Any = None
        self._opened = self.loop.time()
        if _open(self.connections) > self.cap and not _push_out_oldest_waiting(self.connections, self):
            self.transport.close()  # every slot is serving a request: this one is refused
            return
        self._await_head()

    def _await_head(self) -> None:
        self._cancel_head_timer()
        self._opened = self.loop.time()
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT, self._head_too_slow)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()

    @property
    def waiting_for_head(self) -> bool:
        return self._head_timer is not None

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # the head has arrived: the request is being served
            self._cancel_head_timer()

    def on_response_complete(self) -> None:
        if self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
            self.transport.close()  # answered before its body ended: a trickled body holds no slot
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._await_head()  # the next request on a kept-alive connection gets the same deadline

    def pause_writing(self) -> None:
        super().pause_writing()  # the transport's buffer is full: the client reads slower than we send
        if self._stall_timer is None:
            self._stall_timer = self.loop.call_later(self.stall, self._cut)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._cancel_stall_timer()

    def _cancel_stall_timer(self) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    def _cut(self) -> None:
        """Close with a reset: the kernel drops the megabytes queued for the client at once, where a
        plain close would keep them and go on offering them to a window that never opens."""
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()

    def shutdown(self) -> None:
        if self.flow.write_paused:  # a stalled viewer: its response would never end by itself
            self._cut()
            return
        super().shutdown()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        self._cancel_stall_timer()
        super().connection_lost(exc)


def _open(connections: set[Any]) -> int:
    return sum(1 for c in connections if not c.transport.is_closing())


def _push_out_oldest_waiting(connections: set[Any], newcomer: Any) -> bool:
    """Close the longest-waiting connection that has not sent its head; False when there is none."""
    waiting = [c for c in connections if c is not newcomer and getattr(c, "waiting_for_head", False)
               and not c.transport.is_closing()]
    if not waiting:
        return False
    oldest = min(waiting, key=lambda c: c._opened)
    oldest._cancel_head_timer()
    oldest.transport.close()
    return True
