"""Peak memory and time of one INT8 calibration of a bundle's model.onnx (ONNX Runtime, or NNCF for
OpenVINO with export's recipe), in this process.

    python benchmarks/calibration_memory.py bundles/tour percentile 96 --images samples/photos
    python benchmarks/calibration_memory.py bundles/tour percentile 96 --stride 1000000   # ORT unstrided
    python benchmarks/calibration_memory.py bundles/tour nncf 300

Run one per process: the peak (ru_maxrss) is the process's. `--stride` sets export's HISTOGRAM_STRIDE
(batches per histogram update); a stride above the image count is ORT's own one-pass calibration. The
images repeat when the folders hold fewer than COUNT. Prints the seconds, the peak RSS and a hash of the
INT8 model (equal hashes: byte-identical models).
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("method", choices=("minmax", "percentile", "entropy", "nncf"))
    parser.add_argument("count", type=int)
    parser.add_argument("--images", type=Path, action="append", default=None)
    parser.add_argument("--stride", type=int, default=None)
    args = parser.parse_args()
    from edgecnn.export import quantize
    from edgecnn.export.images import ImageSet
    from edgecnn.runtime import load
    from edgecnn.runtime.core.images import iter_image_files

    if args.stride:
        quantize.HISTOGRAM_STRIDE = args.stride
    folders = args.images or [Path("samples/photos")]
    paths = [path for folder in folders for path in iter_image_files(folder)]
    paths = (paths * (args.count // len(paths) + 1))[:args.count]
    with load(args.bundle, backend="onnxruntime", precision="fp32") as engine:
        preprocess = engine.preprocess
    with tempfile.TemporaryDirectory() as work:
        if args.method == "nncf":
            from edgecnn.export.openvino import quantize_openvino

            start = time.perf_counter()
            out, _ = quantize_openvino(args.bundle / "model.onnx", Path(work) / "int8.xml",
                                       ImageSet(tuple(paths)), preprocess)
            report(args.method, args.count, "-", time.perf_counter() - start, out)
            return
        prepared = quantize.prepare_onnx(args.bundle / "model.onnx", Path(work))
        start = time.perf_counter()
        recipe = quantize.OnnxRecipe(args.method, args.method)
        calibration = ImageSet(tuple(paths))
        out, _ = quantize.quantize_onnx(prepared, Path(work) / "int8.onnx", calibration, preprocess, recipe)
        report(args.method, args.count, quantize.HISTOGRAM_STRIDE, time.perf_counter() - start, out)


def report(method: str, count: int, stride: object, seconds: float, model: Path) -> None:
    digest = hashlib.sha256(model.read_bytes()).hexdigest()[:12]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"{method} {count} images, stride {stride}: {seconds:.0f} s, peak RSS {peak:.2f} GB, "
          f"model {digest}")


if __name__ == "__main__":
    main()
