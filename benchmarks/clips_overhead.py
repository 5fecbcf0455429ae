"""Camera FPS with --clips (no event active) and with --save, against the plain loop, in one run.

    python benchmarks/clips_overhead.py BUNDLE [--clip samples/videos/box.mp4] [--rounds 3]

Per round the three runs are interleaved (plain, --clips, --save) on one loaded engine, the clip read
frame by frame (the model sets the pace); each figure is the median over rounds, and the ratio is
median FPS / median plain FPS (target >= 0.9, issue 27). The load average is printed: others share
the cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from edgecnn.runtime import load
from edgecnn.runtime.box.clips import ClipSink
from edgecnn.runtime.live.camera import CameraConfig, camera_engine, run_camera

ROOT = Path(__file__).resolve().parents[1]


def camera_fps(engine: object, clip: Path, folder: Path, mode: str) -> float:
    config = CameraConfig(source=clip, headless=True, force=True,
                          save=folder / "camera.mp4" if mode == "--save" else None)
    sinks = [ClipSink(folder / "clips")] if mode == "--clips" else []
    summary = run_camera(engine, config, say=lambda message: None, sinks=sinks)
    for sink in sinks:
        sink.close()
    return summary.mean_fps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--clip", type=Path, default=ROOT / "samples" / "videos" / "box.mp4")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    modes = ("plain", "--clips", "--save")
    fps: dict[str, list[float]] = {mode: [] for mode in modes}
    with load(args.bundle, device="cpu", **camera_engine()) as engine, tempfile.TemporaryDirectory() as tmp:
        camera_fps(engine, args.clip, Path(tmp), "plain")  # warm-up
        for _ in range(args.rounds):
            for mode in modes:
                fps[mode].append(camera_fps(engine, args.clip, Path(tmp), mode))
    plain = statistics.median(fps["plain"])
    print(f"load average {os.getloadavg()[0]:.1f}; {args.clip.name}, {args.rounds} rounds")
    for mode in modes:
        median = statistics.median(fps[mode])
        ratio = median / plain
        verdict = "" if mode == "plain" else ("  met (>= 0.9)" if ratio >= 0.9 else "  NOT met (< 0.9)")
        print(f"{mode:8s} {median:7.1f} FPS  x{ratio:.2f}{verdict}  (rounds: "
              f"{', '.join(f'{v:.1f}' for v in fps[mode])})")


if __name__ == "__main__":
    main()
