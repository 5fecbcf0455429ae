"""What is exported: a fine-tuned checkpoint or the ImageNet-1k classifier, with its images.

A checkpoint brings its own labels, preprocessing and data split (calibrate on train, validate on
val); the pretrained classifier has 1000 labels but no labelled images here, so it is calibrated and
validated on `--calibration DIR` (default: the sample photos) and its accuracy is agreement with PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgecnn.export.images import ImageSet, folder_images, split_images
from edgecnn.runtime.errors import EdgecnnError
from edgecnn.runtime.metadata import Preprocess

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

    @property
    def labelled(self) -> bool:
        return self.validation.targets is not None


def default_calibration() -> Path | None:
    """The sample photos, from the working folder or beside the package source."""
    for folder in (Path("samples/photos"), SAMPLE_PHOTOS):
        if folder.is_dir():
            return folder
    return None


def checkpoint_source(path: Path, calibration: Path | None, calibration_size: int) -> Source:
    from edgecnn.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(path)
    calibration_images = (folder_images(calibration) if calibration is not None
                          else split_images(checkpoint.split, "train", checkpoint.labels))
    return Source(
        model=checkpoint.build_model(), arch=checkpoint.arch, labels=tuple(checkpoint.labels),
        preprocess=_in_graph(checkpoint.preprocess), calibration=calibration_images.subset(calibration_size),
        validation=split_images(checkpoint.split, "val", checkpoint.labels),
        description=f"checkpoint {path} (epoch {checkpoint.epoch})",
    )


def pretrained_source(arch: str, calibration: Path | None, calibration_size: int) -> Source:
    from edgecnn.models import build_model, imagenet_labels

    folder = calibration or default_calibration()
    if folder is None:
        raise EdgecnnError("--pretrained calibrates and checks on samples/photos of the edgecnn clone by "
                           "default, and there is none here: pass --calibration DIR (100-300 photos like "
                           "the ones the model will see)")
    images = folder_images(folder)
    built = build_model(arch, num_classes=1000, pretrained=True)
    return Source(
        model=built.model.eval(), arch=arch, labels=tuple(imagenet_labels()),
        preprocess=_in_graph(built.preprocess), calibration=images.subset(calibration_size),
        validation=images.subset(VALIDATION_CAP),
        description=f"{arch} pretrained on {built.pretrained}; checked on unlabelled {folder}",
    )


def check_calibration_folder(folder: Path) -> None:
    """Fail before any work when `--calibration` has no readable image."""
    folder_images(folder)


def _in_graph(preprocess: Preprocess) -> Preprocess:
    """Bundle models take uint8 NHWC RGB: normalisation and layout are inside the graph."""
    return replace(preprocess, layout="NHWC", color_order="RGB", normalize_in_graph=True)
