"""INT8 ONNX with ONNX Runtime's static quantiser: QDQ, per-channel weights, streamed calibration.

Measured on EfficientNet-Lite0: per-channel weights are essential (per-tensor lost ~30 pt of
agreement); the folded input preprocessing (Transpose/Cast/Sub/Mul) must stay FP32 or INT8 is no
faster than FP32; the first convolution kept in float lowers the KL divergence from FP32 by a quarter
for no measurable latency (its 3-channel input quantises poorly per tensor). Which calibration wins
(MinMax, or Percentile 99.99 at ~4x the time) depends on the model, so export tries both (`RECIPES`).
If no recipe passes the gate, `harmful_nodes` names the nodes whose quantisation costs the most
signal-to-noise and the fallback keeps the worst few of them in float.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgecnn.export.images import ImageSet, batches
from edgecnn.export.onnx import INPUT_NAME, save_onnx
from edgecnn.export.search import CannotCalibrate
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.metadata import Preprocess

if TYPE_CHECKING:
    import onnx

CALIBRATION_METHODS = ("auto", "minmax", "entropy", "percentile")
# Ops kept in float: the final Softmax (tiny, and INT8 probabilities would be coarse).
FLOAT_OPS = frozenset({"Softmax"})
# The unknown detector's tail (export/onnx.py): a few small matmuls whose distances INT8 would blur.
FLOAT_SCOPE = "/unknown_detector/"
# Batches per histogram update for Percentile/Entropy. ORT's histogram calibrators keep every activation
# of every image they are given until they build the histograms: ~65 MB per 224x224 Lite0 image, so the
# default 300 calibration images would peak near 20 GB (measured: 2.8 / 4.9 / 6.9 GB at 32 / 64 / 96).
HISTOGRAM_STRIDE = 16


@dataclass(frozen=True)
class OnnxRecipe:
    """One way to run `quantize_static`."""

    name: str
    method: str = "minmax"  # minmax | entropy | percentile
    float_first_conv: bool = True
    float_nodes: tuple[str, ...] = ()  # more node names kept in float (the fallback's, or a caller's)
    activations: str = "uint8"  # uint8 (asymmetric, U8S8) | int8 (symmetric, S8S8: ORT's advice without VNNI)
    per_channel: bool = True
    reduce_range: bool = False  # 7-bit weights: ORT's advice against U8S8 saturation on AVX2 without VNNI
    float_head: bool = False  # every node after the global pooling (classifier, softmax, unknown score) float


# uint8: asymmetric activations (U8S8); int8: symmetric (S8S8), ORT's advice for CPUs without VNNI
ACTIVATION_TYPES = {"uint8": lambda types: types.QUInt8, "int8": lambda types: types.QInt8}

RECIPES = (OnnxRecipe("minmax, first conv float"),
           OnnxRecipe("percentile 99.99, first conv float", "percentile"))


def recipes(method: str) -> tuple[OnnxRecipe, ...]:
    """The recipes `--calibration-method` asks for: all of `RECIPES` for auto, else that method."""
    check_method(method)
    if method == "auto":
        return RECIPES
    return (OnnxRecipe(f"{method}, first conv float", method),
            OnnxRecipe(method, method, float_first_conv=False))


def fallback_recipes(method: str) -> tuple[OnnxRecipe, ...]:
    """What export runs when no recipe of `method` can calibrate on the images (a histogram method on
    near-identical images): minmax, which has no such limit, named so the report says why."""
    if check_method(method) in ("auto", "minmax"):
        return ()
    return (OnnxRecipe(f"minmax, first conv float (fallback: {method} cannot calibrate on these images)"),)


def check_method(method: str) -> str:
    if method not in CALIBRATION_METHODS:
        choices = ", ".join(CALIBRATION_METHODS)
        raise EdgecnnError(f"unknown calibration method {method!r}; choose from {choices}")
    return method


def calibration_reader(images: ImageSet, preprocess: Preprocess, batch: int):
    """A CalibrationDataReader that decodes and fits one batch at a time (never all images in memory)."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.stream = batches(images, preprocess, batch)

        def get_next(self) -> dict | None:
            item = next(self.stream, None)
            return None if item is None else {INPUT_NAME: item[0]}

        def rewind(self) -> None:
            self.stream = batches(images, preprocess, batch)

    return Reader()


