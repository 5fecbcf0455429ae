"""Head-only fine-tuning: the frozen backbone on the deployment engine against PyTorch eager, same run.

    python benchmarks/finetune.py [--images 3000] [--workers 2] [--skip-baseline]

1. Makes `--images` augmented copies of the sample photos (seeded crops, flips, colour, JPEG) in a temp
   folder, 4 classes as in samples/photos.
2. `edgecnn finetune DATA --feature-engine torch` (the PyTorch-eager feature pass, as before) and then
   the default (`auto`: OpenVINO f32), each as its own process: wall time from start to exit (imports,
   decoding, feature caching, 10 head epochs, checkpoints, plots) per image of the data set, validation
   top-1, peak memory (the main process's maximum RSS; and the sampled sum over it and its workers).
   Targets: <= 25 ms per image, >= 3x faster, top-1 within 0.5 points, peak RSS <= 1.5 GB.
3. `edgecnn finetune samples/photos` (121 photos), once with an empty cache (export + compile) and once
   warm. Target: <= 15 s.
4. The time split, each stage on its own on 300 of the images: decoding, augmentation (the plain
   `fit_frame` view + 2 augmented views, one thread as in a worker), backbone (3 views on the engine),
   and head training (the 10 head epochs from metrics.csv of run 2).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT / "samples" / "photos"


def make_images(out: Path, count: int, seed: int = 0) -> Path:
    """`count` augmented JPEG copies of the sample photos, spread evenly over their class folders."""
    from edgecnn.runtime.core.images import iter_image_files, read_image

    rng = random.Random(seed)
    sources = sorted(iter_image_files(PHOTOS))
    for index in range(count):
        source = sources[index % len(sources)]
        image = read_image(source)
        height, width = image.shape[:2]
        scale = rng.uniform(0.6, 1.0)
        crop_h, crop_w = int(height * scale), int(width * scale)
        top, left = rng.randint(0, height - crop_h), rng.randint(0, width - crop_w)
        image = image[top : top + crop_h, left : left + crop_w]
        if rng.random() < 0.5:
            image = image[:, ::-1]
        image = np.clip(image.astype(np.float32) * rng.uniform(0.8, 1.2) + rng.uniform(-20, 20), 0, 255)
        folder = out / source.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        bgr = cv2.cvtColor(image.astype(np.uint8), cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(folder / f"{index:05d}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return out


def timed_run(args: list[str], env: dict[str, str]) -> dict[str, float]:
    """One `edgecnn` process: wall seconds, its maximum RSS and the sampled peak RSS of it plus children."""
    with tempfile.TemporaryFile("w+") as log:  # not a pipe: nobody reads it while the run goes
        began = time.perf_counter()
        process = psutil.Popen([sys.executable, "-m", "edgecnn", *args], env=env, stdout=log,
                               stderr=subprocess.STDOUT, text=True)
        tree_peak, finished = 0, (0, 0, None)
        while not finished[0]:
            try:
                members = [process, *process.children(recursive=True)]
                tree_peak = max(tree_peak, sum(p.memory_info().rss for p in members))
            except psutil.Error:
                pass
            time.sleep(0.2)
            finished = os.wait4(process.pid, os.WNOHANG)  # reaps it: its own rusage, not a running maximum
        seconds = time.perf_counter() - began
        log.seek(0)
        output = log.read()
    if os.waitstatus_to_exitcode(finished[1]):
        raise SystemExit(f"edgecnn {' '.join(args)} failed:\n{output[-3000:]}")
    return {"seconds": seconds, "max_rss_gb": finished[2].ru_maxrss / 2**20,
            "tree_peak_gb": tree_peak / 2**30}


def best_top1(run: Path) -> tuple[float, float]:
    """(best validation top-1, seconds of the head epochs) from a run's metrics.csv."""
    with open(run / "metrics.csv") as file:
        rows = list(csv.DictReader(file))
    best = min(rows, key=lambda row: float(row["val_loss"]))
    return float(best["val_top1"]), sum(float(row["seconds"]) for row in rows)


def finetune_run(data: Path, out: Path, engine: str, workers: int, env: dict[str, str]) -> dict:
    figures = timed_run(["finetune", str(data), "--out", str(out), "--feature-engine", engine,
                         "--workers", str(workers), "--force"], env)
    figures["top1"], figures["head_seconds"] = best_top1(out)
    return figures


