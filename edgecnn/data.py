"""Image folders for training: finding classes, a seeded split, decoding, skipping damaged files.

Validation images go through `fit_frame`, the very function deployment uses, so the accuracy
measured here is the accuracy the exported model shows on the same pixels.
"""

from __future__ import annotations

import logging
import os
import random
import unicodedata
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgecnn.checkpoint import CheckpointSplit
from edgecnn.errors import EdgecnnError
from edgecnn.runtime.core.images import IMAGE_SUFFIXES, image_files_and_metadata, is_readable, read_image
from edgecnn.runtime.core.metadata import Preprocess, check_labels
from edgecnn.runtime.core.preprocess import fit_frame
from edgecnn.runtime.core.terminal import visible

if TYPE_CHECKING:
    import torch
    from torch.utils.data import DataLoader, Sampler

log = logging.getLogger("edgecnn")
Transform = Callable[[np.ndarray], "torch.Tensor"]


@dataclass(frozen=True)
class DataSplit:
    """Train and validation images as paths relative to `root`, with class indices into `labels`."""

    root: Path
    labels: tuple[str, ...]
    train: tuple[tuple[str, int], ...]
    val: tuple[tuple[str, int], ...]
    skipped: tuple[str, ...] = ()  # unreadable files left out
    groups: int = 0  # near-duplicate groups the split kept whole (edgecnn/duplicates.py); 0: not grouped

    def record(self) -> CheckpointSplit:
        """The checkpoint's `split`: export calibrates on train and validates on val."""
        return CheckpointSplit(str(self.root.resolve()), tuple(p for p, _ in self.train),
                               tuple(p for p, _ in self.val), tuple(c for _, c in self.train),
                               tuple(c for _, c in self.val), self.skipped)

    @classmethod
    def from_record(cls, split: CheckpointSplit, labels: Sequence[str]) -> DataSplit:
        """The run's split back from its checkpoint (`--resume`), which must hold the class indices."""
        if split.train_labels is None or split.val_labels is None:
            raise EdgecnnError("the checkpoint records no class indices for its images; start a new run "
                               "without --resume")
        for paths, indices in ((split.train, split.train_labels), (split.val, split.val_labels)):
            if len(paths) != len(indices) or not all(0 <= index < len(labels) for index in indices):
                raise EdgecnnError(f"the checkpoint's split holds {len(paths)} images and {len(indices)} "
                                   f"class indices (of {len(labels)} classes) that do not match; start a new "
                                   "run without --resume")
        train = tuple(zip(split.train, split.train_labels, strict=True))
        val = tuple(zip(split.val, split.val_labels, strict=True))
        return cls(Path(split.data_root), tuple(labels), train, val, split.skipped)


def scan_folder(root: Path, val_split: float = 0.2, seed: int = 0) -> DataSplit:
    """Classes and images of `root` (ImageFolder layout, or train/ + val/ of that layout)."""
    try:
        return _scan(Path(root), val_split, seed)
    except OSError as error:  # a path over PATH_MAX, a folder we may not read
        where = visible(error.filename)[:80] + ("..." if len(str(error.filename)) > 80 else "")
        raise EdgecnnError(f"cannot read the data folder: {error.strerror} ({where}); give a shorter or "
                           "readable path") from None


def _scan(root: Path, val_split: float, seed: int) -> DataSplit:
    if not root.is_dir():
        what = ("is a file" if root.exists() else "is a broken or looping symlink" if root.is_symlink()
                else "does not exist")
        raise EdgecnnError(f"data folder {root} {what}; give a folder with one subfolder per class")
    if (root / "train").is_dir() and (root / "val").is_dir():
        labels, train = _class_images(root / "train", root)
        val_labels, val = _class_images(root / "val", root)
        unknown = sorted(set(val_labels) - set(labels))
        if unknown:
            raise EdgecnnError(f"{visible(root / 'val')} has classes missing from {visible(root / 'train')}: "
                               f"{visible(', '.join(unknown))}; add them to train/ or remove them")
        index = {label: i for i, label in enumerate(labels)}
        val_samples = tuple((path, index[val_labels[c]]) for path, c in val)
        return DataSplit(root, labels, train, val_samples)
    train_root = root / "train" if (root / "train").is_dir() else root
    labels, samples = _class_images(train_root, root)
    groups = _duplicate_groups(root, samples, labels)
    train, val = stratified_split(samples, val_split, seed, groups)
    if not val:
        raise EdgecnnError(f"{visible(train_root)} has one image per class, none left to validate on; add a "
                           "second image to a class, or give train/ and val/ folders")
    return DataSplit(root, labels, train, val, groups=len(set(groups)))


