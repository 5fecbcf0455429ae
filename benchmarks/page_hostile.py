"""RSS of a camera process serving its page while 2000 hostile requests arrive (issue 31, item 1).

    python benchmarks/page_hostile.py BUNDLE [--requests 2000]

Starts `edgecnn camera BUNDLE --source <the sample photos as a 0.2 fps slideshow> --serve 0 --record-to TMP`,
reads its RSS once the page answers, then sends the requests in four kinds, a quarter each: slow-header
connections (100 held at a time, one byte a second), POSTs declaring a 300 MB body, chunked POSTs past
the 4 KB limit and record requests with distinct labels. Prints the RSS before, after and at peak
(VmHWM), the answers by status, and whether a viewer still got /api/state; then stops the camera.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "samples" / "photos" / "monuments"


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


def post(port: int, body: object, headers: dict[str, str]) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", "/api/record", body=body,
                           headers={"Content-Type": "application/json", **headers})
        return connection.getresponse().status
    except OSError:
        return 0  # closed by the server before answering
    finally:
        connection.close()


def declared_huge(port: int) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.putrequest("POST", "/api/record")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(300 * 2**20))
    connection.endheaders()
    try:
        return connection.getresponse().status
    finally:
        connection.close()


def slow_headers(port: int, count: int) -> int:
    """`count` connections, 100 at a time, each trickling its head until the server closes it."""
    closed = 0
    for start in range(0, count, 100):
        socks = [socket.create_connection(("127.0.0.1", port), timeout=10)
                 for _ in range(min(100, count - start))]
        for sock in socks:
            sock.sendall(b"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        deadline = time.monotonic() + 8.0
        while socks and time.monotonic() < deadline:
            time.sleep(1.0)
            for sock in list(socks):
                try:
                    sock.sendall(b"x")
                except OSError:
                    closed += 1
                    socks.remove(sock)
                    sock.close()
        for sock in socks:
            sock.close()
    return closed


def hostile(port: int, quarter: int) -> tuple[int, Counter[int]]:
    """The four kinds of request; (slow connections the server closed, answers by status)."""
    statuses: Counter[int] = Counter()
    closed = slow_headers(port, quarter)
    statuses.update(declared_huge(port) for _ in range(quarter))
    chunked = [b'{"label": "' + b"a" * 4096, b'"}']
    statuses.update(post(port, iter(chunked), {}) for _ in range(quarter))
    labels = (json.dumps({"label": f"class{i}"}).encode() for i in range(quarter))
    statuses.update(post(port, label, {}) for label in labels)
    return closed, statuses


def start_camera(bundle: Path, data: Path) -> tuple[subprocess.Popen, int]:
    command = [sys.executable, "-m", "edgecnn", "camera", str(bundle), "--source", str(PHOTOS), "--fps",
               "0.2", "--realtime", "--headless", "--serve", "0", "--device", "cpu", "--record-to", str(data)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    line = ""
    while not line.startswith("camera page:"):
        line = process.stderr.readline()
        if not line:
            raise SystemExit(f"the camera did not start: {process.communicate()[1]}")
    return process, int(line.rsplit(":", 1)[1].strip().strip("/"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    quarter = args.requests // 4
    with tempfile.TemporaryDirectory() as tmp:
        process, port = start_camera(args.bundle, Path(tmp) / "data")
        try:
            time.sleep(3.0)  # the model loads and the first results arrive
            before, started = rss_kib(process.pid), time.perf_counter()
            closed, statuses = hostile(port, quarter)
            seconds = time.perf_counter() - started
            after, peak = rss_kib(process.pid), rss_kib(process.pid, "VmHWM")
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", "/api/state")
            response = connection.getresponse()
            state = response.read()
            print(f"{4 * quarter} hostile requests in {seconds:.1f} s; slow-header connections the server "
                  f"closed: {closed}/{quarter}; answers: {dict(sorted(statuses.items()))}")
            print(f"RSS before {before / 1024:.1f} MiB, after {after / 1024:.1f} MiB "
                  f"(+{(after - before) / 1024:.1f} MiB), peak {peak / 1024:.1f} MiB")
            print(f"a viewer's /api/state: {response.status}, {len(state)} bytes, "
                  f"{len(json.loads(state)['recording']['counts'])} labels kept; camera still running: "
                  f"{process.poll() is None}")
        finally:
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
