"""Which images export calibrates and validates on, streamed and fitted exactly like the runtime does.

Calibration images come from the checkpoint's training split (or `--calibration DIR`), validation
images from its validation split; every image goes through `read_image` + `fit_frame`, so the
models are checked on the pixels they will see in deployment. Nothing holds all images in memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.images import is_readable, iter_image_files, read_image
from edgecnn.runtime.core.metadata import Preprocess
from edgecnn.runtime.core.preprocess import fit_frame

if TYPE_CHECKING:
    from edgecnn.runtime.core.bundle import RunSplit

    from edgecnn.checkpoint import CheckpointSplit


@dataclass(frozen=True)
class ImageSet:
    """Image files plus, when known, the class index of each (None: unlabelled)."""

    paths: tuple[Path, ...]
    targets: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, count: int) -> ImageSet:
        """`count` images spread evenly over the set (sorted by class folder, so every class shows up)."""
        if count >= len(self.paths):
            return self
        picks = np.linspace(0, len(self.paths) - 1, count).round().astype(int)
        targets = None if self.targets is None else tuple(self.targets[i] for i in picks)
        return ImageSet(tuple(self.paths[i] for i in picks), targets)


def split_images(split: CheckpointSplit | RunSplit | None, part: str, labels: Sequence[str]) -> ImageSet:
    """The `part` ("train" or "val") of a checkpoint's (or bundle's) split, labelled when the classes are
    known."""
    relative = [Path(p) for p in getattr(split, part, ())]
    if split is None or not relative:
        raise EdgecnnError(f"the checkpoint records no {part} images; pass --calibration DIR with images")
    paths = tuple(Path(split.data_root) / rel for rel in relative)
    missing = [p for p in paths if not p.is_file()]
    if len(missing) == len(paths):
        raise EdgecnnError(f"the checkpoint's {part} images are gone (e.g. {missing[0]}); "
                           "restore the data folder or pass --calibration DIR")
    recorded = getattr(split, f"{part}_labels", None)
    if recorded is not None:  # class indices recorded by `edgecnn finetune`
        targets = tuple(recorded)
    else:  # otherwise a file's class is its folder name
        index = {label: i for i, label in enumerate(labels)}
        targets = tuple(index.get(p.parent.name, -1) for p in paths)
    if len(targets) != len(paths) or -1 in targets:
        return ImageSet(paths)
    return ImageSet(paths, targets)


def folder_images(folder: Path) -> ImageSet:
    """Every readable-looking image under `folder` (unlabelled); EdgecnnError when there is none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EdgecnnError(f"calibration folder {folder} does not exist; give a folder of images")
    paths = tuple(iter_image_files(folder))
    if not any(is_readable(p) for p in paths):
        raise EdgecnnError(f"calibration folder {folder} has no readable images "
                           f"(.jpg, .png, ...); give a folder of photos like the ones the model will see")
    return ImageSet(paths)


def fitted_images(images: ImageSet, preprocess: Preprocess) -> Iterator[tuple[np.ndarray, int]]:
    """(HxWx3 uint8 fitted image, class index or -1) for each readable image, one at a time."""
    targets = images.targets or (-1,) * len(images.paths)
    for path, target in zip(images.paths, targets, strict=True):
        try:
            yield fit_frame(read_image(path), preprocess), target
        except EdgecnnError:
            continue  # a damaged file is skipped, as training skipped it


def batches(images: ImageSet, preprocess: Preprocess, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Batches of `size` fitted images and their targets; the last is padded by repeating its final image
    (targets -2 mark padding) so models with a fixed batch size can run it."""
    frames: list[np.ndarray] = []
    targets: list[int] = []
    for frame, target in fitted_images(images, preprocess):
        frames.append(frame)
        targets.append(target)
        if len(frames) == size:
            yield np.stack(frames), np.array(targets)
            frames, targets = [], []
    if frames:
        pad = size - len(frames)
        yield np.stack(frames + [frames[-1]] * pad), np.array(targets + [-2] * pad)