def ranged_reader(images: ImageSet, preprocess: Preprocess, batch: int, stride: int):
    """A CalibrationDataReader for ORT's strided calibration (`CalibStridedMinMax`): ORT feeds the
    calibrator `stride` batches at a time through `set_range`, so a histogram calibrator holds only
    those batches' activations. The fitted batches are kept (300 x 224x224x3 uint8 = 45 MB); `len` is
    their count rounded up to a multiple of `stride` (ORT insists on one), and the last range simply
    ends at the last batch, which it always reaches."""
    from onnxruntime.quantization import CalibrationDataReader

    fitted = [frames for frames, _ in batches(images, preprocess, batch)]
    if not fitted:
        raise EdgecnnError("none of the calibration images could be read; pass --calibration DIR with images")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.start, self.end = 0, len(fitted)

        def __len__(self) -> int:
            return -(-len(fitted) // stride) * stride

        def set_range(self, start_index: int, end_index: int) -> None:
            self.start, self.end = start_index, min(end_index, len(fitted))

        def get_next(self) -> dict | None:
            if self.start >= self.end:
                return None
            self.start += 1
            return {INPUT_NAME: fitted[self.start - 1]}

    return Reader()


def float_nodes(model: onnx.ModelProto, first_conv: bool = False, head: bool = False) -> list[str]:
    """Names of the nodes to keep in FP32: everything before the first Conv (the folded
    Transpose/Cast/Sub/Mul/Div preprocessing), optionally that Conv, the final Softmax and the unknown
    detector's nodes, and with `head` every node after the last global pooling."""
    names: list[str] = head_nodes(model) if head else []
    for index, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"edgecnn_pre_{index}"
        if node.op_type == "Conv":
            names += [node.name] if first_conv else []
            break
        names.append(node.name)
    names += [node.name for node in model.graph.node if node.name not in names
              and node.name and (node.op_type in FLOAT_OPS or node.name.startswith(FLOAT_SCOPE))]
    return names


def head_nodes(model: onnx.ModelProto) -> list[str]:
    """The nodes after the last GlobalAveragePool (Flatten, the classifier Gemm, ...), in graph order: the
    float unknown head, whose pooled input is the one tensor INT8 still rounds."""
    nodes = list(model.graph.node)
    pools = [i for i, node in enumerate(nodes) if node.op_type == "GlobalAveragePool"]
    return [node.name for node in nodes[pools[-1] + 1:] if node.name] if pools else []


def prepare_onnx(fp32: Path, work: Path) -> Path:
    """Shape inference + graph optimisation, what ORT's docs ask for before quantize_static (done once)."""
    import onnx
    from onnxruntime.quantization import quant_pre_process

    prepared = work / "prepared.onnx"
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=False)
    model = onnx.load(str(prepared))
    float_nodes(model)  # names the unnamed preprocessing nodes, so they can be excluded by name
    onnx.save_model(model, str(prepared))
    return prepared


