"""Camera FPS while 400 slow-header connections flood its page under `ulimit -n 256` (issue 31, item 1).

    python benchmarks/page_flood_fps.py BUNDLE [--clip VIDEO] [--rounds 3] [--frames 900] [--flood 400]

This process limits itself to 256 file descriptors (the tester's `ulimit -n 256`), serves the page
(`LiveServer`, as `camera --serve` does) and runs the camera loop on the clip, looping, as fast as the
model goes. Rounds alternate a quiet page and a flooded one; in the flooded rounds a separate process
(it has its own descriptors) holds FLOOD connections that send a request head one byte a second and opens
a new one for each the server closes, while a viewer in this process asks /api/state once a second and
reads the MJPEG stream. The flooding process runs on the same two cores: its own CPU time is printed,
so what the flood costs the server can be told from what the attacker's process takes. Prints each
round's loop FPS, the viewer's answers, the peak RSS (VmHWM) and the median ratio flooded / quiet
(target >= 0.9).
"""

from __future__ import annotations

import argparse
import http.client
import json
import resource
import socket
import statistics
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FD_LIMIT = 256


def flood(port: int, count: int) -> None:
    """The flooding process: `count` slow heads held open, re-opened when closed, until stdin closes."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    opened = closed = 0

    def open_one() -> socket.socket | None:
        nonlocal opened
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=2)
            sock.sendall(b"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        except OSError:
            return None
        sock.setblocking(False)
        opened += 1
        return sock

    socks = [open_one() for _ in range(count)]
    print("flooding", flush=True)
    while not stop.wait(1.0):
        for i, sock in enumerate(socks):
            try:
                if sock is None:
                    raise ConnectionResetError
                sock.send(b"x")
                if sock.recv(1, socket.MSG_PEEK) == b"":
                    raise ConnectionResetError
            except BlockingIOError:
                continue
            except OSError:
                closed += 1
                if sock is not None:
                    sock.close()
                socks[i] = open_one()
    used = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"opened": opened, "closed_by_server": closed,
                      "flood_cpu_s": round(used.ru_utime + used.ru_stime, 1)}), flush=True)


def viewer(port: int, stop: threading.Event, tally: dict[str, int]) -> None:
    """A real viewer: /api/state once a second and a few MJPEG pictures each time."""
    while not stop.wait(1.0):
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/api/state")
            ok = connection.getresponse().status == 200
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/stream.mjpg")
            response, pictures = connection.getresponse(), 0
            while pictures < 3 and (line := response.readline()):
                if line.lower().startswith(b"content-length:"):
                    response.readline()
                    response.read(int(line.split(b":")[1]))
                    pictures += 1
            connection.close()
            tally["answered" if ok and pictures == 3 else "failed"] += 1
        except OSError:
            tally["failed"] += 1


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one_round(engine: Any, clip: Path, frames: int, flood_count: int) -> dict[str, Any]:
    from edgecnn.runtime.live.camera import CameraConfig, run_camera
    from edgecnn.runtime.live.sources import VideoOptions
    from edgecnn.runtime.live.web import LiveServer, ServeAddress

    server = LiveServer(ServeAddress("127.0.0.1", 0), source=str(clip), say=lambda m: None)
    stop, tally, flooder = threading.Event(), {"answered": 0, "failed": 0}, None
    with server:
        if flood_count:
            flooder = subprocess.Popen([sys.executable, __file__, "--flood-port", str(server.port),
                                        "--flood", str(flood_count)], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True)
            assert flooder.stdout.readline().strip() == "flooding"
        watcher = threading.Thread(target=viewer, args=(server.port, stop, tally), daemon=True)
        watcher.start()
        config = CameraConfig(source=clip, headless=True, max_frames=frames,
                              video=VideoOptions(realtime=False, loop=True))
        summary = run_camera(engine, config, say=lambda m: None, sinks=[server])
        stop.set()
        watcher.join(timeout=10)
        flooded: dict[str, int] = {}
        if flooder is not None:
            flooded = json.loads(flooder.communicate("", timeout=30)[0].strip().splitlines()[-1])
    return {"fps": summary.mean_fps, "viewer": tally, "flood": flooded}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, nargs="?")
    parser.add_argument("--clip", type=Path, default=ROOT / "samples" / "videos" / "cup.mp4")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=900)
    parser.add_argument("--flood", type=int, default=400)
    parser.add_argument("--flood-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flood_port:
        return flood(args.flood_port, args.flood)
    from edgecnn.runtime import load

    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    engine = load(args.bundle, device="cpu")
    print(f"{engine.model_path.name} on {engine.backend}; fd limit {FD_LIMIT}; flood {args.flood}")
    quiet, flooded = [], []
    for index in range(args.rounds * 2):
        count = args.flood if index % 2 else 0
        result = one_round(engine, args.clip, args.frames, count)
        (flooded if count else quiet).append(result["fps"])
        print(f"round {index + 1}: flood {count:4d}  loop {result['fps']:6.1f} FPS  viewer {result['viewer']}"
              f"  {result['flood']}  peak RSS {peak_rss_mib():.0f} MiB", flush=True)
    ratio = statistics.median(flooded) / statistics.median(quiet)
    print(f"median loop FPS quiet {statistics.median(quiet):.1f}, flooded {statistics.median(flooded):.1f}:"
          f" ratio {ratio:.3f} (target >= 0.9)")


if __name__ == "__main__":
    main()
