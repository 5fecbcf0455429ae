"""What the triton:// backend costs over the local engine, on the CPU, measured in one run.

    python benchmarks/triton_overhead.py BUNDLE [--rounds 7] [--calls 30] [--batch 1]

`edgecnn serve BUNDLE` starts in a subprocess on free 127.0.0.1 ports (device cpu, as the local engine);
then `load(BUNDLE, device="cpu")` and `load("triton://127.0.0.1:PORT/bench")` take turns: each round
times --calls back-to-back `infer` calls of one engine, then of the other (which goes first alternates),
on the same fitted sample photos. Reported: each one's median latency over all calls, and the median of
the per-round ratios triton / local (1.0 = no overhead). Server and client share this machine's cores.
The benchmark runs in a session of its own, as the server does: with Linux's autogroup scheduling each
session gets an equal CPU share, so on a loaded machine a server alone in its session would otherwise
out-compute the in-process engine (a first run here read 0.68-0.89, triton "faster"). Needs the [serve]
extra (nvidia-pytriton, numpy<2).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from edgecnn.runtime import load
from edgecnn.runtime.core.images import iter_image_files, read_image
from edgecnn.runtime.core.preprocess import fit_frame

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import HOST, NAME, free_ports, start_server, stop_server

ROOT = Path(__file__).resolve().parent.parent


def timed(engine: object, batch: np.ndarray, calls: int) -> list[float]:
    """Milliseconds of `calls` back-to-back synchronous infer calls."""
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        engine.infer(batch)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    try:  # its own session (autogroup), like the server's: see the docstring
        os.setsid()
    except OSError:  # already a session or process-group leader (e.g. started with setsid)
        pass
    server_args = argparse.Namespace(bundle=args.bundle, max_batch=max(8, args.batch), instances=1)
    ports = free_ports(3)
    with tempfile.TemporaryDirectory() as folder:
        process = start_server(server_args, ports, Path(folder) / "server.log")
        try:
            report = measure(args, f"triton://{HOST}:{ports[0]}/{NAME}")
        finally:
            stop_server(process)
    print(json.dumps(report))


def measure(args: argparse.Namespace, location: str) -> dict[str, object]:
    with load(args.bundle, device="cpu") as local, load(location) as served:
        files = list(iter_image_files(ROOT / "samples" / "photos"))[: args.batch]
        batch = np.stack([fit_frame(read_image(path), local.preprocess) for path in files])
        engines = {"local": local, "triton": served}
        for engine in engines.values():
            timed(engine, batch, 5)  # warm-up
        times: dict[str, list[float]] = {"local": [], "triton": []}
        ratios = []
        for round_ in range(args.rounds):
            order = ["local", "triton"] if round_ % 2 == 0 else ["triton", "local"]
            medians = {}
            for name in order:
                found = timed(engines[name], batch, args.calls)
                times[name] += found
                medians[name] = statistics.median(found)
            ratios.append(medians["triton"] / medians["local"])
        return {"local": local.describe(), "triton": served.describe(), "batch": args.batch,
                "rounds": args.rounds, "calls_per_round": args.calls,
                "local_median_ms": round(statistics.median(times["local"]), 3),
                "triton_median_ms": round(statistics.median(times["triton"]), 3),
                "ratio_triton_over_local": round(statistics.median(ratios), 3),
                "round_ratios": [round(r, 3) for r in ratios]}


if __name__ == "__main__":
    main()
