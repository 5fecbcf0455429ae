"""How NNCF settings move an exported model's unknown score: OpenVINO INT8 variants of a bundle's FP32
model, each scored against that FP32 model on several image sets (decision agreement, median shift).

    python benchmarks/unknown_int8_variants.py bundles/tour --images samples/photos \\
        --images /work/wt/shared-data/second --video samples/videos/box.mp4 --video samples/videos/cup.mp4

Each variant quantises the bundle's model.onnx on its checkpoint's training images (as `edgecnn export
--int8` does, recipe "first conv + first depthwise conv float", the detector in float) and changes one
thing: a float conv head, NNCF's MIXED preset, min-max or mean-quantile activation ranges, no bias
correction, or a calibration set tripled by a low-contrast brighter and a darker copy of each image.
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
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated, of: " + ", ".join(VARIANTS))
    args = parser.parse_args()
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

if __name__ == "__main__":
    main()
