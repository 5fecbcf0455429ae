"""The hot model swap's gap (issue 28 item 4: "frames are never stopped for longer than one inference").

    PYTHONPATH=. python benchmarks/model_swap.py BUNDLE_A BUNDLE_B [--seconds 8] [--swaps 2]
    PYTHONPATH=. python benchmarks/model_swap.py BUNDLE_A BUNDLE_B --against OLD_CHECKOUT --rounds 5

A real `edgecnn camera LIVE --source cup.mp4 --loop --realtime --headless --jsonl -` on a copy of BUNDLE_A;
every `--seconds` the other bundle is written onto LIVE the way `export --force` writes it (built beside,
swapped in by renames: runtime/core/outputs.py atomic_folder), and the folder watch swaps it in. From the
JSONL, per swap: the frame gaps (source timestamps of consecutive processed frames: with --realtime the
clip plays at its own pace, so a stalled loop shows as a longer gap) from the watch's "changed on disk"
line (the load starts) to 10 frames after the first frame of the new model, against the median gap away
from the swaps. stall = largest gap - median gap; ratio = stall / median inference_ms of the run (target
<= 1). The gaps come in frames of the clip (37.3 ms), so one lost frame already fails a fast model; the
latency (camera-to-result, ms) says how long the frames that were not lost waited.

The control: the same number of frames halfway to the next swap, measured the same way (the 2 cores are
shared: other work loses frames too). --against OLD_CHECKOUT runs the camera from that source tree as
well (e.g. `git archive HEAD~1 | tar -x -C /tmp/old`), one run each per round, alternating which goes
first, so both codes meet the same load; the load average is printed per run.
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
    parser.add_argument("--swaps", type=int, default=2, help="per run")
    parser.add_argument("--against", type=Path, help="another source tree (the old code) to run as well")
    parser.add_argument("--rounds", type=int, default=1, help="runs per code")
    args = parser.parse_args()
    codes = [("old", args.against.resolve()), ("new", ROOT)] if args.against else [("this", ROOT)]
    found: dict[str, list[dict]] = {label: [] for label, _ in codes}
    for round_ in range(args.rounds):
        for label, root in codes if round_ % 2 == 0 else codes[::-1]:
            before = os.getloadavg()[0]
            with tempfile.TemporaryDirectory() as folder:
                live = Path(folder) / "live"
                shutil.copytree(args.bundles[0], live)
                out, err, marks = run(root, live, args.bundles, args.seconds, args.swaps)
            records = [(t, json.loads(line)) for t, line in out.lines if line.startswith("{")]
            print(f"== {label} code ({root}), round {round_ + 1}: load average {before:.2f} before, "
                  f"{os.getloadavg()[0]:.2f} after")
            found[label] += report(records, marks, err)
    for label, swaps in found.items():
        summary(label, swaps)


def run(root: Path, live: Path, bundles: list[Path], seconds: float, swaps: int
        ) -> tuple[Stream, Stream, list[float]]:
    env = {**os.environ, "PYTHONPATH": str(root)}  # cwd too: `-m` puts it first on sys.path
    process = subprocess.Popen([sys.executable, "-m", "edgecnn", "camera", str(live), "--source", str(CLIP),
                                "--loop", "--realtime", "--headless", "--jsonl", "-"], env=env, text=True,
                               cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = Stream(process.stdout), Stream(process.stderr)
    try:
        while not any(line.startswith("{") for _, line in out.lines):
            if process.poll() is not None:
                raise SystemExit("".join(line for _, line in err.lines))
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


def report(records: list[tuple[float, dict]], marks: list[float], err: Stream) -> list[dict]:
    """Print the run's swaps and their controls; return one dict per swap."""
    for _, line in err.lines:
        if "changed on disk" in line or "is live" in line or "refused" in line:
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
    latency = statistics.median(r["latency_ms"] for i, r in enumerate(items) if i not in inside)
    print(f"  {len(items)} frames, median inference {inference:.1f} ms, median gap away from swaps "
          f"{typical:.1f} ms, median latency away from them {latency:.1f} ms")
    found = []
    for number, (window, first_new) in enumerate(zip(windows, firsts, strict=True), 1):
        ends = [w.start for w in windows[number:]] + [len(items) - AFTER]
        middle = (window.stop + ends[0]) // 2
        control = range(max(window.stop, middle - len(window) // 2),
                        min(ends[0], middle - len(window) // 2 + len(window)))
        swap, away = _measure(window, gaps, items, typical, latency), _measure(control, gaps, items, typical,
                                                                               latency)
        where = max(window, key=lambda i: gaps[i]) - first_new  # < 0: while loading; >= 0: on the new one
        found.append({"ratio": swap[1] / inference, "stall": swap[1], "latency": swap[2],
                      "control_ratio": away[1] / inference, "control_latency": away[2]})
        print(f"  swap {number}: largest gap {swap[0]:.1f} ms over {len(window)} frames, ends {where:+d} "
              f"frames from the new model's first; stall {swap[1]:.1f} ms = {swap[1] / inference:.2f} x "
              f"median inference ({'met' if swap[1] <= inference else 'NOT met'}); latency +{swap[2]:.0f} ms"
              f" | control ({len(control)} frames): stall {away[1]:.1f} ms = {away[1] / inference:.2f} x "
              f"({'met' if away[1] <= inference else 'NOT met'}), latency +{away[2]:.0f} ms")
    return found


def _measure(frames: range, gaps: list[float], items: list[dict], typical: float, latency: float
             ) -> tuple[float, float, float]:
    """(largest gap, stall = largest gap - median gap, worst latency - median latency) over `frames`."""
    if not frames:
        return 0.0, 0.0, 0.0
    worst = max(gaps[i] for i in frames)
    return worst, max(0.0, worst - typical), max(0.0, max(items[i]["latency_ms"] for i in frames) - latency)


def summary(label: str, swaps: list[dict]) -> None:
    if not swaps:
        return
    failed = sum(s["ratio"] > 1 for s in swaps)
    control = sum(s["control_ratio"] > 1 for s in swaps)
    print(f"{label}: {len(swaps)} swaps, NOT met in {failed} (stall/inference median "
          f"{statistics.median(s['ratio'] for s in swaps):.2f}, max {max(s['ratio'] for s in swaps):.2f}; "
          f"latency excess median {statistics.median(s['latency'] for s in swaps):.0f} ms, max "
          f"{max(s['latency'] for s in swaps):.0f} ms); controls NOT met in {control} (max "
          f"{max(s['control_ratio'] for s in swaps):.2f}; latency excess median "
          f"{statistics.median(s['control_latency'] for s in swaps):.0f} ms, max "
          f"{max(s['control_latency'] for s in swaps):.0f} ms)")


if __name__ == "__main__":
    main()
