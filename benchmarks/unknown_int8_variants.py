"""How NNCF settings move an exported model's unknown score: OpenVINO INT8 variants of a bundle's FP32
model, each scored against that FP32 model on several image sets (decision agreement, median shift).

    python benchmarks/unknown_int8_variants.py bundles/tour --images samples/photos \\
        --images /work/wt/shared-data/second --video samples/videos/box.mp4 --video samples/videos/cup.mp4

Each variant quantises the bundle's model.onnx on its checkpoint's training images (as `edgecnn export
--int8` does, recipe "first conv + first depthwise conv float", the detector in float) and changes one
thing: a float conv head, NNCF's MIXED preset, min-max or mean-quantile activation ranges, no bias
correction, or a calibration set tripled by a low-contrast brighter and a darker copy of each image.

With --onnxruntime it measures ONNX Runtime `quantize_static` recipes instead (issue 26 items 2 and 8),
on any bundle with a model.onnx (the ImageNet one: `edgecnn export --pretrained --format onnx`):

    python benchmarks/unknown_int8_variants.py /tmp/imagenet --onnxruntime --images samples/photos

calibrated as `export --int8` does (`--calibration-size` of the images, spread evenly), each variant
changing one thing of export's first recipe (MinMax, QDQ U8S8, per-channel, first conv float): the
calibration method, S8S8, per-tensor weights, reduce_range, a float head (every node after the global
pooling), and some of them together. Per variant: top-1 and unknown-decision agreement with FP32 on the
images (at FP32's threshold, and at one refitted on the INT8 scores), INT8/FP32 batch-1 latency timed
interleaved in one run, and the same for the NNCF OpenVINO recipes export tries.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--images", type=Path, action="append", default=[], help="a folder of images")
    parser.add_argument("--video", type=Path, action="append", default=[], help="a video, every frame")
    parser.add_argument("--work", type=Path, default=Path("/tmp/unknown-int8-variants"))
    parser.add_argument("--variants", default="",
                        help="comma-separated, of: " + ", ".join(VARIANTS) + "; with --onnxruntime: "
                        + ", ".join(ORT_VARIANTS) + ", " + ", ".join(OPENVINO_VARIANTS))
    parser.add_argument("--onnxruntime", action="store_true", help="measure ORT quantize_static recipes")
    parser.add_argument("--calibration-size", type=int, default=32, help="with --onnxruntime")
    args = parser.parse_args()
    if args.onnxruntime:
        main_ort(args)
        return
    args.variants = args.variants or ",".join(VARIANTS)
    from edgecnn.runtime import load

    with load(args.bundle, device="cpu", backend="openvino", precision="fp32") as engine:
        preprocess, threshold = engine.preprocess, engine.meta.unknown.threshold
    from edgecnn.runtime.core.preprocess import fit_batch

    sets = {path.name: folder_fitted(path, preprocess) for path in args.images}
    sets.update({path.stem: fit_batch(video_frames(path), preprocess) for path in args.video})
    reference = scores(args.bundle / "openvino" / "model.xml", sets)
    print(f"threshold {threshold:.3f}; FP32 unknown share: "
          + ", ".join(f"{name} {np.mean(s > threshold):.0%}" for name, s in reference.items()), flush=True)
    for name in args.variants.split(","):
        start = time.perf_counter()
        xml = quantised(args.bundle, name, args.work, preprocess)
        got = scores(xml, sets)
        cells = [f"{set_name} {np.mean((reference[set_name] > threshold) == (s > threshold)):.1%} "
                 f"{np.median(s - reference[set_name]):+.3f}" for set_name, s in got.items()]
        seconds = time.perf_counter() - start
        print(f"{name:14s} ({seconds:3.0f} s) agreement, median shift: " + " | ".join(cells), flush=True)


def folder_fitted(folder: Path, preprocess: Any) -> np.ndarray:
    """Every readable image under `folder`, fitted as export's checks fit them (unreadable ones skipped)."""
    from edgecnn.export.images import fitted_images, folder_images

    return np.stack([frame for frame, _ in fitted_images(folder_images(folder), preprocess)])


def video_frames(path: Path) -> list[np.ndarray]:
    import cv2

    capture, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))


