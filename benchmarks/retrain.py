"""The retrain loop (issue 29): 20 queued frames of a class the model did not know, labelled, retrained,
gated, swapped; then a wrong labelling that the gate must refuse.

    python benchmarks/retrain.py [--work /tmp/retrain-bench] [--formats all|onnx] [--camera]

1. Base: `finetune samples/photos` (4 classes) and `export --int8` (not timed; the feature cache is warm
   after it, as on a box that trained before).
2. The queue: box.mp4's first 9 s decoded, the base bundle answers each frame, a real ReviewQueue keeps
   20 of them (1 in every 13 frames, its de-duplication on) under review/box/ANSWER/.
3. `edgecnn review review --labels labels.csv --data DATA --retrain --bundle live --json`, its own
   process: wall time from the command to the swapped bundle, the retrain's own split, and the CPU
   seconds (user + sys) of it and its children (less load-dependent than the wall time).
   With --camera, a real `edgecnn camera live --source box.mp4 --loop --headless --jsonl -` runs from
   before it to its end: its frames per second in CAMERA_WINDOW s before the retrain, and during the
   retrain; the ratio is the camera's share left while a retrain runs (issue 29: >= 0.6).
4. Recognition: `edgecnn camera live --source box.mp4 --start 9` (frames the model never saw, the
   camera's default smoothing): share of frames shown as `box`.
5. A wrong labelling: 20 more frames of box.mp4 labelled at random among the old classes, retrained the
   same way: must be refused (exit 1) with the live bundle unchanged.
The load average is printed before and after (other engineers share the 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from the source tree as `python benchmarks/retrain.py`
BOX = ROOT / "samples" / "videos" / "box.mp4"
EDGECNN = [sys.executable, "-m", "edgecnn"]
CAMERA_WINDOW = 15.0  # seconds of camera frames counted before the retrain starts


def edgecnn(*args: object, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EDGECNN, *map(str, args)], capture_output=True, text=True, check=check, cwd=ROOT)


def base(work: Path, formats: str) -> Path:
    edgecnn("finetune", ROOT / "samples" / "photos", "--out", work / "base-run", "--force")
    edgecnn("export", work / "base-run" / "best.pt", "--out", work / "live", "--int8", "--force",
            "--format", formats)
    return work / "live"


def queue_frames(bundle: Path, review: Path, first: int, last: int, step: int, camera: str) -> list[str]:
    """Frames first..last (every `step`) of box.mp4 answered by `bundle`, through a real ReviewQueue."""
    import cv2
    from edgecnn.runtime.core.engine import load
    from edgecnn.runtime.live.frames import FrameRecord, LiveUpdate, Shown
    from edgecnn.runtime.live.review import ReviewConfig, ReviewQueue

    engine = load(bundle, device="cpu")
    video = cv2.VideoCapture(str(BOX))
    config = ReviewConfig(review, interval=0.0, sample=0.0, margin=1.01)  # every frame is worth a look
    with ReviewQueue(config) as queue:
        for index in range(last):
            ok, image = video.read()
            if not ok:
                break
            if index < first or (index - first) % step:
                continue
            answer = engine.classify([image], top_k=1, bgr=True)[0]
            top = (Shown(answer[0].label, answer[0].probability),)
            record = FrameRecord(source=str(BOX), frame=index, timestamp=index / 30, label=answer[0].label,
                                 top=top, unknown_score=answer.unknown_score, unknown=answer.unknown,
                                 inference_ms=0.0, latency_ms=0.0, camera=camera)
            queue.publish(LiveUpdate(record, {}, lambda image=image: image, image))
    video.release()
    engine.close()
    return [json.loads(line)["id"] for line in edgecnn("review", review, "--json").stdout.splitlines()
            if json.loads(line)["camera"] == camera]


def retrain(review: Path, labels: Path, data: Path, bundle: Path) -> tuple[float, int, dict]:
    began, cpu = time.perf_counter(), _children_cpu()
    done = edgecnn("review", review, "--labels", labels, "--data", data, "--retrain", "--bundle", bundle,
                   "--json", check=False)
    wall = time.perf_counter() - began
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(f"retrain failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return wall, done.returncode, {**lines[-1], "cpu_seconds": round(_children_cpu() - cpu, 1)}


def _children_cpu() -> float:
    """User + sys seconds of the finished child processes (and theirs), so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Camera:
    """`edgecnn camera BUNDLE --source box.mp4 --loop --headless --jsonl -` in the background, its frame
    lines counted with the time each arrived."""

    def __init__(self, bundle: Path) -> None:
        self.times: list[float] = []
        self.process = subprocess.Popen([*EDGECNN, "camera", str(bundle), "--source", str(BOX), "--loop",
                                         "--headless", "--jsonl", "-"], stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
        threading.Thread(target=self._count, daemon=True).start()

    def _count(self) -> None:
        for line in self.process.stdout:
            if line.startswith("{"):
                self.times.append(time.perf_counter())

    def fps(self, start: float, end: float) -> float:
        return sum(start <= t < end for t in self.times) / (end - start)

    def wait_for_frames(self, timeout: float = 120.0) -> None:
        deadline = time.perf_counter() + timeout
        while len(self.times) < 30:
            if time.perf_counter() > deadline or self.process.poll() is not None:
                raise SystemExit(f"the camera gave {len(self.times)} frames (exit {self.process.poll()})")
            time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def retrain_beside_camera(review: Path, labels: Path, data: Path, bundle: Path) -> tuple[float, int, dict]:
    """The retrain with a camera on the live bundle running; its FPS before and during, in the result."""
    camera = Camera(bundle)
    try:
        camera.wait_for_frames()
        time.sleep(CAMERA_WINDOW)
        began = time.perf_counter()
        wall, code, result = retrain(review, labels, data, bundle)
        ended = time.perf_counter()
        without, during = camera.fps(began - CAMERA_WINDOW, began), camera.fps(began, ended)
    finally:
        camera.stop()
    print(f"camera FPS: {without:.1f} without a retrain ({CAMERA_WINDOW:.0f} s before it), {during:.1f} "
          f"during it ({ended - began:.1f} s): ratio {during / without:.2f} (target >= 0.6)")
    return wall, code, result


def recognised(bundle: Path, work: Path) -> float:
    jsonl = work / "held-back.jsonl"
    edgecnn("camera", bundle, "--source", BOX, "--start", 9, "--headless", "--jsonl", jsonl)
    labels = [json.loads(line)["label"] for line in jsonl.read_text().splitlines()]
    return sum(label == "box" for label in labels) / len(labels), len(labels)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path("/tmp/retrain-bench"))
    parser.add_argument("--formats", default="all", choices=("all", "onnx", "openvino"))
    parser.add_argument("--camera", action="store_true", help="a camera runs beside the first retrain")
    args = parser.parse_args()
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    print(f"load average before: {os.getloadavg()}")
    bundle = base(work, args.formats)
    data = work / "data"
    shutil.copytree(ROOT / "samples" / "photos", data)
    ids = queue_frames(bundle, work / "review", 0, 270, 13, "desk")
    (work / "labels.csv").write_text("id,label\n" + "".join(f"{i},box\n" for i in ids))
    run = retrain_beside_camera if args.camera else retrain
    wall, code, result = run(work / "review", work / "labels.csv", data, bundle)
    print(f"right: {len(ids)} frames labelled box; exit {code}; wall {wall:.1f} s; {json.dumps(result)}")
    share, frames = recognised(bundle, work)
    print(f"held-back box.mp4 from 9 s: {share:.1%} of {frames} frames shown as box")
    before = (bundle / "report.json").read_bytes()
    wrong = queue_frames(bundle, work / "review", 5, 450, 22, "door")
    old = [c.name for c in sorted((ROOT / "samples" / "photos").iterdir()) if c.is_dir()]
    rng = random.Random(1)
    (work / "wrong.csv").write_text("".join(f"{i},{rng.choice(old)}\n" for i in wrong))
    wall, code, result = retrain(work / "review", work / "wrong.csv", data, bundle)
    unchanged = (bundle / "report.json").read_bytes() == before
    print(f"wrong: {len(wrong)} frames at random among {old}; exit {code}; wall {wall:.1f} s; "
          f"live bundle unchanged: {unchanged}; {json.dumps(result)}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
