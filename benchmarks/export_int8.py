"""INT8 vs FP32 after `edgecnn export --int8`: top-1 drop, agreement, latency and size ratios.

Exports CHECKPOINT (FP32 + INT8, ONNX + OpenVINO) into a temporary folder, then re-times every model
interleaved (round-robin, batch 1, 2 threads), so a busy machine slows all models alike, and checks
INT8/FP32 agreement on every image of the checkpoint's data folder as well as its validation split.

    python benchmarks/export_int8.py runs/demo/best.pt [--calibration-size 300]

Targets (issue 3): top-1 drop <= 0.5 pt, agreement >= 99 %, fastest INT8 <= 0.55 x fastest FP32
latency, INT8 file <= 0.3 x FP32 file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from edgecnn.export.bundle import ExportConfig, export_bundle
from edgecnn.export.checks import onnx_predictor, openvino_predictor
from edgecnn.export.images import ImageSet, batches
from edgecnn.runtime.images import iter_image_files
from edgecnn.runtime.metadata import ModelMeta

from edgecnn.checkpoint import load_checkpoint

MODELS = {"onnx fp32": "model.onnx", "onnx int8": "model.int8.onnx",
          "openvino fp32": "openvino/model.xml", "openvino int8": "openvino/model.int8.xml"}


def predictors(bundle: Path) -> dict:
    return {name: (onnx_predictor if file.endswith(".onnx") else openvino_predictor)(bundle / file)
            for name, file in MODELS.items()}


def interleaved_latency_ms(models: dict, frame: np.ndarray, rounds: int = 8,
                           runs: int = 15) -> dict[str, float]:
    """Median batch-1 latency per model, timed in alternating rounds."""
    times: dict[str, list[float]] = {name: [] for name in models}
    for predict in models.values():
        predict(frame)
    for _ in range(rounds):
        for name, predict in models.items():
            for _ in range(runs):
                start = time.perf_counter()
                predict(frame)
                times[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(values) for name, values in times.items()}


def agreement(models: dict, images: ImageSet, preprocess) -> dict[str, float]:  # noqa: ANN001
    """Percent of images where each INT8 model's top-1 equals its FP32 parent's."""
    top1: dict[str, list[int]] = {name: [] for name in models}
    for frames, _ in batches(images, preprocess, 1):
        for name, predict in models.items():
            top1[name] += predict(frames).argmax(1).tolist()
    same = {b: np.array(top1[f"{b} int8"]) == np.array(top1[f"{b} fp32"]) for b in ("onnx", "openvino")}
    return {backend: round(100 * float(hits.mean()), 2) for backend, hits in same.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--calibration-size", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        bundle = Path(folder) / "bundle"
        report = export_bundle(ExportConfig(checkpoint=args.checkpoint, out=bundle, int8=True, max_drop=100.0,
                                            calibration_size=args.calibration_size))
        models = {m.name: m for m in report.models}
        preprocess = ModelMeta.read(bundle / "model.onnx").preprocess
        runners = predictors(bundle)
        data_root = Path(load_checkpoint(args.checkpoint).split["data_root"])
        everything = ImageSet(tuple(iter_image_files(data_root)))
        frame = next(batches(everything, preprocess, 1))[0]
        latency = interleaved_latency_ms(runners, frame)
        agree_all = agreement(runners, everything, preprocess)
    fastest8 = min((n for n in latency if "int8" in n), key=latency.get)
    fastest32 = min((n for n in latency if "fp32" in n), key=latency.get)
    figures = {
        "validation_images": report.validation_images,
        "top1": {n: m.top1 for n, m in models.items()},
        "int8_drop_points": {n: m.drop for n, m in models.items() if "int8" in n},
        "int8_agreement_with_fp32_val": {n: m.agreement_fp32 for n, m in models.items() if "int8" in n},
        f"int8_agreement_with_fp32_all_{len(everything)}_images": agree_all,
        "latency_ms": {n: round(v, 2) for n, v in latency.items()},
        "fastest_int8_over_fastest_fp32":
            f"{fastest8} / {fastest32} = {latency[fastest8] / latency[fastest32]:.3f}",
        "onnx_int8_over_onnx_fp32_latency": round(latency["onnx int8"] / latency["onnx fp32"], 3),
        "openvino_int8_over_openvino_fp32_latency":
            round(latency["openvino int8"] / latency["openvino fp32"], 3),
        "size_mb": {n: round(m.size_bytes / 1e6, 2) for n, m in models.items()},
        "onnx_int8_over_onnx_fp32_size": report.ratios["onnxruntime"]["size"],
        "openvino_int8_over_fp32_onnx_size": round(models["openvino int8"].size_bytes
                                                   / models["onnx fp32"].size_bytes, 3),
        "notes": list(report.notes),
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
