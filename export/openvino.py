"""ONNX -> OpenVINO IR (FP16-compressed weights) and its INT8 version quantised with NNCF.

Both start from the slimmed FP32 ONNX, so every backend runs the same graph. NNCF calibrates on
the same images as ONNX Runtime's quantiser; `fast_bias_correction=False` raised INT8/FP32
agreement noticeably for a few seconds more. On the ImageNet EfficientNet-Lite0 (121 sample photos),
keeping the first convolution in float cut the mean KL divergence from FP32 from 0.029 to 0.007 (top-5 overlap
91 -> 94.5 %), and the first depthwise convolution too to 0.004 (96.7 %, top-1 agreement 97.5 %);
preset MIXED, fast bias correction and a float classifier were no better.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn.export.images import ImageSet, batches
from edgecnn.runtime.core.backends.openvino import import_openvino
from edgecnn.runtime.core.metadata import Preprocess
from edgecnn.runtime.core.outputs import AtomicPath


def convert_openvino(onnx_path: Path, xml_path: Path) -> Path:
    """Save the ONNX model as IR with FP16-compressed weights (half the file; CPU decompresses to f32)."""
    ov = import_openvino()

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


@dataclass(frozen=True)
class NncfRecipe:
    """One way to run `nncf.quantize` (preset PERFORMANCE, full bias correction)."""

    name: str
    float_first_conv: bool = True
    float_first_depthwise: bool = False
    float_classifier: bool = False
    float_nodes: tuple[str, ...] = ()  # ONNX node names kept in float (a caller's tail, e.g.)


RECIPES = (NncfRecipe("first conv + first depthwise conv float", float_first_depthwise=True),
           NncfRecipe("first conv float"))


def _nncf() -> Any:
    import logging

    # nncf imports torch, whose C++-extension helper warns about CUDA on CPU-only machines: noise here.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    logging.getLogger("nncf").setLevel(logging.WARNING)
    import_openvino()  # before nncf makes its telemetry object
    import nncf  # imports torch: export side only, never the runtime

    return nncf


def _ignored(model: Any, recipe: NncfRecipe) -> tuple[Any, tuple[str, ...]]:
    """The IgnoredScope for `recipe` on this IR, and the names it keeps in float."""
    from edgecnn.export.onnx import UNKNOWN_OUTPUT
    from edgecnn.export.quantize import FLOAT_SCOPE

    nncf = _nncf()
    ops = list(model.get_ordered_ops())
    names: list[str] = []
    if recipe.float_first_conv:
        names += [o.get_friendly_name() for o in ops if o.get_type_name() == "Convolution"][:1]
    if recipe.float_first_depthwise:
        names += [o.get_friendly_name() for o in ops if o.get_type_name() == "GroupConvolution"][:1]
    if recipe.float_classifier:
        names += [o.get_friendly_name() for o in ops if o.get_type_name() == "MatMul"
                  and not o.get_friendly_name().startswith(FLOAT_SCOPE)][-1:]  # the classifier's
    # the detector's last op takes the output's name (unknown_score), not /unknown_detector/...: named here,
    # or NNCF quantises its inputs to 256 levels (a summed rule's score moved by up to 1.7, 98 % agreement)
    detector_end = [output.get_node().input_value(0).get_node().get_friendly_name()
                    for output in model.outputs if UNKNOWN_OUTPUT in output.get_names()]
    # OpenVINO keeps ONNX node names as the prefix of its own op names.
    patterns = [re.escape(name) + "(/.*)?$" for name in recipe.float_nodes]
    patterns.append(re.escape(FLOAT_SCOPE) + ".*")  # the unknown detector's tail stays float, as in ONNX
    return (nncf.IgnoredScope(names=[*names, *detector_end], patterns=patterns, validate=False),
            (*names, *recipe.float_nodes))


def quantize_openvino(onnx_path: Path, xml_path: Path, images: ImageSet, preprocess: Preprocess,
                      recipe: NncfRecipe = RECIPES[0],
                      batch: int | None = None) -> tuple[Path, tuple[str, ...]]:
    """NNCF post-training INT8 of the FP32 model, saved as IR at `xml_path`; also the ops kept in float."""
    nncf = _nncf()
    ov = import_openvino()

    calibration = _Calibration(images, preprocess, batch or 1)
    model = ov.convert_model(str(onnx_path))
    ignored, floats = _ignored(model, recipe)
    quantized = nncf.quantize(model, nncf.Dataset(calibration), subset_size=len(calibration),
                              fast_bias_correction=False, ignored_scope=ignored)
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(xml_path))
    return xml_path, floats


def quantize_openvino_controlled(onnx_path: Path, xml_path: Path, images: ImageSet, validation: ImageSet,
                                 preprocess: Preprocess, recipe: NncfRecipe, passes: Callable[[Any], bool],
                                 batch: int | None = None) -> tuple[Path, tuple[str, ...]]:
    """NNCF's accuracy-controlled quantisation: layers go back to float, most harmful first (NNCF's
    ranking on the validation images), until `passes(compiled model)` (our gate) holds."""
    nncf = _nncf()
    ov = import_openvino()
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    def validate(compiled: Any, _: Any) -> float:  # 1 when the gate passes, 0 when not
        return float(passes(compiled))

    model = ov.convert_model(str(onnx_path))
    ignored, floats = _ignored(model, recipe)
    quantized = nncf.quantize_with_accuracy_control(
        model, nncf.Dataset(_Calibration(images, preprocess, batch or 1)),
        nncf.Dataset(_Calibration(validation, preprocess, batch or 1)), validate, max_drop=0.5,
        subset_size=len(images), fast_bias_correction=False, ignored_scope=ignored,
        advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(max_num_iterations=8))
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(xml_path))
    return xml_path, tuple(dict.fromkeys([*floats, *float_layers(quantized)]))


def float_layers(model: Any) -> list[str]:
    """Convolutions and matrix products of an INT8 IR whose input is not quantised (run in float)."""
    kinds = ("Convolution", "GroupConvolution", "MatMul")
    return [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() in kinds
            and op.input_value(0).get_node().get_type_name() != "FakeQuantize"]


def save_ir(model: Any, xml_path: Path) -> None:
    """Re-save an IR read from disk (weights already compressed) via temporary names, then rename."""
    ov = import_openvino()

    with AtomicPath(xml_path, also=(".bin",)) as temp:
        ov.save_model(model, str(temp), compress_to_fp16=False)
