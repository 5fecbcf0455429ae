"""The incremental feature cache: a second run computes no feature, a new or changed photo is the only one
through the backbone, and the cached features are the backbone's own."""

from __future__ import annotations

import csv
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edgecnn.checkpoint import load_checkpoint
from edgecnn.feature_cache import content_key, open_stores
from edgecnn.features import image_features
from edgecnn.finetune import FinetuneConfig, finetune
from edgecnn.models import build_model


@pytest.fixture()
def data(tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two classes of tiny_data, and a cache of this test's own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "data"
    for name in ("fishes", "tools"):
        shutil.copytree(tiny_data / name, root / name)
    return root


def _run(data: Path, out: Path, caplog: pytest.LogCaptureFixture) -> tuple[str, list[dict[str, str]]]:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="edgecnn"):
        finetune(FinetuneConfig(data=data, out=out, head_epochs=2, batch_size=8, aug_views=1, workers=0,
                                progress=False))
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("features:"))
    with open(out / "metrics.csv") as file:
        return line, list(csv.DictReader(file))


def test_second_run_computes_nothing_and_trains_the_same(data: Path, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    cold, cold_metrics = _run(data, tmp_path / "a", caplog)
    warm, warm_metrics = _run(data, tmp_path / "b", caplog)
    assert cold == "features: 0 of 16 images from the cache"
    assert warm == "features: 16 of 16 images from the cache"
    for first, second in zip(cold_metrics, warm_metrics, strict=True):
        assert first["val_loss"] == second["val_loss"] and first["train_loss"] == second["train_loss"]


def test_only_new_and_changed_photos_go_through_the_backbone(data: Path, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    _run(data, tmp_path / "a", caplog)
    was_val = {content_key(data / path) for path in load_checkpoint(tmp_path / "a" / "best.pt").split.val}
    photos = sorted((data / "fishes").iterdir())
    image = cv2.imread(str(photos[0]))
    cv2.imwrite(str(data / "tools" / "new.jpg"), cv2.flip(image, 0))  # a new photo
    cv2.imwrite(str(photos[1]), cv2.flip(image, 1))  # same name, new content
    shutil.move(photos[2], data / "tools" / photos[2].name)  # relabelled: same bytes, kept
    line, _ = _run(data, tmp_path / "b", caplog)
    # the new split may move a photo from val (plain view cached) to train (augmented views wanted too)
    after = load_checkpoint(tmp_path / "b" / "best.pt").split
    promoted = sum(content_key(data / path) in was_val for path in after.train)
    assert line == f"features: {15 - promoted} of 17 images from the cache"


def test_cached_plain_features_are_the_backbones(data: Path, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """What the cache holds for a photo equals a fresh pass of the backbone over it (1e-4 of the largest)."""
    _run(data, tmp_path / "a", caplog)
    torch.manual_seed(0)
    built = build_model("efficientnet_lite0", 2, pretrained=True)
    photos = sorted((data / "tools").iterdir())[:4]
    fresh = image_features(built.model, built.preprocess, photos, engine="torch").numpy()
    plain, _ = open_stores(built.model, built.preprocess, 1, 0)
    cached = np.concatenate([plain.get(content_key(path)) for path in photos])
    assert np.abs(cached - fresh).max() <= 1e-4 * np.abs(fresh).max()
