"""Many sources, one engine: how `edgecnn camera --source A --source B ...` scales with the source count.

    python benchmarks/multistream.py BUNDLE [--counts 1 2 4 8] [--precision int8] [--plot multistream.png]

For each N (a fresh engine each, loaded as `edgecnn camera` loads it), measured in the same run:
- aggregate FPS: N file sources (the sample clips, frame by frame), headless; and per-source FPS;
- pure inference at batch N: images/s with the engine's streams all busy (no decoding), and the
  inference core-ms per frame of back-to-back batches of N;
- decode ceiling: cores x 1000 / decode core-ms (reading + `fit_frame` alone, no model);
- pipelined ceiling: cores x 1000 / (decode core-ms + inference core-ms per frame at batch N);
- live: N copies of a 25 FPS clip with --realtime: camera-to-result median and p95.
Targets (2 cores): aggregate >= 0.9 x pipelined ceiling for N = 2, 4, 8; p95 at N = 4 live <= 3 x N = 1.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from camera import cpu_seconds, decode_cost, paced_copy  # benchmarks/camera.py, beside this script
from edgecnn.runtime import load
from edgecnn.runtime.core.preprocess import fit_frame
from edgecnn.runtime.live.camera import CameraConfig, CameraSummary, camera_engine, run_camera
from edgecnn.runtime.live.video import VideoOptions

ROOT = Path(__file__).resolve().parent.parent
CLIPS = (ROOT / "samples/videos/cup.mp4", ROOT / "samples/videos/box.mp4")


def run_sources(engine: Any, sources: list[Path], realtime: bool) -> CameraSummary:
    config = CameraConfig(sources=tuple(sources), headless=True, video=VideoOptions(realtime=realtime))
    return run_camera(engine, config, say=lambda message: None)


def inference_at_batch(engine: Any, batch: np.ndarray, seconds: float) -> tuple[float, float]:
    """(images/s with every stream busy, core-ms per image of back-to-back batches)."""
    start, cpu, images = time.perf_counter(), cpu_seconds(), 0
    while time.perf_counter() - start < seconds / 2:
        engine.infer(batch)
        images += len(batch)
    core_ms = (cpu_seconds() - cpu) * 1000.0 / images
    in_flight: list[Future[np.ndarray]] = []
    start, images = time.perf_counter(), 0
    while time.perf_counter() - start < seconds / 2:
        while len(in_flight) < engine.streams:
            in_flight.append(engine.submit(batch))
        in_flight.pop(0).result()
        images += len(batch)
    for future in in_flight:
        future.result()
    return images / (time.perf_counter() - start), core_ms


def measure(bundle: Path, count: int, args: argparse.Namespace, live_clip: Path) -> dict[str, Any]:
    with load(bundle, device=args.device, precision=args.precision, backend=args.backend,
              **camera_engine()) as engine:
        frame = cv2.VideoCapture(str(CLIPS[0])).read()[1]
        batch = np.stack([fit_frame(frame, engine.preprocess, bgr=True)] * count)
        files = [CLIPS[i % len(CLIPS)] for i in range(count)]
        run_sources(engine, files, realtime=False)  # warm-up: compiles for the batch sizes, page cache
        decode_ms, _ = decode_cost(CLIPS[1], engine)
        pure_fps, infer_core_ms = inference_at_batch(engine, batch, args.seconds)
        plain = run_sources(engine, files, realtime=False)
        live = run_sources(engine, [live_clip] * count, realtime=True)
        cores = os.cpu_count() or 1
        ceiling = cores * 1000.0 / (decode_ms + infer_core_ms)
        return {
            "sources": count, "engine": f"{engine.backend} {engine.meta.precision}, {engine.streams} streams",
            "aggregate_fps": plain.mean_fps, "per_source_fps": [round(s.mean_fps, 1) for s in plain.sources],
            "batch_mean": plain.batch_mean, "pure_fps_at_batch": pure_fps, "inference_core_ms": infer_core_ms,
            "decode_core_ms": decode_ms, "decode_ceiling_fps": cores * 1000.0 / decode_ms,
            "pipelined_ceiling_fps": ceiling, "ceiling_ratio": plain.mean_fps / ceiling,
            "pure_ratio": plain.mean_fps / pure_fps,
            "live_latency_ms": live.latency_ms_median, "live_latency_p95_ms": live.latency_ms_p95,
            "live_batch_mean": live.batch_mean, "live_dropped": live.frames_dropped,
            "live_read": live.frames_read, "load_average": os.getloadavg()[0],
        }


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = [r["sources"] for r in rows]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(counts, [r["aggregate_fps"] for r in rows], "o-", label="camera, aggregate")
    left.plot(counts, [r["pipelined_ceiling_fps"] for r in rows], "s--", label="pipelined ceiling")
    left.plot(counts, [r["pure_fps_at_batch"] for r in rows], "^:", label="pure inference at batch N")
    left.plot(counts, [r["decode_ceiling_fps"] for r in rows], "x:", label="decode ceiling")
    left.set(xlabel="sources (N)", ylabel="frames / s", title="throughput (files, frame by frame)",
             xticks=counts, ylim=(0, None))
    left.legend(fontsize=8)
    right.plot(counts, [r["live_latency_ms"] for r in rows], "o-", label="median")
    right.plot(counts, [r["live_latency_p95_ms"] for r in rows], "s--", label="p95")
    right.set(xlabel="sources (N)", ylabel="camera-to-result ms", xticks=counts, ylim=(0, None),
              title="latency, every source live at 25 FPS")
    right.legend(fontsize=8)
    figure.suptitle(f"{rows[0]['engine']}, {os.cpu_count()} cores, load average "
                    f"{max(r['load_average'] for r in rows):.1f} (shared machine)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--seconds", type=float, default=3.0, help="Pure-inference time per N.")
    parser.add_argument("--plot", type=Path, default=ROOT / "benchmarks" / "multistream.png")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        live_clip = paced_copy(CLIPS[0], 25.0, Path(tmp))
        rows = [measure(args.bundle, count, args, live_clip) for count in args.counts]
    plot(rows, args.plot)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    single = rows[0]["live_latency_p95_ms"] if rows[0]["sources"] == 1 else float("nan")
    print(f"{rows[0]['engine']}; {os.cpu_count()} cores; plot: {args.plot}")
    print("| N | aggregate FPS | per source | mean batch | pure infer FPS at batch N | / pure "
          "| decode ceiling | pipelined ceiling | / ceiling (>= 0.9) | live median ms | live p95 ms "
          "| p95 / N=1 | load |")
    print("|" + "---|" * 13)
    for r in rows:
        print(f"| {r['sources']} | {r['aggregate_fps']:.1f} | {r['per_source_fps']} | {r['batch_mean']:.2f} "
              f"| {r['pure_fps_at_batch']:.1f} | {r['pure_ratio']:.2f} | {r['decode_ceiling_fps']:.0f} "
              f"| {r['pipelined_ceiling_fps']:.1f} | {r['ceiling_ratio']:.2f} | {r['live_latency_ms']:.1f} "
              f"| {r['live_latency_p95_ms']:.1f} | {r['live_latency_p95_ms'] / single:.2f} "
              f"| {r['load_average']:.1f} |")


if __name__ == "__main__":
    main()
