"""`edgecnn run` with a 3-camera box file against the same sources given to `edgecnn camera` as repeated
--source, aggregate FPS, in one run (rounds alternate, so both see the same machine).

    python benchmarks/run_vs_camera.py BUNDLE [--rounds 2] [--max-frames 300]

The box: two regions of samples/videos/cup.mp4 (the left and right halves: one decoder feeds both) and
the samples/photos/tools slideshow, each camera with its own JSONL. The baseline: `edgecnn camera BUNDLE
--source cup.mp4 --source cup.mp4 --source samples/photos/tools --jsonl ...` (the whole frames, each
source decoded by itself). Both headless on the CPU, both stopped at --max-frames processed frames, both
as subprocesses (model load and start excluded: FPS is the loop's own `mean_fps`). Target: ratio >= 0.9.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CUP, TOOLS = ROOT / "samples" / "videos" / "cup.mp4", ROOT / "samples" / "photos" / "tools"


def box_file(folder: Path, bundle: Path, max_frames: int) -> Path:
    path = folder / "box.toml"
    path.write_text(f'model = "{bundle.absolute()}"\ndevice = "cpu"\nheadless = true\njson_out = true\n'
                    f'force = true\nmax_frames = {max_frames}\njsonl = "{folder}/run-{{camera}}.jsonl"\n'
                    f'[[camera]]\nsource = "{CUP}"\nname = "left"\nregion = [0, 0, 0.5, 1]\n'
                    f'[[camera]]\nsource = "{CUP}"\nname = "right"\nregion = [0.5, 0, 0.5, 1]\n'
                    f'[[camera]]\nsource = "{TOOLS}"\nname = "slides"\n')
    return path


def fps(command: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "edgecnn", *command], capture_output=True, text=True,
                          env=env, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"{command[0]} failed: {done.stderr.strip()[-500:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["mean_fps"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-frames", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        box = box_file(folder, args.bundle, args.max_frames)
        camera = ["camera", str(args.bundle), "--device", "cpu", "--headless", "--json", "--force",
                  "--max-frames", str(args.max_frames), "--jsonl", str(folder / "camera.jsonl"),
                  "--source", str(CUP), "--source", str(CUP), "--source", str(TOOLS)]
        runs, cameras = [], []
        for _ in range(args.rounds):
            runs.append(fps(["run", str(box)]))
            cameras.append(fps(camera))
    run_fps, camera_fps = statistics.median(runs), statistics.median(cameras)
    print(f"load average {os.getloadavg()[0]:.2f}; rounds {args.rounds}; {args.max_frames} frames each")
    print(f"edgecnn run (3 cameras: 2 regions of one decoder + slideshow): {run_fps:.1f} FPS {runs}")
    print(f"edgecnn camera (3 x --source):                              {camera_fps:.1f} FPS {cameras}")
    print(f"ratio run / camera: {run_fps / camera_fps:.3f} (target >= 0.9)")


if __name__ == "__main__":
    main()