def _duplicate_groups(root: Path, samples: Sequence[tuple[str, int]], labels: Sequence[str]) -> list[int]:
    """Near-duplicate groups of `samples`, with a one-line warning when most images are near-duplicates
    or a class is one group (nothing of it can be held out honestly)."""
    from edgecnn.duplicates import MANY, MOSTLY, group_ids, mostly_duplicates

    groups = group_ids([root / path for path, _ in samples], [label for _, label in samples])
    share = mostly_duplicates(groups)
    if share > MOSTLY:
        log.warning("%.0f%% of the images of %s are near-duplicates (groups of %d or more: frames of one "
                    "clip or copies); validation holds each group whole, so it has few independent images: "
                    "add photos from other sittings", 100 * share, visible(root), MANY)
    for label in sorted({c for _, c in samples}):
        own = {g for g, (_, c) in zip(groups, samples, strict=True) if c == label}
        if len(own) == 1 and sum(c == label for _, c in samples) > 1:
            log.warning("class %s of %s is one group of near-duplicates: none of it is held out to validate "
                        "on; add images from another clip or sitting", visible(labels[label]), visible(root))
    return groups


def _class_images(folder: Path, root: Path) -> tuple[tuple[str, ...], tuple[tuple[str, int], ...]]:
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
                     and p.name not in IGNORED_FOLDERS)
    for class_dir in classes:
        _check_class_folder(class_dir, root)
    _check_unicode_twins(classes, folder)
    if not classes:
        raise EdgecnnError(f"{visible(folder)} holds no class folders; put images in "
                           f"{visible(folder)}/<class name>/")
    if len(classes) < 2:
        raise EdgecnnError(f"{visible(folder)} has one class ({visible(classes[0].name)}); a classifier "
                           "needs at least two class folders")
    samples, metadata = [], 0
    for index, class_dir in enumerate(classes):
        images, ignored = image_files_and_metadata(class_dir)
        metadata += ignored
        if not images:
            suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
            raise EdgecnnError(f"class folder {visible(class_dir)} holds no images ({suffixes}); add some or "
                               "remove the folder")
        samples += [(path.relative_to(root).as_posix(), index) for path in images]
    if metadata:
        log.warning("skipped %d macOS metadata file%s (._*, .DS_Store) in %s", metadata, "s" * (metadata > 1),
                    visible(folder))
    return check_labels(tuple(c.name for c in classes), f"class folders of {folder}"), tuple(samples)


def _check_unicode_twins(classes: Sequence[Path], folder: Path) -> None:
    """`café` as one precomposed letter (NFC, Linux/Windows) and as e + accent (NFD, macOS) are two folders
    that print alike: two classes the user cannot tell apart, so refused rather than trained as two."""
    seen: dict[str, str] = {}
    for class_dir in classes:
        name = class_dir.name
        other = seen.setdefault(unicodedata.normalize("NFC", name), name)
        if other != name:
            raise EdgecnnError(f"class folders {ascii(other)} and {ascii(name)} in {visible(folder)} are the "
                               f"same name {visible(other)!r} in two Unicode forms (NFC and NFD); merge them "
                               "into one folder")


IGNORED_FOLDERS = frozenset({"__MACOSX"})  # macOS zip archives: AppleDouble `._x.jpg` metadata, not images


def _check_class_folder(class_dir: Path, root: Path) -> None:
    """A class name must be text and its folder inside the data root (a link to / would scan the disk)."""
    if any("\udc80" <= char <= "\udcff" for char in class_dir.name):
        raw = os.fsencode(class_dir.name)
        raise EdgecnnError(f"class folder name {raw!r} in {visible(class_dir.parent)} is not UTF-8; rename "
                           "it (e.g. convmv -f latin1 -t utf8)")
    target = class_dir.resolve()
    if not target.is_relative_to(root.resolve()):
        raise EdgecnnError(f"class folder {visible(class_dir)} links to {visible(target)}, outside the data "
                           "folder; copy the images in or remove the link")


def stratified_split(samples: Sequence[tuple[str, int]], val_split: float, seed: int,
                     groups: Sequence[int] | None = None
                     ) -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, int], ...]]:
    """Hold out `val_split` of each class (at least one image when a class has two or more), seeded;
    `groups` (one id per sample: near-duplicates) are never split between train and val."""
    if not 0.0 < val_split < 1.0:
        raise EdgecnnError(f"val split {val_split} is out of range; give a fraction between 0 and 1, "
                           "e.g. 0.2")
    rng = random.Random(seed)
    group_of = dict(zip(samples, groups, strict=True)) if groups is not None else {}
    train, val = [], []
    for label in sorted({c for _, c in samples}):
        members = [s for s in samples if s[1] == label]
        bunches: dict[object, list[tuple[str, int]]] = {}
        for sample in members:
            bunches.setdefault(group_of.get(sample, sample), []).append(sample)
        ordered = list(bunches.values())
        rng.shuffle(ordered)  # singletons only: the very shuffle of the images, so the split is as before
        count = min(len(members) - 1, max(1, round(len(members) * val_split)))
        taken = 0
        for bunch in ordered:
            # a group over the share may still go when it is the first, at most twice the share and
            # half the class: else a class of a few clips could never be validated on
            first_fits = not taken and len(bunch) <= min(2 * count, len(members) / 2)
            fits = taken + len(bunch) <= count or first_fits
            if fits and taken + len(bunch) < len(members):
                val += bunch
                taken += len(bunch)
            else:
                train += bunch
    return tuple(sorted(train)), tuple(sorted(val))


