"""Image folders: layouts, the seeded stratified split, bad files, and the exact validation pixels."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from edgecnn.runtime.core.images import read_image
from edgecnn.runtime.core.metadata import Preprocess
from edgecnn.runtime.core.preprocess import fit_frame

from edgecnn.data import (
    DataSplit,
    ImageDataset,
    TrainTransform,
    ValTransform,
    drop_unreadable,
    make_loader,
    scan_folder,
)
from edgecnn.errors import EdgecnnError

PRE = Preprocess()  # EfficientNet-Lite0's: 224, shorter side 256, mean = std = 0.5


def test_stratified_split_is_seeded_and_disjoint(tiny_data: Path) -> None:
    split = scan_folder(tiny_data, val_split=0.25, seed=0)
    assert split.labels == tuple(sorted(p.name for p in tiny_data.iterdir()))
    assert not {p for p, _ in split.train} & {p for p, _ in split.val}
    for index in range(len(split.labels)):  # 8 images per class: 2 held out each
        assert sum(c == index for _, c in split.val) == 2
    assert scan_folder(tiny_data, 0.25, seed=0) == split
    assert scan_folder(tiny_data, 0.25, seed=1).val != split.val
    assert all(Path(path).parts[0] == split.labels[c] for path, c in split.train + split.val)


def test_train_val_layout_keeps_the_given_split(tiny_data: Path, tmp_path: Path) -> None:
    for part, images in (("train", slice(0, 5)), ("val", slice(5, 8))):
        for class_dir in sorted(tiny_data.iterdir())[:2]:
            (tmp_path / part / class_dir.name).mkdir(parents=True)
            for image in sorted(class_dir.iterdir())[images]:
                shutil.copy(image, tmp_path / part / class_dir.name)
    split = scan_folder(tmp_path)
    assert len(split.train) == 10 and len(split.val) == 6
    assert all(p.startswith("train/") for p, _ in split.train)
    assert all(p.startswith("val/") for p, _ in split.val)
    again = DataSplit.from_record(split.record(), split.labels)
    assert (again.train, again.val, again.root) == (split.train, split.val, tmp_path.resolve())


def _make(root: Path, layout: dict[str, int], source: Path) -> Path:
    """Class folders holding `count` copies of one real photo each."""
    for name, count in layout.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            shutil.copy(source, root / name / f"{i}{source.suffix}")
    return root


@pytest.mark.parametrize(("layout", "message"), [
    (None, "does not exist"),
    ({}, "holds no class folders"),
    ({"cats": 3}, "one class (cats)"),
    ({"cats": 3, "dogs": 0}, "holds no images"),
])
def test_bad_folders_give_one_line_errors(layout: dict | None, message: str, tmp_path: Path,
                                          sample_photo: Path) -> None:
    root = tmp_path / "data"
    if layout is not None:
        root.mkdir()
        _make(root, layout, sample_photo)
    with pytest.raises(EdgecnnError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
        scan_folder(root)
    assert "\n" not in str(error.value)


def test_non_images_ignored_and_unreadable_skipped_with_one_warning(tmp_path: Path, sample_photo: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    root = _make(tmp_path, {"a": 4, "b": 4}, sample_photo)
    (root / "a" / "notes.txt").write_text("not an image")
    (root / "a" / ".DS_Store").write_bytes(b"\0\1")
    (root / "stray.jpg").write_bytes(b"top-level files belong to no class")
    jpeg = cv2.imencode(".jpg", read_image(sample_photo))[1].tobytes()
    (root / "b" / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])  # truncated, as by an interrupted copy
    (root / "b" / "junk.png").write_bytes(b"\x89PNG not really")
    split = scan_folder(root, val_split=0.25)
    assert not any(p.endswith((".txt", ".DS_Store")) or p == "stray.jpg" for p, _ in split.train + split.val)
    caplog.clear()  # the scan's own line: "skipped 1 macOS metadata file" (the .DS_Store)
    with caplog.at_level(logging.WARNING, logger="edgecnn"):
        kept = drop_unreadable(split)
    assert sorted(kept.skipped) == ["b/cut.jpg", "b/junk.png"]
    assert len(kept.train) + len(kept.val) == 8
    warnings = [r.getMessage() for r in caplog.records if r.name == "edgecnn"]
    assert len(warnings) == 1 and "skipped 2 unreadable images" in warnings[0] and "b/cut.jpg" in warnings[0]


@pytest.mark.parametrize("kind", ["gray", "rgba", "16bit"])
def test_odd_pngs_become_rgb(kind: str, tmp_path: Path, sample_photo: Path) -> None:
    rgb = read_image(sample_photo)
    image = {"gray": cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY),
             "rgba": cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA),
             "16bit": cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257}[kind]
    cv2.imwrite(str(tmp_path / "x.png"), image)
    views, label = ImageDataset(tmp_path, [("x.png", 1)], [ValTransform(PRE)])[0]
    assert views.shape == (3, 224, 224) and label == 1
    if kind != "gray":  # colour survives the conversion
        expected = ValTransform(PRE)(rgb)
        assert float((views - expected).abs().max()) <= 2 / 255 / 0.5 + 1e-6


def test_validation_pixels_are_exactly_fit_frame(sample_photo: Path) -> None:
    image = read_image(sample_photo)
    fitted = fit_frame(image, PRE).astype(np.float32) / 255.0
    expected = (fitted - 0.5) / 0.5
    np.testing.assert_allclose(ValTransform(PRE)(image).permute(1, 2, 0).numpy(), expected, atol=1e-6)


def test_training_views_are_augmented_and_seeded(tiny_data: Path) -> None:
    import torch

    split = scan_folder(tiny_data)
    views = [ValTransform(PRE), TrainTransform(PRE), TrainTransform(PRE)]
    dataset = ImageDataset(split.root, split.train[:4], views)

    def batch(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return next(iter(make_loader(dataset, 4, shuffle=True, workers=0, seed=seed)))[0]

    first = batch(0)
    assert first.shape == (4, 3, 3, 224, 224) and first.dtype == torch.float32
    assert float(first.min()) >= -1.0 - 1e-6 and float(first.max()) <= 1.0 + 1e-6
    assert not torch.equal(first[:, 1], first[:, 2])  # two different random views
    assert torch.equal(batch(0), first) and not torch.equal(batch(1), first)


@pytest.fixture(scope="module")
def sample_photo(sample_photos: Path) -> Path:
    return next(p for p in sorted((sample_photos / "tools").iterdir()) if p.suffix == ".webp")
