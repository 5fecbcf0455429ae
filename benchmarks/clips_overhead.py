"""Camera FPS with --clips (no event active) and with --save, against the plain loop, in one run.

    python benchmarks/clips_overhead.py BUNDLE [--clip samples/videos/box.mp4] [--rounds 3] [--jpeg-baseline]
        [--nice 10 ...] [--against OTHER_clips.py] [--diagnose] [--plain-last] [--no-save]

Per round the runs are interleaved (plain, --clips, ..., --save) on one loaded engine, the clip read frame
by frame (the model sets the pace); each figure is the median over rounds, and the ratio is median FPS /
median plain FPS (target >= 0.9, issue 27). Beside FPS, the process CPU time per processed frame (every
thread: the model's, the clip worker's), which other processes' load moves far less than FPS. The load
average is printed: others share the cores. More runs in the same rounds:
  --jpeg-baseline  --clips plus a JPEG q85 encode of every frame (the pre-roll's cost before I420 frames)
  --nice N         --clips with the clip worker's thread at niceness N
  --against FILE   --clips with the ClipSink of another clips.py (A/B of two versions)
  --diagnose       --clips keeping every other frame (a half-rate pre-roll), and --clips whose worker
                   takes each frame and keeps nothing (the hand-off alone)
  --plain-last     a second plain run, last in each round: the noise and order floor (A/A)
Each clips run also prints the frames its worker's queue dropped (all rounds together).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from edgecnn.runtime import load
from edgecnn.runtime.box.clips import ClipSink
from edgecnn.runtime.live.camera import CameraConfig, camera_engine, run_camera

ROOT = Path(__file__).resolve().parents[1]
JPEG = "--clips+jpeg"
NICE = "--clips nice "
HALF = "--clips half"
QUEUE_ONLY = "--clips queue"
PLAIN_LAST = "plain (last)"
AGAINST = "--clips (B)"
KINDS: dict[str, Any] = {}  # --against's ClipSink


def clip_sink_of(path: Path) -> Any:
    """The ClipSink class of another version of runtime/box/clips.py."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("clips_against", path)
    module = sys.modules["clips_against"] = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.ClipSink


class JpegClipSink(ClipSink):
    """--clips plus the old pre-roll's JPEG q85 encode of each frame (the baseline, not shipped)."""

    def _take(self, camera: str, frame: int, timestamp: float, image: Any) -> None:
        import cv2

        cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
        super()._take(camera, frame, timestamp, image)


class NiceClipSink(ClipSink):
    """--clips with the worker thread at a higher niceness (Linux: per thread), set as it starts."""

    nice = 0

    def _run(self) -> None:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)
        super()._run()


class HalfClipSink(ClipSink):
    """--clips keeping every other frame (a pre-roll at half the frame rate): what subsampling would save."""

    def _take(self, camera: str, frame: int, timestamp: float, image: Any) -> None:
        if frame % 2 == 0:
            super()._take(camera, frame, timestamp, image)


class QueueOnlyClipSink(ClipSink):
    """Frames queued to the worker and taken off, nothing converted or kept: the thread hand-off's cost."""

    def _take(self, camera: str, frame: int, timestamp: float, image: Any) -> None:
        pass


def camera_run(engine: object, clip: Path, folder: Path, mode: str) -> tuple[float, float, int]:
    """(FPS, process CPU ms per processed frame, frames the clip worker's queue dropped) of one run."""
    config = CameraConfig(source=clip, headless=True, force=True,
                          save=folder / "camera.mp4" if mode == "--save" else None)
    kinds = {"--clips": ClipSink, JPEG: JpegClipSink, HALF: HalfClipSink, QUEUE_ONLY: QueueOnlyClipSink,
             **KINDS}
    if mode.startswith(NICE):
        kind = type("Nice", (NiceClipSink,), {"nice": int(mode.removeprefix(NICE))})
        sinks = [kind(folder / "clips")]
    else:
        sinks = [kinds[mode](folder / "clips")] if mode in kinds else []
    cpu = time.process_time()
    summary = run_camera(engine, config, say=lambda message: None, sinks=sinks)
    for sink in sinks:
        sink.close()
    cost = (time.process_time() - cpu) * 1000 / max(summary.frames_processed, 1)
    return summary.mean_fps, cost, sum(sink.frames_dropped for sink in sinks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--clip", type=Path, default=ROOT / "samples" / "videos" / "box.mp4")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jpeg-baseline", action="store_true")
    parser.add_argument("--nice", type=int, action="append", default=[],
                        help="also --clips with the clip worker's thread at this niceness (repeatable)")
    parser.add_argument("--no-save", action="store_true", help="leave the --save run out")
    parser.add_argument("--diagnose", action="store_true",
                        help="also --clips keeping every other frame, and with nothing converted or kept")
    parser.add_argument("--against", type=Path, help="also --clips with the ClipSink of this clips.py (e.g. "
                        "git show main:runtime/box/clips.py > /tmp/main_clips.py): A/B in the same rounds")
    parser.add_argument("--plain-last", action="store_true",
                        help="a second plain run last in each round: the noise and order floor (A/A)")
    args = parser.parse_args()
    if args.against is not None:
        KINDS[AGAINST] = clip_sink_of(args.against)
    modes = ("plain", "--clips", *((AGAINST,) if args.against is not None else ()),
             *((JPEG,) if args.jpeg_baseline else ()),
             *(f"{NICE}{n}" for n in args.nice), *((HALF, QUEUE_ONLY) if args.diagnose else ()),
             *(() if args.no_save else ("--save",)), *((PLAIN_LAST,) if args.plain_last else ()))
    fps: dict[str, list[float]] = {mode: [] for mode in modes}
    cpu: dict[str, list[float]] = {mode: [] for mode in modes}
    lost: dict[str, int] = {mode: 0 for mode in modes}
    before = os.getloadavg()[0]
    with load(args.bundle, device="cpu", **camera_engine()) as engine, tempfile.TemporaryDirectory() as tmp:
        camera_run(engine, args.clip, Path(tmp), "plain")  # warm-up
        for _ in range(args.rounds):
            for mode in modes:
                rate, cost, dropped = camera_run(engine, args.clip, Path(tmp), mode)
                fps[mode].append(rate)
                cpu[mode].append(cost)
                lost[mode] += dropped
    plain, plain_cpu = statistics.median(fps["plain"]), statistics.median(cpu["plain"])
    print(f"load average {before:.1f} before, {os.getloadavg()[0]:.1f} after; {args.clip.name}, "
          f"{args.rounds} rounds")
    for mode in modes:
        median, cost = statistics.median(fps[mode]), statistics.median(cpu[mode])
        ratio = median / plain
        verdict = "" if mode == "plain" else ("  met (>= 0.9)" if ratio >= 0.9 else "  NOT met (< 0.9)")
        print(f"{mode:12s} {median:7.1f} FPS  x{ratio:.2f}{verdict}  (rounds: "
              f"{', '.join(f'{v:.1f}' for v in fps[mode])});  CPU {cost:.2f} ms/frame "
              f"(plain / this x{plain_cpu / cost:.2f}); clip frames dropped {lost[mode]}")


if __name__ == "__main__":
    main()
