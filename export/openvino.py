"""ONNX -> OpenVINO IR (FP16-compressed weights) and its INT8 version quantised with NNCF.

Both start from the slimmed FP32 ONNX, so every backend runs the same graph. NNCF calibrates on
the same images as ONNX Runtime's quantiser; `fast_bias_correction=False` raised INT8/FP32
agreement noticeably for a few seconds more.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgecnn.export.images import ImageSet, batches
from edgecnn.runtime.metadata import Preprocess
from edgecnn.runtime.outputs import AtomicPath


def convert_openvino(onnx_path: Path, xml_path: Path) -> Path:
    """Save the ONNX model as IR with FP16-compressed weights (half the file; CPU decompresses to f32)."""
    import openvino as ov

    xml_path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml_path), compress_to_fp16=True)
    return xml_path


class _Calibration:
    """Re-iterable stream of fitted batches: NNCF walks the data more than once (statistics, bias)."""

    def __init__(self, images: ImageSet, preprocess: Preprocess, batch: int) -> None:
        self.images, self.preprocess, self.batch = images, preprocess, batch

    def __iter__(self) -> Iterator[Any]:
        return (frames for frames, _ in batches(self.images, self.preprocess, self.batch))

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch)


def quantize_openvino(onnx_path: Path, xml_path: Path, images: ImageSet, preprocess: Preprocess,
                      batch: int | None = None) -> Path:
    """NNCF post-training INT8 of the FP32 model, saved as IR at `xml_path`."""
    import logging

    # nncf imports torch, whose C++-extension helper warns about CUDA on CPU-only machines: noise here.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    import nncf  # imports torch: export side only, never the runtime
    import openvino as ov

    calibration = _Calibration(images, preprocess, batch or 1)
    model = ov.convert_model(str(onnx_path))
    quantized = nncf.quantize(model, nncf.Dataset(calibration), subset_size=len(calibration),
                              fast_bias_correction=False)
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(xml_path))
    return xml_path


def save_ir(model: Any, xml_path: Path) -> None:
    """Re-save an IR read from disk (weights already compressed) via temporary names, then rename."""
    import openvino as ov

    with AtomicPath(xml_path, also=(".bin",)) as temp:
        ov.save_model(model, str(temp), compress_to_fp16=False)
