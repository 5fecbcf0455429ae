"""What is exported: a fine-tuned checkpoint or the ImageNet-1k classifier, with its images.

A checkpoint brings its own labels, preprocessing, data split (calibrate on train, validate on val) and
unknown detector; the pretrained classifier has 1000 labels but no labelled images here, so it is
calibrated and validated on `--calibration DIR` (default: the sample photos), its accuracy is agreement
with PyTorch, and its unknown score is 1 - max softmax with the threshold that accepts `accept_rate`
of the calibration images (a confidence floor: it flags images the ImageNet model is unsure about).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgecnn.export.images import ImageSet, folder_images, split_images
from edgecnn.runtime.core.bundle import RunSplit
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.metadata import Preprocess

VALIDATION_CAP = 1000  # images; an unlabelled folder is subsampled evenly beyond this
SAMPLE_PHOTOS = Path(__file__).resolve().parent.parent / "samples" / "photos"


@dataclass(frozen=True)
class Source:
    """A classifier ready to export, and the images to calibrate and validate it on."""

    model: Any  # torch.nn.Module in eval mode, taking normalised NCHW floats
    arch: str
    labels: tuple[str, ...]
    preprocess: Preprocess
    calibration: ImageSet
    validation: ImageSet
    description: str  # where the model came from, in words
    detector: Any = None  # edgecnn.unknown.Detector; None: no unknown_score output (older checkpoints)
    split: RunSplit | None = None  # the checkpoint's train/val images, recorded in the bundle for eval

    @property
    def labelled(self) -> bool:
        return self.validation.targets is not None


def default_calibration() -> Path | None:
    """The sample photos, from the working folder or beside the package source."""
    for folder in (Path("samples/photos"), SAMPLE_PHOTOS):
        if folder.is_dir():
            return folder
    return None


def checkpoint_source(path: Path, calibration: Path | None, calibration_size: int, imgsz: int = 0) -> Source:
    from edgecnn.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(path)
    height, width = checkpoint.preprocess.input_size
    if imgsz and (imgsz, imgsz) != (height, width):  # its weights, head and unknown threshold fit that size
        raise EdgecnnError(f"--imgsz {imgsz}: {path} was fine-tuned at {height}x{width} and exports at that "
                           f"size; drop --imgsz, or fine-tune again with --imgsz {imgsz}")
    calibration_images = (folder_images(calibration) if calibration is not None
                          else split_images(checkpoint.split, "train", checkpoint.labels))
    return Source(
        model=checkpoint.build_model(), arch=checkpoint.arch, labels=tuple(checkpoint.labels),
        preprocess=bundle_preprocess(checkpoint.preprocess),
        calibration=calibration_images.subset(calibration_size),
        validation=split_images(checkpoint.split, "val", checkpoint.labels),
        description=f"checkpoint {path} (epoch {checkpoint.epoch})",
        detector=checkpoint.unknown,
        split=checkpoint.split.run_split() if checkpoint.split is not None else None,
    )


def pretrained_source(arch: str, calibration: Path | None, calibration_size: int,
                      accept_rate: float = 0.95, imgsz: int = 0) -> Source:
    from edgecnn.models import build_model, imagenet_labels, sized

    folder = calibration or default_calibration()
    if folder is None:
        raise EdgecnnError("--pretrained calibrates and checks on samples/photos of the edgecnn clone by "
                           "default, and there is none here: pass --calibration DIR (100-300 photos like "
                           "the ones the model will see)")
    images = folder_images(folder)
    built = build_model(arch, num_classes=1000, pretrained=True)
    preprocess = bundle_preprocess(sized(built, imgsz) if imgsz else built.preprocess)
    calibration_images = images.subset(calibration_size)
    return Source(
        model=built.model.eval(), arch=arch, labels=tuple(imagenet_labels()),
        preprocess=preprocess, calibration=calibration_images,
        validation=images.subset(VALIDATION_CAP),
        description=f"{arch} pretrained on {built.pretrained}; checked on unlabelled {folder}",
        detector=confidence_detector(built.model.eval(), preprocess, calibration_images, accept_rate),
    )


def confidence_detector(model: Any, preprocess: Preprocess, images: ImageSet, accept_rate: float) -> Any:
    """1 - max softmax, its threshold accepting `accept_rate` of `images` (unlabelled, any classes)."""
    import torch
    from edgecnn.export.images import batches
    from edgecnn.export.onnx import deployable

    from edgecnn.unknown import Detector

    wrapped = deployable(model, preprocess)
    scores = []
    with torch.inference_mode():
        for frames, targets in batches(images, preprocess, 16):
            probabilities = wrapped(torch.from_numpy(frames))[torch.from_numpy(targets != -2)]
            scores.append(1.0 - probabilities.max(dim=1).values)
    if not scores:
        raise EdgecnnError("none of the calibration images could be read; check --calibration")
    values = torch.cat(scores).double()
    return Detector("msp", float(torch.quantile(values, accept_rate)), accept_rate,
                    "calibration images (unlabelled)", len(values))


def check_calibration_folder(folder: Path) -> None:
    """Fail before any work when `--calibration` has no readable image."""
    folder_images(folder)


def bundle_preprocess(preprocess: Preprocess) -> Preprocess:
    """Bundle models (and the PyTorch reference, `deployable`) take uint8 NHWC RGB: normalisation and
    layout are inside the graph."""
    return replace(preprocess, layout="NHWC", color_order="RGB", normalize_in_graph=True)
