"""INT8 with the default export, against the targets of issue 18, in one run.

1. `edgecnn export --pretrained --int8` (defaults; calibrated and checked on the sample photos):
   passed?, FP32-confident answers kept, top-1 agreement, top-5 overlap, mean KL, per backend.
2. `edgecnn export CHECKPOINT --int8` (defaults): wall time including the recipe search, time per
   recipe, top-1 drop and agreement with FP32 on the validation split and on every image of its data.
3. Latency of all four models of each bundle, re-timed interleaved (round-robin, batch 1, 2 threads),
   so a busy machine slows every model alike: INT8 / FP32 per backend.
Each extra `--also CHECKPOINT` (another fine-tuned data set) repeats step 2 for it.

    python benchmarks/export_int8.py runs/demo/best.pt [--also /tmp/second/best.pt]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from edgecnn.export.bundle import ExportConfig, ExportFailed, export_bundle
from edgecnn.export.checks import onnx_predictor, openvino_predictor
from edgecnn.export.images import ImageSet, batches
from edgecnn.runtime.core.images import iter_image_files
from edgecnn.runtime.core.metadata import ModelMeta

from edgecnn.checkpoint import load_checkpoint

MODELS = {"onnx fp32": "model.onnx", "onnx int8": "model.int8.onnx",
          "openvino fp32": "openvino/model.xml", "openvino int8": "openvino/model.int8.xml"}
BACKENDS = {"onnxruntime": ("onnx int8", "onnx fp32"), "openvino": ("openvino int8", "openvino fp32")}
LATENCY_TARGET = {"onnxruntime": 0.7, "openvino": 0.45}


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


def agreement_everywhere(models: dict, images: ImageSet, preprocess: Any) -> dict[str, float]:
    """Percent of images where each INT8 model's top-1 equals its FP32 parent's."""
    top1: dict[str, list[int]] = {name: [] for name in models}
    for frames, _ in batches(images, preprocess, 1):
        for name, predict in models.items():
            top1[name] += predict(frames).argmax(1).tolist()
    return {backend: round(100 * float(np.mean(np.array(top1[i8]) == np.array(top1[f32]))), 2)
            for backend, (i8, f32) in BACKENDS.items()}


def export(config: ExportConfig) -> tuple[dict[str, Any], float, bool]:
    """The report (as JSON data), the wall time, and whether every gate passed (exit 0)."""
    start = time.perf_counter()
    try:
        export_bundle(config)
        passed = True
    except ExportFailed:
        passed = False
    seconds = time.perf_counter() - start
    return json.loads((Path(config.out) / "report.json").read_text()), seconds, passed


def latency_ratios(bundle: Path) -> dict[str, Any]:
    preprocess = ModelMeta.read(bundle / "model.onnx").preprocess
    frame = next(batches(ImageSet(tuple(iter_image_files(Path("samples/photos")))), preprocess, 1))[0]
    latency = interleaved_latency_ms(predictors(bundle), frame)
    return {"latency_ms": {n: round(v, 2) for n, v in latency.items()},
            **{f"{backend}_int8_over_fp32": round(latency[i8] / latency[f32], 3)
               for backend, (i8, f32) in BACKENDS.items()}}


def int8_figures(report: dict[str, Any]) -> dict[str, Any]:
    """Per backend: what the gate saw, and the recipes tried (name, flips, KL, time, kept)."""
    result = {}
    for model in report["models"]:
        if model["precision"] != "int8":
            continue
        gate = model["gate"]
        backend = model["backend"]
        kept = gate["confident_images"] - gate["confident_flips"]
        result[backend] = {
            "status": model["status"], "confident_kept": f"{kept}/{gate['confident_images']}",
            "top1_agreement": gate["top1_agreement"],
            "top5_overlap": gate["top5_overlap"], "mean_kl": gate["mean_kl"], "flips": gate["flips"],
            "drop": gate.get("drop"), "drop_interval": gate.get("drop_interval"),
            "recipes": [f"{t['recipe']}{' (kept)' if t['kept'] else ''}: {t['agreement']['flips']} flips, "
                        f"KL {t['agreement']['mean_kl']:.4f}, {t['seconds']:.0f} s"
                        for t in report["calibration"]["recipes"][backend]]}
    return result


def checkpoint_run(checkpoint: Path, folder: Path) -> dict[str, Any]:
    bundle = folder / checkpoint.parent.name
    config = ExportConfig(checkpoint=checkpoint, out=bundle, int8=True, progress=False)
    report, seconds, passed = export(config)
    split = load_checkpoint(checkpoint).split
    data_root = Path(split.data_root if split is not None else "")
    everything = ImageSet(tuple(iter_image_files(data_root)))
    preprocess = ModelMeta.read(bundle / "model.onnx").preprocess
    return {"checkpoint": str(checkpoint), "exit": 0 if passed else 1, "export_seconds": round(seconds, 1),
            "validation_images": report["validation_images"], "int8": int8_figures(report),
            f"agreement_all_{len(everything)}_images": agreement_everywhere(predictors(bundle), everything,
                                                                          preprocess),
            **latency_ratios(bundle)}


def verdicts(imagenet: dict[str, Any], sample: dict[str, Any]) -> list[str]:
    """Each target of the issue, met or NOT met."""
    lines = []

    def say(what: str, value: Any, ok: bool) -> None:
        lines.append(f"{what}: {value} -> {'met' if ok else 'NOT met'}")

    say("ImageNet bundle, default export exit code", imagenet["exit"], imagenet["exit"] == 0)
    for backend, figures in imagenet["int8"].items():
        confident, total = (int(x) for x in figures["confident_kept"].split("/"))
        say(f"ImageNet {backend}: FP32-confident answers kept", figures["confident_kept"], confident == total)
        say(f"ImageNet {backend}: top-1 agreement % (>= 97)", figures["top1_agreement"],
            figures["top1_agreement"] >= 97)
        say(f"ImageNet {backend}: top-5 overlap % (>= 95)", figures["top5_overlap"],
            figures["top5_overlap"] >= 95)
        ratio = imagenet[f"{backend}_int8_over_fp32"]
        say(f"ImageNet {backend}: INT8/FP32 latency (<= {LATENCY_TARGET[backend]})", ratio,
            ratio <= LATENCY_TARGET[backend])
    for backend, figures in sample["int8"].items():
        say(f"fine-tuned {backend}: top-1 drop (0.0)", figures["drop"], figures["drop"] == 0)
        say(f"fine-tuned {backend}: agreement with FP32 % (>= 99)", figures["top1_agreement"],
            figures["top1_agreement"] >= 99)
    say("fine-tuned export wall time incl. search, s (<= 180)", sample["export_seconds"],
        sample["export_seconds"] <= 180)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path,
                        help="the sample model: best.pt of `edgecnn finetune samples/photos`")
    parser.add_argument("--also", type=Path, action="append", default=[], help="more fine-tuned checkpoints")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        bundle = Path(folder) / "imagenet"
        report, seconds, passed = export(ExportConfig(pretrained=True, out=bundle, int8=True, progress=False))
        imagenet = {"exit": 0 if passed else 1, "export_seconds": round(seconds, 1),
                    "validation_images": report["validation_images"], "int8": int8_figures(report),
                    **latency_ratios(bundle)}
        sample = checkpoint_run(args.checkpoint, Path(folder))
        others = [checkpoint_run(c, Path(folder)) for c in args.also]
    print(json.dumps({"imagenet": imagenet, "sample": sample, "others": others}, indent=2))
    print("\n".join(verdicts(imagenet, sample)))


if __name__ == "__main__":
    main()
