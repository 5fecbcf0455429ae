"""The camera loop against its ceilings, each measured in the same run on the same engine.

    python benchmarks/camera.py BUNDLE [--clip VIDEO] [--live-clip VIDEO]
                                       [--models openvino:int8 onnxruntime:fp32] [--threads N] [--repeats 3]

The engine is loaded as `edgecnn camera` loads it (`camera_engine()`: 2 single-thread streams on 2
cores), or with `--threads N` as one N-thread stream. Per round:
- decode core-ms: process CPU time of reading + `fit_frame` alone (no model) per frame;
- inference core-ms: process CPU time per frame of back-to-back `engine.infer` (batch 1), whose
  median is the back-to-back latency;
- pipelined ceiling = cores x 1000 / (decode core-ms + inference core-ms) frames/s: what the loop
  could reach if decoding and inference filled every core with nothing else;
- camera FPS: headless, the clip read frame by frame (the model sets the pace), plain and with
  --save + --jsonl (recorded / dropped frames counted);
- live: the live clip re-encoded at 25 FPS, played with --realtime; camera-to-result median and p95
  against the back-to-back latency.
On a shared machine the loop gets fewer than all cores: "cores used" is its process CPU time per
second of the plain run, and "/ ceiling at cores used" scales the ceiling to them (the loop's own
efficiency, which the other jobs do not move). Also today's ratios: camera FPS / back-to-back FPS
(1000 / latency) and live latency / latency.
Every figure is the median over rounds; the load average is printed (others share the cores).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from edgecnn.runtime import load
from edgecnn.runtime.core.preprocess import fit_frame
from edgecnn.runtime.live.camera import CameraConfig, CameraSummary, camera_engine, run_camera
from edgecnn.runtime.live.video import VideoOptions, VideoSource
from edgecnn.runtime.measure.bench import latency_loop

ROOT = Path(__file__).resolve().parent.parent
LIVE_FPS = 25.0


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def camera_run(engine: Any, clip: Path, realtime: bool, outputs: bool, folder: Path) -> CameraSummary:
    config = CameraConfig(source=clip, headless=True, video=VideoOptions(realtime=realtime), force=True,
                          save=folder / "camera.mp4" if outputs else None,
                          jsonl=folder / "camera.jsonl" if outputs else None)
    return run_camera(engine, config, say=lambda message: None)


def decode_cost(clip: Path, engine: Any) -> tuple[float, float]:
    """(core-ms per frame, frames/s) of reading + fit_frame alone, on the capture thread as the loop does."""
    def prepare(image: np.ndarray) -> np.ndarray:
        return fit_frame(image, engine.preprocess, bgr=True)

    with VideoSource(clip, prepare=prepare) as source:
        start, cpu, frames = time.perf_counter(), cpu_seconds(), 0
        while source.get() is not None:
            frames += 1
        seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    return cpu * 1000.0 / frames, frames / seconds


def inference_cost(engine: Any, batch: np.ndarray, seconds: float) -> tuple[float, float]:
    """(median latency ms, core-ms per frame) of back-to-back `engine.infer`: `edgecnn bench`'s loop."""
    cpu = cpu_seconds()
    latencies = latency_loop(engine, batch, seconds)
    return float(np.median(latencies)), (cpu_seconds() - cpu) * 1000.0 / (len(latencies) * len(batch))


def one_round(engine: Any, batch: np.ndarray, args: argparse.Namespace, live_clip: Path,
              folder: Path) -> dict[str, float]:
    """Inference measured before and after the camera runs (mean of the two), so load drift hits both."""
    before = inference_cost(engine, batch, args.seconds)
    decode_ms, decode_fps = decode_cost(args.clip, engine)
    start, cpu = time.perf_counter(), cpu_seconds()
    plain = camera_run(engine, args.clip, False, False, folder)
    cores_used = (cpu_seconds() - cpu) / (time.perf_counter() - start)
    full = camera_run(engine, args.clip, False, True, folder)
    live = camera_run(engine, live_clip, True, False, folder)
    after = inference_cost(engine, batch, args.seconds)
    latency, infer_core = (before[0] + after[0]) / 2, (before[1] + after[1]) / 2
    ceiling = (os.cpu_count() or 1) * 1000.0 / (decode_ms + infer_core)
    recorded = full.sources[0]
    return {"bench_latency_ms": latency, "bench_fps": 1000.0 / latency, "decode_fit_fps": decode_fps,
            "decode_core_ms": decode_ms, "inference_core_ms": infer_core, "ceiling_fps": ceiling,
            "camera_fps": plain.mean_fps, "ceiling_ratio": plain.mean_fps / ceiling, "cores_used": cores_used,
            "ceiling_ratio_at_cores_used": plain.mean_fps / (ceiling * cores_used / (os.cpu_count() or 1)),
            "fps_ratio": plain.mean_fps * latency / 1000.0,
            "camera_fps_with_outputs": full.mean_fps, "outputs_ratio": full.mean_fps / plain.mean_fps,
            "recorded": recorded.recorded, "recording_dropped": recorded.recording_dropped,
            "live_latency_ms": live.latency_ms_median, "live_latency_p95_ms": live.latency_ms_p95,
            "live_ratio": live.latency_ms_median / latency, "live_p95_ratio": live.latency_ms_p95 / latency,
            "live_inference_ms": live.inference_ms_median, "live_dropped": live.frames_dropped,
            "live_read": live.frames_read, "load_average": os.getloadavg()[0]}


