"""`predict --save DIR`: an annotated copy of each image (the camera's panel), named after the image.

The names are fixed before any inference, so a clash with a file already in DIR is refused up front
(or, with --force, that file is replaced) and a second run never half-overwrites the first.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.outputs import (
    check_distinct,
    check_not_inputs,
    check_output_path,
    check_writable,
    next_free_folder,
    publish,
)

# Written in the input's own format; the rest (.ppm, .pgm: grey only in OpenCV's .pgm) as .png.
KEPT_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


def saved_names(files: Sequence[Path], folder: Path) -> list[Path]:
    """Each input's copy in `folder`: its own file name, or NAME-1, NAME-2... when an earlier input of
    the same run already took it (two folders each with a cat.jpg)."""
    taken: set[str] = set()
    names = []
    for file in files:
        suffix = file.suffix if file.suffix.lower() in KEPT_SUFFIXES else ".png"
        name, number = f"{file.stem}{suffix}", 0
        while name.lower() in taken:  # lower: one folder on a case-insensitive disk
            number += 1
            name = f"{file.stem}-{number}{suffix}"
        taken.add(name.lower())
        names.append(folder / name)
    return names


def check_save_folder(folder: Path, names: Sequence[Path], force: bool,
                      image_folders: Sequence[Path], images: Sequence[Path] = ()) -> None:
    """EdgecnnError before any work: --save is not a writable folder, is or sits inside a folder of
    input images (the copies would be read as images next time), a copy would replace one of the
    `images` themselves (even with --force), or, without --force, already holds a file of the same name
    as one this run writes."""
    check_output_path(folder, "--save", folder=True)
    for item in image_folders:
        check_distinct({"--save": folder}, {"IMAGES": item})
    check_not_inputs(names, images, "--save")
    check_writable(folder, "--save")
    clashes = [path.name for path in names if path.exists() or path.is_symlink()]
    if clashes and not force:
        more = f" and {len(clashes) - 1} more" if len(clashes) > 1 else ""
        free = next_free_folder(folder.parent, folder.name)
        raise EdgecnnError(f"--save {folder} already holds {clashes[0]}{more}; pass --force to replace "
                           f"them or choose another folder, e.g. --save {free}")


def save_annotated(image: np.ndarray, predictions: Sequence[object], unknown_score: float | None,
                   unknown: bool, path: Path, force: bool) -> Path:
    """Draw the predictions on a copy of an RGB image and write it to `path` through a temporary name;
    without `force` an existing `path` (made since the check) is never replaced."""
    from edgecnn.runtime.core.images import opencv
    from edgecnn.runtime.live.overlay import draw_predictions

    cv2 = opencv()
    footer = "" if unknown_score is None else f"unknown score {unknown_score:.3f}"
    drawn = draw_predictions(image[:, :, ::-1], predictions, 0.0, footer, unknown)  # 0.0: title = top-1
    lossy = [cv2.IMWRITE_WEBP_QUALITY, 95] if path.suffix.lower() == ".webp" else []  # else lossless

    def encode(temp: Path) -> None:
        if not cv2.imwrite(str(temp), drawn, lossy):
            raise EdgecnnError(f"cannot write {path}: OpenCV could not encode a {path.suffix} image")

    return publish(path, encode, None if force else [path],
                   taken=f"{path} appeared while predict ran; pass --force to replace it")