def scores(xml: Path, sets: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each set's unknown scores from the IR at `xml`, one image at a time (as the camera feeds it)."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    output = next(o for o in compiled.outputs if "unknown_score" in o.get_names())
    return {name: np.array([float(compiled(frames[i:i + 1])[output][0]) for i in range(len(frames))])
            for name, frames in sets.items()}


def quantised(bundle: Path, variant: str, work: Path, preprocess: Any) -> Path:
    """The bundle's model.onnx quantised by NNCF with `variant`'s one change, saved under `work`."""
    import nncf
    import openvino as ov
    from edgecnn.export import openvino as export_openvino
    from edgecnn.export.images import split_images
    from edgecnn.runtime.core.bundle import Bundle

    report = Bundle(bundle).report
    labels = [line for line in (bundle / "labels.txt").read_text().splitlines() if line]
    train = split_images(report.split if report is not None else None, "train", labels)
    calibration: Any = export_openvino._Calibration(train, preprocess, 1)
    model = ov.convert_model(str(bundle / "model.onnx"))
    ignored, _ = export_openvino._ignored(model, export_openvino.RECIPES[0])
    names = list(ignored.names)
    if variant == "conv-head":
        convolutions = [op for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"]
        names.append(convolutions[-1].get_friendly_name())
    if variant == "jitter":
        calibration = _Jittered(calibration)
    options = VARIANTS[variant]()
    scope = nncf.IgnoredScope(names=names, patterns=ignored.patterns, validate=False)
    quantized = nncf.quantize(model, nncf.Dataset(calibration), subset_size=len(calibration),
                              fast_bias_correction=False, ignored_scope=scope, **options)
    xml = work / f"{variant}.xml"
    xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(xml))
    return xml


class _Jittered:
    """Each calibration batch, then a low-contrast brighter and a darker copy of it."""

    def __init__(self, batches: Any) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[np.ndarray]:
        for batch in self.batches:
            values = batch.astype(np.float32)
            yield batch
            yield np.clip((values - values.mean()) * 0.6 + values.mean() + 40, 0, 255).astype(np.uint8)
            yield np.clip(values * 0.5, 0, 255).astype(np.uint8)

    def __len__(self) -> int:
        return 3 * len(self.batches)


def _advanced(**kwargs: Any) -> dict[str, Any]:
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

    return {"advanced_parameters": AdvancedQuantizationParameters(**kwargs)}


def _ranges(name: str) -> dict[str, Any]:
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    return _advanced(activations_range_estimator_params=getattr(RangeEstimatorParametersSet, name))


def _mixed() -> dict[str, Any]:
    import nncf

    return {"preset": nncf.QuantizationPreset.MIXED}


VARIANTS: dict[str, Callable[[], dict[str, Any]]] = {
    "export": dict, "conv-head": dict, "mixed": _mixed, "minmax": lambda: _ranges("MINMAX"),
    "mean-quantile": lambda: _ranges("MEAN_QUANTILE"),
    "no-bias": lambda: _advanced(disable_bias_correction=True), "jitter": dict,
}

# --onnxruntime: each variant is export's first ONNX recipe with the named changes (export/quantize.py)
ORT_VARIANTS: dict[str, dict[str, Any]] = {
    "export-minmax": {}, "percentile": {"method": "percentile"}, "entropy": {"method": "entropy"},
    "per-tensor": {"per_channel": False}, "reduce-range": {"reduce_range": True},
    "s8s8": {"activations": "int8"}, "s8s8-reduce-range": {"activations": "int8", "reduce_range": True},
    "float-head": {"float_head": True}, "float-head-percentile": {"float_head": True, "method": "percentile"},
    "float-head-entropy": {"float_head": True, "method": "entropy"},
    "s8s8-float-head": {"activations": "int8", "float_head": True},
    "s8s8-float-head-percentile": {"activations": "int8", "float_head": True, "method": "percentile"},
    "all-float-conv-head": {"float_head": True, "float_conv_head": True},
}
OPENVINO_VARIANTS = ("openvino-recipe-1", "openvino-recipe-2")


def main_ort(args: argparse.Namespace) -> None:
    """The --onnxruntime table: one row per variant, then the latency ratios timed interleaved."""
    import os

    from edgecnn.export.checks import onnx_predictor, openvino_predictor, scorer
    from edgecnn.export.images import folder_images

    def predictor(backend: str, model: Path) -> Any:
        return (onnx_predictor if backend == "onnxruntime" else openvino_predictor)(model), \
            scorer(backend, model)
    from edgecnn.runtime.core.metadata import ModelMeta

    fp32 = args.bundle / "model.onnx"
    meta = ModelMeta.read(fp32)
    images = folder_images(args.images[0])
    calibration, threshold = images.subset(args.calibration_size), meta.unknown.threshold
    frames = folder_fitted(args.images[0], meta.preprocess)
    print(f"{len(frames)} check images, {len(calibration)} calibration images, threshold {threshold:.4f}, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    names = args.variants.split(",") if args.variants else [*ORT_VARIANTS, *OPENVINO_VARIANTS]
    args.work.mkdir(parents=True, exist_ok=True)
    parents = {"onnxruntime": predictor("onnxruntime", fp32)}
    if any(name in OPENVINO_VARIANTS for name in names):
        from edgecnn.export.openvino import convert_openvino

        parents["openvino"] = predictor("openvino", convert_openvino(fp32, args.work / "fp32.xml"))
    reference = {backend: outputs(*pair, frames) for backend, pair in parents.items()}
    rows = []
    for name in names:
        start = time.perf_counter()
        backend, model = quantised_ort(fp32, name, args.work, calibration, meta.preprocess)
        pair = predictor(backend, model)
        rows.append((name, backend, pair[0], agreement(reference[backend], outputs(*pair, frames), threshold),
                     time.perf_counter() - start))
        print(f"{name:28s} {row_text(rows[-1][3])} ({rows[-1][4]:.0f} s)", flush=True)
    ratios = interleaved_ratios({b: pair[0] for b, pair in parents.items()}, [(r[1], r[2]) for r in rows],
                                frames[:1])
    print("\n| variant | backend | top-1 agree % | unknown agree % (changed) | refitted % | INT8/FP32 | s |\n"
          "|---|---|---|---|---|---|---|", flush=True)
    for (name, backend, _, figures, seconds), ratio in zip(rows, ratios, strict=True):
        print(f"| {name} | {backend} | {figures[0]:.1f} | {figures[1]:.1f} ({figures[3]}) | "
              f"{figures[2]:.1f} | {ratio:.2f} | {seconds:.0f} |")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


def quantised_ort(fp32: Path, name: str, work: Path, calibration: Any, preprocess: Any) -> tuple[str, Path]:
    """(backend, model file) of variant `name`, quantised from `fp32` on `calibration` as export does."""
    from dataclasses import replace

    if name in OPENVINO_VARIANTS:
        from edgecnn.export.openvino import RECIPES, quantize_openvino

        xml = work / f"{name}.xml"
        recipe = RECIPES[OPENVINO_VARIANTS.index(name)]
        return "openvino", quantize_openvino(fp32, xml, calibration, preprocess, recipe, 1)[0]
    import onnx
    from edgecnn.export.quantize import RECIPES, head_nodes, prepare_onnx, quantize_onnx

    prepared = work / "prepared.onnx"
    if not prepared.exists():
        prepare_onnx(fp32, work)
    changes = dict(ORT_VARIANTS[name])
    if changes.pop("float_conv_head", False):  # the last conv and its activation too: a fully float head
        nodes = list(onnx.load(str(prepared)).graph.node)
        last = max(i for i, node in enumerate(nodes) if node.op_type == "Conv")
        changes["float_nodes"] = tuple(node.name for node in nodes[last:last + 2])
    recipe = replace(RECIPES[0], name=name, **changes)
    assert not recipe.float_head or head_nodes(onnx.load(str(prepared)))
    onnx_path = work / f"{name}.onnx"
    return "onnxruntime", quantize_onnx(prepared, onnx_path, calibration, preprocess, recipe, 1)[0]


def outputs(predict: Any, score: Any, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, unknown_score output) of every frame, one at a time (as the camera feeds them)."""
    one = [frames[i:i + 1] for i in range(len(frames))]
    return np.concatenate([predict(f) for f in one]), np.concatenate([score(f) for f in one]).reshape(-1)


def agreement(reference: tuple[np.ndarray, np.ndarray], got: tuple[np.ndarray, np.ndarray],
              threshold: float) -> tuple[float, float, float, int]:
    """(top-1 agreement %, unknown-decision agreement % at FP32's threshold, the same at a threshold
    refitted on the INT8 scores to accept as many images as FP32's, decisions changed at FP32's)."""
    top1 = 100.0 * float(np.mean(reference[0].argmax(1) == got[0].argmax(1)))
    unknown32, scores8 = reference[1] > threshold, got[1]
    changed = int(np.sum(unknown32 != (scores8 > threshold)))
    accepted = int(np.sum(~unknown32))
    refit = np.sort(scores8)[accepted - 1] if 0 < accepted < len(scores8) else threshold
    refitted = 100.0 * float(np.mean(unknown32 == (scores8 > refit)))
    return top1, 100.0 * (1 - changed / len(scores8)), refitted, changed


def row_text(figures: tuple[float, float, float, int]) -> str:
    return (f"top-1 {figures[0]:5.1f} %, unknown {figures[1]:5.1f} % ({figures[3]} changed), "
            f"refitted {figures[2]:5.1f} %")


def interleaved_ratios(parents: dict[str, Any], models: list[tuple[str, Any]], frame: np.ndarray,
                       rounds: int = 5, runs: int = 10) -> list[float]:
    """INT8/FP32 batch-1 latency of each model against its backend's FP32 parent: rounds of every model
    in turn (parents included), each model's median over the rounds, so a busy machine slows all alike."""
    from edgecnn.export.checks import median_latency_ms

    everyone = list(parents.values()) + [predict for _, predict in models]
    table = [[median_latency_ms(p, frame, runs, 0.5) for p in everyone] for _ in range(rounds)]
    medians = [float(np.median(column)) for column in zip(*table, strict=True)]
    base = dict(zip(parents, medians, strict=False))
    return [ms / base[backend] for (backend, _), ms in zip(models, medians[len(parents):], strict=True)]


if __name__ == "__main__":
    main()