def paced_copy(clip: Path, fps: float, folder: Path) -> Path:
    """The clip re-encoded at `fps` (a webcam's pace), frame for frame."""
    out = folder / f"{clip.stem}-{fps:.0f}fps.mp4"
    capture = cv2.VideoCapture(str(clip))
    writer = None
    while True:
        ok, image = capture.read()
        if not ok:
            break
        if writer is None:
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                     (image.shape[1], image.shape[0]))
        writer.write(image)
    capture.release()
    writer.release()
    return out


def measure(bundle: Path, model: str, args: argparse.Namespace) -> dict[str, Any]:
    """Median over rounds of every figure, for one model (backend:precision) on one device."""
    settings = camera_engine() if args.threads is None else {"threads": args.threads}
    backend, precision = model.split(":")
    with load(bundle, device=args.device, precision=precision, backend=backend, **settings) as engine, \
            tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        live_clip = paced_copy(args.live_clip, LIVE_FPS, folder)
        capture = cv2.VideoCapture(str(args.clip))
        batch = fit_frame(capture.read()[1], engine.preprocess, bgr=True)[None]
        capture.release()
        camera_run(engine, args.clip, False, True, folder)  # warm-up: compiles, caches, page cache
        rounds = [one_round(engine, batch, args, live_clip, folder) for _ in range(args.repeats)]
        name = f"{engine.backend} {engine.meta.precision} {engine.device}, {engine.streams} stream(s)"
    row: dict[str, Any] = {key: round(float(np.median([r[key] for r in rounds])), 2) for key in rounds[0]}
    return {"model": name, "settings": settings, **row, "rounds": rounds}


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--clip", type=Path, default=ROOT / "samples/videos/box.mp4")
    parser.add_argument("--live-clip", type=Path, default=ROOT / "samples/videos/cup.mp4")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", nargs="+", default=["openvino:int8", "onnxruntime:fp32"],
                        help="backend:precision pairs to measure.")
    parser.add_argument("--threads", type=int, default=None, help="One stream of N threads instead of auto.")
    parser.add_argument("--seconds", type=float, default=2.0, help="Back-to-back time per measurement.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="Print everything as JSON.")
    args = parser.parse_args()
    rows = [measure(args.bundle, model, args) for model in args.models]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"clip {args.clip.name} frame by frame; live: {args.live_clip.name} at {LIVE_FPS:.0f} FPS with "
          f"--realtime; median of {args.repeats} rounds; {os.cpu_count()} cores")
    columns = [("model", "model"), ("b2b ms", "bench_latency_ms"), ("b2b FPS", "bench_fps"),
               ("decode core-ms", "decode_core_ms"), ("infer core-ms", "inference_core_ms"),
               ("ceiling FPS", "ceiling_fps"), ("camera FPS", "camera_fps"),
               ("/ ceiling (>= 0.95)", "ceiling_ratio"), ("cores used", "cores_used"),
               ("/ ceiling at cores used", "ceiling_ratio_at_cores_used"), ("/ b2b FPS", "fps_ratio"),
               ("with --save/--jsonl", "camera_fps_with_outputs"), ("/ without (>= 0.9)", "outputs_ratio"),
               ("recorded", "recorded"), ("rec. dropped", "recording_dropped"),
               ("live median ms", "live_latency_ms"), ("/ b2b (<= 1.2)", "live_ratio"),
               ("live p95 ms", "live_latency_p95_ms"), ("/ b2b (<= 2)", "live_p95_ratio")]
    print("| " + " | ".join(title for title, _ in columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[key]) for _, key in columns) + " |")
    loads = [round(x["load_average"], 1) for r in rows for x in r["rounds"]]
    print(f"load average (1 min) at the end of each round: {loads} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
