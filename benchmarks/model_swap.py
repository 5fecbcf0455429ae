"""The hot model swap's gap (issue 28 item 4: "frames are never stopped for longer than one inference").

    PYTHONPATH=. python benchmarks/model_swap.py BUNDLE_A BUNDLE_B [--seconds 8] [--swaps 2]

A real `edgecnn camera LIVE --source cup.mp4 --loop --realtime --headless --jsonl -` on a copy of BUNDLE_A;
every `--seconds` the other bundle is written onto LIVE the way `export --force` writes it (built beside,
swapped in by renames: runtime/core/outputs.py atomic_folder), and the folder watch swaps it in. From the
JSONL, per swap: the frame gaps (source timestamps of consecutive processed frames: with --realtime the
clip plays at its own pace, so a stalled loop shows as a longer gap) from the watch's "changed on disk"
line (the load starts) to 10 frames after the first frame of the new model, against the median gap away
from the swaps. stall = largest gap - median gap; ratio = stall / median inference_ms of the run (target
<= 1). The load average is printed: the 2 cores are shared.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from edgecnn.runtime.core.outputs import atomic_folder

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "samples" / "videos" / "cup.mp4"
AFTER = 10  # frames of the new model counted in the swap's window


class Stream:
    """Lines of a stream with the time each arrived, read on a thread."""

    def __init__(self, stream: object) -> None:
        self.lines: list[tuple[float, str]] = []
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.append((time.monotonic(), line))


def write_over(live: Path, bundle: Path) -> None:
    with atomic_folder(live) as work:
        shutil.copytree(bundle, work, dirs_exist_ok=True)


def gaps_ms(records: list[dict]) -> list[float]:
    """Gap before each record (ms, source time); 0 for the first and across the clip's loop to its start."""
    gaps = [0.0]
    for before, after in zip(records, records[1:], strict=False):
        gap = (after["timestamp"] - before["timestamp"]) * 1000
        gaps.append(gap if gap > 0 else 0.0)
    return gaps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("bundles", type=Path, nargs=2)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--swaps", type=int, default=2)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as folder:
        live = Path(folder) / "live"
        shutil.copytree(args.bundles[0], live)
        out, err, marks = run(live, args.bundles, args.seconds, args.swaps)
    records = [(t, json.loads(line)) for t, line in out.lines if line.startswith("{")]
    report(records, marks, err)
    print(f"load average after: {os.getloadavg()}")


def run(live: Path, bundles: list[Path], seconds: float, swaps: int) -> tuple[Stream, Stream, list[float]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "edgecnn", "camera", str(live), "--source", str(CLIP),
                                "--loop", "--realtime", "--headless", "--jsonl", "-"], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = Stream(process.stdout), Stream(process.stderr)
    try:
        while not any(line.startswith("{") for _, line in out.lines):
            time.sleep(0.1)
        for swap in range(swaps):
            time.sleep(seconds)
            write_over(live, bundles[(swap + 1) % 2])
        time.sleep(seconds)
        process.send_signal(signal.SIGINT)
        process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()
    out.thread.join(10)
    err.thread.join(10)
    marks = [t for t, line in err.lines if "changed on disk" in line]
    return out, err, marks


def report(records: list[tuple[float, dict]], marks: list[float], err: Stream) -> None:
    for _, line in err.lines:
        if "changed on disk" in line or "is live" in line or "refused" in line or "(" in line[:60]:
            print("  camera:", line.rstrip()[:160])
    items = [r for _, r in records]
    gaps = gaps_ms(items)
    inference = statistics.median(r["inference_ms"] for r in items)
    windows, firsts = [], []
    for mark in marks:
        start = next(i for i, (t, _) in enumerate(records) if t >= mark)
        old = items[start]["model"]
        first_new = next(i for i in range(start + 1, len(items)) if items[i]["model"] != old)
        windows.append(range(max(1, start), min(len(items), first_new + AFTER)))
        firsts.append(first_new)
    inside = {i for window in windows for i in window}
    typical = statistics.median(g for i, g in enumerate(gaps) if i not in inside and g > 0)
    away = [g for i, g in enumerate(gaps) if i not in inside and i > AFTER]  # the start's own gaps left out
    print(f"{len(items)} frames, median inference {inference:.1f} ms, median gap away from swaps "
          f"{typical:.1f} ms, largest gap away from them {max(away):.1f} ms (the control: no swap)")
    for number, (window, first_new) in enumerate(zip(windows, firsts, strict=True), 1):
        worst = max(gaps[i] for i in window)
        where = max(window, key=lambda i: gaps[i]) - first_new  # < 0: while loading; >= 0: on the new one
        stall = max(0.0, worst - typical)
        print(f"swap {number}: largest gap {worst:.1f} ms over {len(window)} frames; stall {stall:.1f} ms "
              f"= {stall / inference:.2f} x median inference (target <= 1: "
              f"{'met' if stall <= inference else 'NOT met'}); gap / median gap {worst / typical:.2f}; "
              f"it ends {where:+d} frames from the new model's first")


if __name__ == "__main__":
    main()