def drop_unreadable(split: DataSplit, threads: int = 2) -> DataSplit:
    """Decode every image once; leave out the unreadable ones and name the first few in one warning."""
    paths = [p for p, _ in split.train + split.val]
    with ThreadPoolExecutor(max(1, threads)) as pool:  # OpenCV decodes without the GIL
        readable = dict(zip(paths, pool.map(lambda p: is_readable(split.root / p), paths), strict=True))
    skipped = tuple(p for p in paths if not readable[p])
    if not skipped:
        return split
    names = visible(", ".join(skipped[:3]) + (", ..." if len(skipped) > 3 else ""))
    log.warning("skipped %d unreadable image%s: %s", len(skipped), "s" * (len(skipped) > 1), names)
    train = tuple(s for s in split.train if readable[s[0]])
    missing = [label for i, label in enumerate(split.labels) if all(c != i for _, c in train)]
    if missing:
        raise EdgecnnError(f"no readable training images left for class {missing[0]!r}; add some to "
                           f"{split.root}")
    return replace(split, train=train, val=tuple(s for s in split.val if readable[s[0]]), skipped=skipped)


class ValTransform:
    """Exactly deployment's pixels: `fit_frame`, then the model's mean/std."""

    def __init__(self, preprocess: Preprocess) -> None:
        self.preprocess = preprocess

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        return normalize(_to_chw(fit_frame(image, self.preprocess)), self.preprocess)


class TrainTransform:
    """Random resized crop (bicubic, antialiased) and flip on uint8, colour jitter, then mean/std."""

    def __init__(self, preprocess: Preprocess) -> None:
        import torch
        from torchvision.transforms import InterpolationMode, v2

        self.preprocess = preprocess
        self.augment = v2.Compose([
            v2.RandomResizedCrop(preprocess.input_size, scale=(0.25, 1.0),
                                 interpolation=InterpolationMode.BICUBIC, antialias=True),
            v2.RandomHorizontalFlip(),
            # on floats after the crop: 4x cheaper than on uint8; no hue shift, the costliest and least useful
            v2.ToDtype(torch.float32, scale=True),
            v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3),
        ])

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        image = _shrink(image, 2 * max(self.preprocess.input_size))
        return normalize(self.augment(_to_chw(image)), self.preprocess)


def _shrink(image: np.ndarray, limit: int) -> np.ndarray:
    """Bound the shorter side: cropping a 12-megapixel photo costs time and adds no detail at 224 px."""
    import cv2

    short = min(image.shape[:2])
    if short <= limit:
        return image
    scale = limit / short
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _to_chw(image: np.ndarray) -> torch.Tensor:
    import torch

    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)


def normalize(image: torch.Tensor, preprocess: Preprocess) -> torch.Tensor:
    """uint8 (0..255) or float (0..1) CHW to float CHW scaled by the model's mean/std (0..1 scale)."""
    import torch

    mean = torch.tensor(preprocess.mean).view(3, 1, 1)
    std = torch.tensor(preprocess.std).view(3, 1, 1)
    scaled = image.float() / 255.0 if image.dtype == torch.uint8 else image
    return (scaled - mean) / std


class ImageDataset:
    """(views, label) per image: decoded once, then every transform applied (one view: no extra axis)."""

    def __init__(self, root: Path, samples: Sequence[tuple[str, int]],
                 transforms: Sequence[Transform], seed: int | None = None) -> None:
        self.root, self.samples, self.transforms = root, tuple(samples), tuple(transforms)
        # with a seed, image i's random views depend on (seed, i) only: the same in any process or worker
        self.seed = seed

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        import torch

        path, label = self.samples[index]
        image = read_image(self.root / path)
        if self.seed is None:
            views = [transform(image) for transform in self.transforms]
        else:
            with torch.random.fork_rng(devices=()):
                torch.manual_seed(self.seed * 1_000_003 + index)
                views = [transform(image) for transform in self.transforms]
        return (views[0] if len(views) == 1 else torch.stack(views)), label


def make_loader(dataset: ImageDataset, batch_size: int, shuffle: bool, workers: int, seed: int = 0,
                drop_last: bool = False, sampler: Sampler | None = None) -> DataLoader:
    """A DataLoader whose order and augmentation depend only on `seed` (workers seed from it too);
    `sampler` (e.g. this rank's share, see edgecnn.distributed) replaces `shuffle`."""
    import torch
    from torch.utils.data import DataLoader

    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                      num_workers=workers, generator=generator, drop_last=drop_last)