def quantize_onnx(prepared: Path, out: Path, images: ImageSet, preprocess: Preprocess, recipe: OnnxRecipe,
                  batch: int | None = None) -> tuple[Path, tuple[str, ...]]:
    """Write the INT8 (QDQ) version of the prepared FP32 model to `out`, calibrated on `images`.
    Returns the file and the nodes kept in float beyond preprocessing and softmax."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    calibrate = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                 "percentile": CalibrationMethod.Percentile}[recipe.method]
    model = onnx.load(str(prepared))
    always = set(float_nodes(model))
    excluded = float_nodes(model, recipe.float_first_conv, recipe.float_head)
    excluded += [name for name in recipe.float_nodes if name not in excluded]
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".quantize-") as work:
        quantized = Path(work) / "int8.onnx"
        extra: dict[str, object] = {"OpTypesToExcludeOutputQuantization": ["Gemm", "MatMul"],
                                    "CalibPercentile": 99.99}
        reader = calibration_reader(images, preprocess, batch or 1)
        # MinMax needs no strides: ORT reduces each tensor to its min and max in the graph (0.86 GB peak)
        if recipe.method != "minmax":
            extra["CalibStridedMinMax"] = HISTOGRAM_STRIDE
            reader = ranged_reader(images, preprocess, batch or 1, HISTOGRAM_STRIDE)
        with contextlib.redirect_stdout(io.StringIO()), _histograms_checked(recipe):
            quantize_static(  # (ORT prints its histogram chatter)
                str(prepared), str(quantized), reader,
                quant_format=QuantFormat.QDQ, per_channel=recipe.per_channel,
                reduce_range=recipe.reduce_range,
                activation_type=ACTIVATION_TYPES[recipe.activations](QuantType), weight_type=QuantType.QInt8,
                nodes_to_exclude=excluded, calibrate_method=calibrate,
                calibration_providers=["CPUExecutionProvider"],
                # Float logits: uint8 logits would make the probabilities coarse for a tiny saving;
                # Percentile 99.99 rather than ORT's 99.999, which clipped too little to help here.
                extra_options=extra,
            )
        save_onnx(onnx.load(str(quantized)), out)
    return out, tuple(n for n in excluded if n not in always)


@contextlib.contextmanager
def _histograms_checked(recipe: OnnxRecipe):
    """ORT's histogram calibrators ask numpy for 2048 float32 bins over each activation's first range; an
    activation whose values there span fewer float32 steps (near-identical images, a nearly flat channel)
    makes numpy raise "Too many bins for data range". That recipe cannot run here: the search skips it."""
    try:
        yield
    except ValueError as exc:
        if recipe.method == "minmax" or "finite-sized bins" not in str(exc):
            raise
        raise CannotCalibrate(f"{recipe.method} calibration cannot build its histograms: an activation's "
                              "range on these images is narrower than 2048 float32 steps (near-identical "
                              "images?); minmax calibration has no such limit") from exc


def harmful_nodes(prepared: Path, quantized: Path, images: ImageSet, preprocess: Preprocess,
                  skip: Sequence[str] = (), limit: int = 16) -> list[str]:
    """Quantised nodes ordered by the signal-to-noise they cost (SQNR of their input minus that of their
    output, INT8 model against FP32, via ORT's qdq_loss_debug), worst first."""
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    sample = images.subset(8)
    with tempfile.TemporaryDirectory(dir=quantized.parent, prefix=".sensitivity-") as work:
        float_aug, int8_aug = Path(work) / "float.onnx", Path(work) / "int8.onnx"
        modify_model_output_intermediate_tensors(str(prepared), str(float_aug))
        modify_model_output_intermediate_tensors(str(quantized), str(int8_aug))
        errors = compute_activation_error(create_activation_matching(
            collect_activations(str(int8_aug), calibration_reader(sample, preprocess, 1)),
            collect_activations(str(float_aug), calibration_reader(sample, preprocess, 1))))
    # SQNR in dB, capped: a tensor still exact in INT8 (float so far) reads as infinite.
    sqnr = {name: min(float(figures["xmodel_err"]), 100.0) for name, figures in errors.items()
            if "xmodel_err" in figures}
    cost = {}
    for node in onnx.load(str(prepared)).graph.node:
        inputs = [sqnr[i] for i in node.input if i in sqnr]
        if node.name in skip or not inputs or node.output[0] not in sqnr:
            continue
        cost[node.name] = min(inputs) - sqnr[node.output[0]]
    return sorted(cost, key=cost.get, reverse=True)[:limit]
