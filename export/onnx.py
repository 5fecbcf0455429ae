"""PyTorch -> ONNX: one graph that takes uint8 NHWC RGB images and returns class probabilities.

The layout change, normalisation and softmax are folded into the graph so the runtime feeds
`fit_frame` output straight in. With an unknown detector (edgecnn/unknown.py) the graph has a second
output, `unknown_score` (one float per image, higher = more likely none of the labels), computed from
the pooled features and logits by nodes named /unknown_detector/... (kept in float by the quantisers).
The legacy (TorchScript) exporter is used: it writes one file and traces a dynamic batch from a
batch-1 example; timm's TF-"same" padding traces into a large
Shape/Ceil/Pad subgraph that onnxslim folds away (bit-identical output) before anything else runs.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.metadata import Preprocess
from edgecnn.runtime.core.outputs import AtomicPath

if TYPE_CHECKING:
    import onnx
    import torch

INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"
UNKNOWN_OUTPUT = "unknown_score"
MIN_OPSET, MAX_OPSET = 13, 20  # legacy exporter range this pipeline is tested with (Softmax-13 onward)


def check_opset(opset: int) -> None:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise EdgecnnError(f"unsupported opset {opset}; choose one from {MIN_OPSET} to {MAX_OPSET} "
                           "(default 17)")


def deployable(model: torch.nn.Module, preprocess: Preprocess, unknown: torch.nn.Module | None = None
               ) -> torch.nn.Module:
    """Wrap a classifier to take uint8 NHWC RGB and return probabilities (as every bundle model does),
    and with `unknown` (an `edgecnn.unknown.score_module`) also the unknown score of each image."""
    import torch

    class Deployable(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model.eval()
            self.unknown_detector = unknown.eval() if unknown is not None else None
            # Pixel scale: (x/255 - mean)/std == (x - 255*mean) * 1/(255*std)
            shift = torch.tensor([255.0 * m for m in preprocess.mean]).view(1, 3, 1, 1)
            scale = torch.tensor([1.0 / (255.0 * s) for s in preprocess.std]).view(1, 3, 1, 1)
            self.register_buffer("shift", shift)
            self.register_buffer("scale", scale)

        def forward(self, images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
            pixels = images.permute(0, 3, 1, 2).float()
            normalised = (pixels - self.shift) * self.scale
            if self.unknown_detector is None:
                return torch.softmax(self.model(normalised), dim=1)
            pooled = self.model.forward_head(self.model.forward_features(normalised), pre_logits=True)
            logits = self.model.get_classifier()(pooled)
            return torch.softmax(logits, dim=1), self.unknown_detector(pooled, logits)

    return Deployable().eval()


def export_onnx(wrapped: torch.nn.Module, preprocess: Preprocess, path: Path, opset: int = 17,
                batch: int | None = None) -> Path:
    """Trace `wrapped` (see `deployable`) to a single, slimmed ONNX file at `path`."""
    import onnx
    import torch

    check_opset(opset)
    height, width = preprocess.input_size
    example = torch.zeros((batch or 1, height, width, 3), dtype=torch.uint8)
    has_unknown = getattr(wrapped, "unknown_detector", None) is not None
    outputs = [OUTPUT_NAME] + ([UNKNOWN_OUTPUT] if has_unknown else [])
    dynamic = None if batch else {name: {0: "batch"} for name in (INPUT_NAME, *outputs)}
    raw = path.with_name(f".{path.name}.raw")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter is chosen on purpose
            torch.onnx.export(wrapped, (example,), str(raw), input_names=[INPUT_NAME],
                              output_names=outputs, dynamic_axes=dynamic, opset_version=opset,
                              do_constant_folding=True, dynamo=False)
        model = slim(onnx.load(str(raw)))
    finally:
        raw.unlink(missing_ok=True)
    save_onnx(model, path)
    return path


def slim(model: onnx.ModelProto) -> onnx.ModelProto:
    """Fold the constant shape arithmetic of TF-"same" padding (~600 nodes -> ~100)."""
    import onnxslim

    return onnxslim.slim(model)


def save_onnx(model: onnx.ModelProto, path: Path) -> Path:
    """Save as one self-contained file, via a temporary name in the same folder."""
    import onnx

    with AtomicPath(path) as temp:
        onnx.save_model(model, str(temp), save_as_external_data=False)
    return path
