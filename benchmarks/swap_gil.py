"""How long a hot swap's loader keeps a Python thread (the camera loop) from running, old code against new.

    PYTHONPATH=. python benchmarks/swap_gil.py LIVE NEW [--against OLD_CHECKOUT] [--trials 10]

One trial is a fresh process of one source tree: LIVE loaded with the camera's settings (its backend
imported, as in a running camera), a ModelSwapper made and attached as `camera` does before its first
frame, then the swapper's load of NEW (load_engine with selftest=True, on a thread named as the
swapper's) while two tickers sleep 1 ms in a loop and note how late each wakes: one a Python thread in
that process (it needs the GIL, as the loop does), one in another process (it needs only a core: the
machine's own noise). Their worst lateness during the load, the load's wall and CPU time (the whole
process: OpenVINO compiles on its own threads) are printed per trial, then per code: median and largest.
Trials alternate between the codes. No camera runs: this is the GIL and CPU the loader takes, not frame
gaps (benchmarks/model_swap.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TRIAL = r'''
import json, resource, subprocess, sys, threading, time
root, live_path, new_path = sys.argv[1:4]
sys.path.insert(0, root)
TICK = """
import time
while True:
    b = time.perf_counter(); time.sleep(0.001); a = time.perf_counter()
    if a - b > 0.002: print(a, (a - b) * 1000, flush=True)
"""
late, outside = [], []

def ticker():
    while True:
        b = time.perf_counter(); time.sleep(0.001); a = time.perf_counter()
        if a - b > 0.002:
            late.append((a, (a - b) * 1000))

def reader(stream):
    for line in stream:
        t, d = line.split()
        outside.append((float(t), float(d)))

def cpu():
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime

from pathlib import Path
import edgecnn
assert edgecnn.__file__.startswith(root), edgecnn.__file__
import edgecnn.cli.common as common
common.warn = lambda *a, **k: None
from edgecnn.runtime.live.camera import camera_engine
from edgecnn.runtime.live.model_swap import ModelSwapper
settings = camera_engine()
live = common.load_engine(Path(live_path), "auto", "auto", "auto", **settings, quiet=True, selftest=True)
ModelSwapper(lambda: None, 1, print).attach(None)  # made before the run, attached as it starts
other = subprocess.Popen([sys.executable, "-c", TICK], stdout=subprocess.PIPE, text=True)
threading.Thread(target=reader, args=(other.stdout,), daemon=True).start()
threading.Thread(target=ticker, daemon=True).start()
time.sleep(0.5)
made = {}
used, start = cpu(), time.perf_counter()
def load_new():
    made["engine"] = common.load_engine(Path(new_path), "auto", "auto", "auto", **settings, quiet=True,
                                        selftest=True)

loader = threading.Thread(target=load_new, name="edgecnn-model-swap")
loader.start()
loader.join()
end, used = time.perf_counter(), cpu() - used
time.sleep(0.05)
inside = [d for t, d in late if start <= t <= end + 0.002]
there = [d for t, d in outside if start <= t <= end + 0.002]
print(json.dumps({"live": live.backend, "new": made["engine"].backend, "load_ms": 1000 * (end - start),
                  "cpu_ms": 1000 * used, "gil": max(inside, default=0.0), "other": max(there, default=0.0)}))
other.kill()
'''


def trial(root: Path, live: Path, new: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", TRIAL, str(root), str(live), str(new)], capture_output=True,
                          text=True, timeout=300, cwd=root)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(done.stderr[-2000:])
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("live", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--against", type=Path, help="another source tree (the old code)")
    parser.add_argument("--trials", type=int, default=10, help="per code")
    args = parser.parse_args()
    codes = [("old", args.against.resolve()), ("new", ROOT)] if args.against else [("this", ROOT)]
    found: dict[str, list[dict]] = {label: [] for label, _ in codes}
    for number in range(args.trials):
        for label, root in codes if number % 2 == 0 else codes[::-1]:
            row = trial(root, args.live.resolve(), args.new.resolve())
            found[label].append(row)
            print(f"{label}: {row['live']} -> {row['new']}: load + self-test {row['load_ms']:.0f} ms, CPU "
                  f"{row['cpu_ms']:.0f} ms; GIL-needing ticker worst {row['gil']:.1f} ms, other process's "
                  f"{row['other']:.1f} ms", flush=True)
    for label, rows in found.items():
        def median(key: str, rows: list[dict] = rows) -> float:
            return statistics.median(row[key] for row in rows)

        print(f"{label}: {len(rows)} trials, load + self-test median {median('load_ms'):.0f} ms, CPU median "
              f"{median('cpu_ms'):.0f} ms; GIL-needing ticker worst median {median('gil'):.1f} ms (largest "
              f"{max(row['gil'] for row in rows):.1f}), other process's median {median('other'):.1f} ms "
              f"(largest {max(row['other'] for row in rows):.1f})")


if __name__ == "__main__":
    main()