def time_split(data: Path, count: int) -> dict[str, float]:
    """Milliseconds per training image of each stage, run alone: decode, augment, backbone (3 views)."""
    import torch
    from edgecnn.runtime.core.images import iter_image_files, read_image

    from edgecnn.data import TrainTransform, ValTransform
    from edgecnn.feature_engine import open_engine
    from edgecnn.models import build_model

    paths = sorted(iter_image_files(data))[:count]
    built = build_model(num_classes=4)
    began = time.perf_counter()
    images = [read_image(path) for path in paths]
    decode = time.perf_counter() - began
    torch.set_num_threads(1)  # as in a DataLoader worker
    cv2.setNumThreads(1)
    views = [ValTransform(built.preprocess)] + [TrainTransform(built.preprocess)] * 2
    began = time.perf_counter()
    pixels = torch.stack([view(image) for image in images for view in views])
    augment = time.perf_counter() - began
    torch.set_num_threads(os.cpu_count() or 1)
    split = {"decode": decode, "augment": augment}
    for name in ("openvino", "torch"):
        engine = open_engine(name, built.model, built.preprocess.input_size, torch.device("cpu"),
                             threads=torch.get_num_threads())
        engine.submit(pixels[:96]).result()  # warm-up
        began = time.perf_counter()
        for start in range(0, len(pixels), 96):
            engine.submit(pixels[start : start + 96]).result()
        split[f"backbone_{name}"] = time.perf_counter() - began
        engine.close()
    return {name: seconds / len(paths) * 1e3 for name, seconds in split.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=2, help="--workers of both runs (default 2)")
    parser.add_argument("--skip-baseline", action="store_true", help="only the engine run (no ratios)")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        data = make_images(work / "data", args.images)
        env["XDG_CACHE_HOME"] = str(work / "cache")  # cold for the first run that needs it
        print(f"data: {args.images} augmented copies of {PHOTOS} in {data}; workers {args.workers}; "
              f"{os.cpu_count()} CPUs; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        results = {}
        engines = ("auto",) if args.skip_baseline else ("torch", "auto")
        for engine in engines:
            results[engine] = finetune_run(data, work / engine, engine, args.workers, env)
            print(f"feature engine {engine:5s}: {json.dumps(_rounded(results[engine]))}")
        cold = timed_run(["finetune", str(PHOTOS), "--out", str(work / "cold"), "--force"],
                         {**env, "XDG_CACHE_HOME": str(work / "cold-cache")})
        warm = timed_run(["finetune", str(PHOTOS), "--out", str(work / "warm"), "--force"], env)
        split = time_split(data, 300)
    ours = results["auto"]
    per_image = ours["seconds"] / args.images * 1e3
    print(f"\nhead-only fine-tune, {args.images} images, default engine: {per_image:.1f} ms per image "
          f"(target <= 25: {_met(per_image <= 25)}), val top-1 {ours['top1']:.2%}, "
          f"peak RSS {ours['max_rss_gb']:.2f} GB main process (target <= 1.5: "
          f"{_met(ours['max_rss_gb'] <= 1.5)}), {ours['tree_peak_gb']:.2f} GB with its workers")
    if "torch" in results:
        base = results["torch"]
        speedup = base["seconds"] / ours["seconds"]
        drop = (base["top1"] - ours["top1"]) * 100
        print(f"PyTorch eager baseline: {base['seconds'] / args.images * 1e3:.1f} ms per image, val top-1 "
              f"{base['top1']:.2%}, peak RSS {base['max_rss_gb']:.2f} GB ({base['tree_peak_gb']:.2f} GB "
              f"with workers); speed-up {speedup:.2f}x (target >= 3: {_met(speedup >= 3)}), top-1 "
              f"difference {drop:+.2f} points (target within 0.5: {_met(abs(drop) <= 0.5)})")
    print(f"samples/photos, whole command: {cold['seconds']:.1f} s with an empty cache, "
          f"{warm['seconds']:.1f} s warm (target <= 15: {_met(warm['seconds'] <= 15)})")
    print("time split, ms per training image, each stage alone: "
          + ", ".join(f"{name} {ms:.1f}" for name, ms in split.items())
          + f"; head training {ours['head_seconds'] / args.images * 1e3:.1f} (10 epochs, incl. checkpoints)")
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _rounded(figures: dict) -> dict:
    return {k: round(v, 3) for k, v in figures.items()}


if __name__ == "__main__":
    main()
