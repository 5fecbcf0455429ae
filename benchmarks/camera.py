"""The camera's two targets, each against a baseline measured in the same run on the same model/device.

    python benchmarks/camera.py BUNDLE [--clip VIDEO] [--live-clip VIDEO] [--device cpu] [--repeats 3]

1. camera loop FPS (headless, a file read frame by frame, so the model sets the pace) / pure-inference
   FPS of the same engine (1000 / median latency of back-to-back `infer`, batch 1: `edgecnn bench`'s
   latency loop, one request at a time as the camera runs it). Target >= 0.9; also with --save/--jsonl.
2. camera-to-result latency median on a live-paced source (--realtime) / that pure-inference median.
   Target <= 1.5. Also / the inference median inside the same run: on a loaded machine a paced loop
   gets the CPU in bursts and infers faster than a back-to-back loop, so both are shown.
Pure inference is measured before and after the camera runs of each round (mean of the two), and
every figure is the median over rounds, so a machine whose load drifts biases neither side.
"decode+fit FPS" is reading + `fit_frame` alone, no model: the ceiling of the loop on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from edgecnn.runtime import load
from edgecnn.runtime.bench import latency_loop
from edgecnn.runtime.camera import CameraConfig, CameraSummary, run_camera
from edgecnn.runtime.preprocess import fit_frame
from edgecnn.runtime.video import VideoOptions, VideoSource

ROOT = Path(__file__).resolve().parent.parent
VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


def camera_run(engine: Any, clip: Path, realtime: bool, outputs: bool, folder: Path) -> CameraSummary:
    config = CameraConfig(source=clip, headless=True, video=VideoOptions(realtime=realtime),
                          save=folder / "camera.mp4" if outputs else None,
                          jsonl=folder / "camera.jsonl" if outputs else None)
    return run_camera(engine, config, say=lambda message: None)


def reading_fps(clip: Path, engine: Any) -> float:
    """Frames/s of decoding + fit_frame alone (no model): the ceiling the loop cannot beat."""
    def prepare(image: np.ndarray) -> np.ndarray:
        return fit_frame(image, engine.preprocess, bgr=True)

    with VideoSource(clip, prepare=prepare) as source:
        start, frames = time.perf_counter(), 0
        while source.get() is not None:
            frames += 1
    return frames / (time.perf_counter() - start)


def pure_latency_ms(engine: Any, batch: np.ndarray, seconds: float) -> float:
    """Median latency of back-to-back `engine.infer` on one fitted frame: `edgecnn bench`'s loop."""
    return float(np.median(latency_loop(engine, batch, seconds)))


def one_round(engine: Any, batch: np.ndarray, args: argparse.Namespace, folder: Path) -> dict[str, float]:
    """Pure inference measured before and after the camera runs, so load drift hits both sides."""
    before = pure_latency_ms(engine, batch, args.seconds)
    plain = camera_run(engine, args.clip, False, False, folder)
    full = camera_run(engine, args.clip, False, True, folder)
    live = camera_run(engine, args.live_clip, True, False, folder)
    pure = (before + pure_latency_ms(engine, batch, args.seconds)) / 2
    reading = reading_fps(args.clip, engine)
    return {"bench_latency_ms": pure, "bench_fps": 1000.0 / pure, "reading_fps": reading,
            "camera_fps": plain.mean_fps, "camera_fps_with_outputs": full.mean_fps,
            "fps_ratio": plain.mean_fps * pure / 1000.0,
            "fps_ratio_with_outputs": full.mean_fps * pure / 1000.0,
            "realtime_latency_ms": live.latency_ms_median, "realtime_inference_ms": live.inference_ms_median,
            "latency_ratio": live.latency_ms_median / pure,
            "latency_ratio_in_loop": live.latency_ms_median / live.inference_ms_median,
            "realtime_dropped": live.frames_dropped,
            "realtime_read": live.frames_read, "load_average": os.getloadavg()[0]}


def measure(bundle: Path, precision: str, args: argparse.Namespace) -> dict[str, Any]:
    """Median over rounds of every figure, for one model on one device."""
    with load(bundle, device=args.device, precision=precision, threads=args.threads) as engine, \
            tempfile.TemporaryDirectory() as folder:
        capture = cv2.VideoCapture(str(args.clip))
        batch = fit_frame(capture.read()[1], engine.preprocess, bgr=True)[None]
        capture.release()
        camera_run(engine, args.live_clip, False, False, Path(folder))  # warm-up: caches, page cache
        rounds = [one_round(engine, batch, args, Path(folder)) for _ in range(args.repeats)]
        name = f"{engine.backend} {engine.meta.precision} {engine.device}"
    row: dict[str, Any] = {key: round(float(np.median([r[key] for r in rounds])), 2) for key in rounds[0]}
    return {"model": name, **row, "rounds": rounds}


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("bundle", type=Path)
    default_clip = VTEST if VTEST.exists() else ROOT / "samples/videos/box.mp4"
    parser.add_argument("--clip", type=Path, default=default_clip)
    parser.add_argument("--live-clip", type=Path, default=ROOT / "samples/videos/cup.mp4")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", nargs="+", default=["int8", "fp32"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=3.0, help="Pure-inference time per measurement.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="Print everything as JSON.")
    args = parser.parse_args()
    rows = [measure(args.bundle, precision, args) for precision in args.precision]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"clip {args.clip.name} (frame by frame), live-paced clip {args.live_clip.name} (--realtime), "
          f"median of {args.repeats} rounds")
    print("| model | bench ms | bench FPS | decode+fit FPS | camera FPS | ratio (target >= 0.9) "
          "| with --save/--jsonl | realtime cam->result ms | ratio (target <= 1.5) "
          "| realtime infer ms | ratio to it | dropped |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['model']} | {row['bench_latency_ms']} | {row['bench_fps']} | {row['reading_fps']} "
              f"| {row['camera_fps']} | {row['fps_ratio']} "
              f"| {row['camera_fps_with_outputs']} ({row['fps_ratio_with_outputs']}) "
              f"| {row['realtime_latency_ms']} | {row['latency_ratio']} | {row['realtime_inference_ms']} "
              f"| {row['latency_ratio_in_loop']} "
              f"| {row['realtime_dropped']:.0f}/{row['realtime_read']:.0f} |")
    print(f"load average while measuring: {rows[0]['load_average']:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
