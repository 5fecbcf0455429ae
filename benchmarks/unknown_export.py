"""What the unknown detector costs and keeps in the exported models: INT8 unknown decisions against
FP32's, and INT8 latency with the extra output against the same model exported without it.

    python benchmarks/unknown_export.py runs/demo/best.pt --known samples/photos --unknown OTHER_IMAGES

Exports the checkpoint twice with --int8 (as is, and with its detector removed: one output), then on
each backend (ONNX Runtime, OpenVINO) compares the unknown decisions of INT8 and FP32 on every known and
unknown image, and times the two INT8 models interleaved (batch 1, 2 threads, median of rounds).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--known", type=Path, default=Path("samples/photos"))
    parser.add_argument("--unknown", type=Path, required=True, help="images of none of the classes")
    parser.add_argument("--work", type=Path, default=None, help="keep the two bundles here (reused)")
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="unknown-export-"))
    with_detector, without = bundles(args.checkpoint, work)
    frames = fitted(with_detector, [args.known, args.unknown])
    for backend in ("onnxruntime", "openvino"):
        agree, unknown32, unknown8 = agreement(with_detector, backend, frames)
        print(f"{backend}: INT8 unknown decisions equal FP32's on {agree:.1%} of {len(frames)} images "
              f"(FP32 calls {unknown32:.1%} unknown, INT8 {unknown8:.1%})", flush=True)
        extra, plain = latency(with_detector, without, backend, frames[:1], args.rounds)
        print(f"{backend}: INT8 latency with unknown_score {extra:.2f} ms, without {plain:.2f} ms: "
              f"ratio {extra / plain:.3f} (target <= 1.05)", flush=True)


def bundles(checkpoint: Path, work: Path) -> tuple[Path, Path]:
    from edgecnn.export.bundle import ExportConfig, export_bundle

    from edgecnn.checkpoint import load_checkpoint, save_checkpoint

    with_detector, without = work / "with", work / "without"
    plain = save_checkpoint(replace(load_checkpoint(checkpoint), unknown={}), work / "without.pt")
    for source, out in ((checkpoint, with_detector), (plain, without)):
        if not (out / "report.json").is_file():
            export_bundle(ExportConfig(checkpoint=source, out=out, int8=True, force=True, progress=False))
    return with_detector, without


def fitted(bundle: Path, folders: list[Path]) -> np.ndarray:
    from edgecnn.runtime import load
    from edgecnn.runtime.core.errors import EdgecnnError
    from edgecnn.runtime.core.images import iter_image_files, read_image
    from edgecnn.runtime.core.preprocess import fit_frame

    with load(bundle, precision="fp32", backend="onnxruntime") as engine:
        frames = []
        for folder in folders:
            for file in iter_image_files(folder):
                try:
                    frames.append(fit_frame(read_image(file), engine.preprocess))
                except EdgecnnError:
                    continue
    return np.stack(frames)


def agreement(bundle: Path, backend: str, frames: np.ndarray) -> tuple[float, float, float]:
    from edgecnn.runtime import load

    decisions = {}
    for precision in ("fp32", "int8"):
        with load(bundle, precision=precision, backend=backend, threads=2) as engine:
            scores = np.concatenate([engine.infer_scored(frames[i:i + 16]).unknown_score
                                     for i in range(0, len(frames), 16)])
            decisions[precision] = scores > engine.unknown_threshold
    return (float(np.mean(decisions["fp32"] == decisions["int8"])), float(decisions["fp32"].mean()),
            float(decisions["int8"].mean()))


def latency(with_detector: Path, without: Path, backend: str, frame: np.ndarray, rounds: int
            ) -> tuple[float, float]:
    """Median batch-1 ms of the two INT8 models, run alternately so that load changes hit both."""
    from edgecnn.runtime import load

    engines = [load(b, precision="int8", backend=backend, threads=2) for b in (with_detector, without)]
    times: list[list[float]] = [[], []]
    try:
        for engine in engines:
            for _ in range(10):
                engine.infer(frame)
        for _ in range(rounds):
            for engine, found in zip(engines, times, strict=True):
                start = time.perf_counter()
                engine.infer(frame)
                found.append(1000.0 * (time.perf_counter() - start))
    finally:
        for engine in engines:
            engine.close()
    return statistics.median(times[0]), statistics.median(times[1])


if __name__ == "__main__":
    main()
