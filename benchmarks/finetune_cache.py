"""The incremental feature cache: `edgecnn finetune samples/photos` head-only with an empty feature cache
against a warm one, and the cost per image against its floor (views x one backbone forward), one run.

    python benchmarks/finetune_cache.py [--data samples/photos]

1. A fresh XDG_CACHE_HOME; one run exports and compiles the backbone (not counted), its features are
   then deleted, so "cold" below is the backbone on every image and "warm" none.
2. `edgecnn finetune DATA` cold, then warm, each its own process: wall time start to exit, head epochs'
   seconds (metrics.csv), val top-1.
3. The floor, in this process: the feature engine (OpenVINO f32) on the same number of views as the run
   (1 plain view per val image, 1 + 2 augmented per train image), ms per view, chunks of 32 as the run.
Cost per image = ((cold - warm) wall + head epochs) / images; the target is <= 1.2 x the floor.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(data: Path, out: Path, env: dict[str, str]) -> dict[str, float]:
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "edgecnn", "finetune", str(data), "--out", str(out)],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - began
    with open(out / "metrics.csv") as file:
        rows = list(csv.DictReader(file))
    head = sum(float(row["seconds"]) for row in rows if row["phase"] == "head")
    return {"wall_s": wall, "head_epochs_s": head, "val_top1": max(float(row["val_top1"]) for row in rows)}


def floor_ms_per_view(views: int) -> float:
    """The engine's ms per view over `views` random views (the backbone's cost does not depend on pixels)."""
    import torch

    from edgecnn.feature_engine import open_engine
    from edgecnn.models import build_model

    built = build_model(num_classes=4)
    engine = open_engine("auto", built.model, built.preprocess.input_size, torch.device("cpu"),
                         threads=torch.get_num_threads())
    pixels = torch.randn(views, 3, *built.preprocess.input_size)
    engine.submit(pixels[:32]).result()  # warm-up
    began = time.perf_counter()
    engine.submit(pixels).result()
    seconds = time.perf_counter() - began
    engine.close()
    return seconds / views * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "samples" / "photos")
    args = parser.parse_args()
    from edgecnn.data import scan_folder

    split = scan_folder(args.data)
    images, views = len(split.train) + len(split.val), 3 * len(split.train) + len(split.val)
    with tempfile.TemporaryDirectory(prefix="edgecnn-cache-bench-") as temp:
        env = {**os.environ, "XDG_CACHE_HOME": str(Path(temp) / "cache"), "PYTHONPATH": str(ROOT)}
        os.environ["XDG_CACHE_HOME"] = env["XDG_CACHE_HOME"]
        run(args.data, Path(temp) / "first", env)  # exports and compiles the backbone
        shutil.rmtree(Path(temp) / "cache" / "edgecnn" / "features")
        cold = run(args.data, Path(temp) / "cold", env)
        warm = run(args.data, Path(temp) / "warm", env)
        floor = floor_ms_per_view(views)
    per_image = ((cold["wall_s"] - warm["wall_s"]) + cold["head_epochs_s"]) / images * 1e3
    floor_image = floor * views / images
    print(f"images {images} ({len(split.train)} train x 3 views, {len(split.val)} val x 1), load "
          f"{os.getloadavg()[0]:.1f}")
    for name, figures in (("cold", cold), ("warm", warm)):
        print(f"{name}: wall {figures['wall_s']:.1f} s, head epochs {figures['head_epochs_s']:.2f} s, "
              f"val top-1 {figures['val_top1']:.1%}")
    print(f"floor: {floor:.1f} ms per view = {floor_image:.1f} ms per image")
    ratio = per_image / floor_image
    print(f"cost per image (cold - warm + head epochs): {per_image:.1f} ms = {ratio:.2f} x floor "
          f"({'met' if ratio <= 1.2 else 'NOT met'}, target <= 1.2)")


if __name__ == "__main__":
    main()
