"""Build a second small labelled data set, another domain than samples/photos, from Debian's Tux Paint stamps.

The stamps (package tuxpaint-stamps-default, GPL-2+/public domain, see /usr/share/doc/tuxpaint-stamps-default)
are cut-out photos and drawings with transparency; each is flattened on a white background and saved as JPEG
with its longest side at 320 px, one folder per class, the layout `edgecnn finetune` reads. Used by the
benchmarks (INT8 gate, unknown detection, fine-tuning) to check that what holds on the sample photos holds
elsewhere too. Not committed: run it where the package is installed
(`apt-get install tuxpaint-stamps-default`).

Usage: python benchmarks/make_second_dataset.py [--out /tmp/edgecnn-second]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

STAMPS = Path("/usr/share/tuxpaint/stamps")
# class name -> stamp folder (searched recursively)
CLASSES = {
    "birds": "animals/birds",
    "mammals": "animals/mammals",
    "fruit": "food/fruit",
    "vehicles": "vehicles",
    "flowers": "plants/flowers",
}
LONGEST_SIDE = 320


def flatten(path: Path) -> np.ndarray | None:
    """The stamp on white, longest side LONGEST_SIDE, BGR; None for files OpenCV cannot read."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.ndim != 3:
        return None
    if image.shape[2] == 4:
        alpha = image[:, :, 3:4].astype(np.float32) / 255.0
        image = (image[:, :, :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    scale = LONGEST_SIDE / max(image.shape[:2])
    if scale < 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/edgecnn-second"))
    args = parser.parse_args(argv)
    if not STAMPS.is_dir():
        parser.error(f"{STAMPS} not found: apt-get install tuxpaint-stamps-default")
    for label, folder in CLASSES.items():
        target = args.out / label
        target.mkdir(parents=True, exist_ok=True)
        kept = 0
        for path in sorted((STAMPS / folder).rglob("*.png")):
            image = flatten(path)
            if image is None or min(image.shape[:2]) < 32:
                continue
            cv2.imwrite(str(target / f"{path.stem}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
            kept += 1
        print(f"{label:10s} {kept:4d} images from {STAMPS / folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
