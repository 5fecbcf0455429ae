"""Running as a systemd service: the unit `edgecnn run --unit` prints, and the sd_notify messages the run
sends over $NOTIFY_SOCKET with the standard library's socket (READY=1 once results flow, WATCHDOG=1 while
the loop delivers them, STOPPING=1 at the end).

    with Watchdog.from_environment() as watchdog:  # None outside systemd
        run_camera(engine, config, sinks=[watchdog])

The keep-alive is sent by a thread, but only while the loop has delivered a result within half of
WatchdogSec: a loop stalled in a driver call stops the keep-alives and systemd kills and restarts the
service (Restart=always) instead of leaving it hanging. A box whose every camera gives no frame for that
long is restarted the same way; the unit's WatchdogSec is twice a lone camera's longest reconnect
(`watchdog_for`), so a camera that comes back in time is not killed for being away. The unit starts
`edgecnn run CONFIG --append`: a restart adds to the jsonl and events files the last start wrote, where it
would refuse them (and Restart= would loop) or, with force, empty them.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from edgecnn.runtime.core.errors import EdgecnnError

WATCHDOG_SEC = 60  # the unit's shortest WatchdogSec
SOURCE_WAITS_S = 15.0  # a live source's open (10 s) and read (5 s) timeouts, on top of --reconnect-timeout
SERVICE_USER = "edgecnn"  # a dedicated user: `useradd --system edgecnn`


def notify(message: str, address: str | None = None) -> bool:
    """One sd_notify datagram ("READY=1"); False when not under systemd (no NOTIFY_SOCKET)."""
    address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.connect(address)
            sock.sendall(message.encode())
        except OSError:  # systemd went away: the service goes on; the watchdog (if any) decides
            return False
    return True


class Watchdog:
    """A `Sink`: READY=1 at the first result, WATCHDOG=1 every `interval` while results are fresh,
    STOPPING=1 at `finish`."""

    def __init__(self, address: str, watchdog_s: float | None) -> None:
        self.address = address
        self.interval = None if watchdog_s is None else watchdog_s / 4  # systemd's advice: under half
        self.fresh_s = None if watchdog_s is None else watchdog_s / 2
        self.sent = 0  # WATCHDOG=1 messages
        self.last_result = 0.0
        self._ready = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_environment(cls) -> Watchdog | None:
        address = os.environ.get("NOTIFY_SOCKET", "")
        if not address:
            return None
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        watchdog_s = int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 and mine else None
        return cls(address, watchdog_s)

    def __enter__(self) -> Watchdog:
        if self.interval is not None:
            self._thread = threading.Thread(target=self._keep_alive, name="edgecnn-watchdog", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish("end")

    def publish(self, update: Any) -> None:
        self.last_result = time.monotonic()
        if not self._ready:
            self._ready = True
            notify("READY=1\nSTATUS=cameras running", self.address)

    def finish(self, stopped_by: str) -> None:
        if not self._stop.is_set():
            self._stop.set()
            notify(f"STOPPING=1\nSTATUS=stopped: {stopped_by}", self.address)
            if self._thread is not None:
                self._thread.join(timeout=5.0)

    def _keep_alive(self) -> None:
        while not self._stop.wait(self.interval):
            fresh = self.last_result and time.monotonic() - self.last_result < self.fresh_s
            if fresh and notify("WATCHDOG=1", self.address):
                self.sent += 1


def watchdog_for(reconnect_timeout: float) -> int:
    """WatchdogSec for a box: keep-alives stop once no result came for half of it, so that half must
    outlast a lone camera's reconnecting (after which the run ends with an error and Restart= starts it)."""
    return max(WATCHDOG_SEC, int(2 * (reconnect_timeout + SOURCE_WAITS_S)) + 10)


def environment_file(config: Path) -> Path:
    """Where the unit reads the box's secrets from (`token_env` and the other `_env` keys' variables)."""
    return Path("/etc/edgecnn") / f"{Path(config).stem}.env"


def unit(config: Path, user: str = SERVICE_USER, watchdog_s: int = WATCHDOG_SEC) -> str:
    """The systemd unit running `edgecnn run CONFIG` from this venv (absolute paths, not resolved: a
    venv's python is a link to the system one, and the venv's site-packages are what it must see)."""
    config = Path(config).absolute()
    prefix = Path(sys.prefix).absolute()
    program = prefix / "bin" / "edgecnn"
    python = prefix / "bin" / "python"
    # --append: a restart adds to the jsonl and events files the last start wrote (force would empty them)
    start = f"{program} run {config} --append" if program.exists() else \
        f"{python} -m edgecnn run {config} --append"
    if any(char.isspace() or char in "\"'\\%$" for char in str(config) + str(prefix)):
        raise EdgecnnError(f"{config} or {prefix} has spaces, quotes, % or $ in its path; a systemd unit "
                           "needs plain paths: move the config or the venv")
    return "\n".join([
        "[Unit]",
        f"Description=edgecnn box ({config.name})",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        f"User={user}",
        f"Group={user}",
        f"WorkingDirectory={config.parent}",
        f"EnvironmentFile=-{environment_file(config)}",
        f"ExecStart={start}",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=always",
        "RestartSec=5",
        f"WatchdogSec={watchdog_s}",
        "TimeoutStartSec=180",
        "Environment=PYTHONUNBUFFERED=1",
        "StandardOutput=journal",
        "StandardError=journal",
        "SyslogIdentifier=edgecnn",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])
