"""The incremental feature cache: the frozen backbone's pooled features of each image, kept on disk, so a
retrain sends only new or changed images through the backbone.

An entry is keyed by the file's content (a hash, not its name or place: a photo moved into another class
folder keeps its features) inside a namespace naming everything else the features depend on: the
architecture, the backbone's weights (`backbone_digest`), the preprocessing, and for augmented views
their count, the run's seed and the augmentation recipe. Augmented views are seeded by (seed, content),
not by the image's place in the split, so adding images leaves the other images' views as they were.
Entries live in `cache_folder()/features/NAMESPACE/` as `.npy` files written atomically (two runs
filling one cache both end with whole files).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from edgecnn.data import ImageDataset, TrainTransform, ValTransform, make_loader
from edgecnn.device import import_torch
from edgecnn.feature_engine import backbone_digest, cache_folder
from edgecnn.features import feature_engine, pooled_features

if TYPE_CHECKING:
    import numpy as np
    import torch

    from edgecnn.data import DataSplit
    from edgecnn.feature_engine import FeatureEngine
    from edgecnn.finetune import FinetuneConfig
    from edgecnn.runtime.core.metadata import Preprocess

log = logging.getLogger("edgecnn")
# bump when TrainTransform's recipe changes: cached augmented views would no longer be what it makes
AUGMENTATION_VERSION = 1
_CHUNK = 1 << 20


def content_key(path: Path) -> str:
    """A hash of the file's bytes: the same photo under any name or folder has one key."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as file:
        while block := file.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


class FeatureStore:
    """One namespace of the cache: `get`/`put` a [views, dim] float32 array by content key."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def get(self, key: str) -> np.ndarray | None:
        import numpy as np

        try:
            return np.load(self.folder / f"{key}.npy", allow_pickle=False)
        except (OSError, ValueError):  # missing, or cut short by a crash before the rename
            return None

    def put(self, key: str, features: np.ndarray) -> None:
        import numpy as np

        from edgecnn.runtime.core.outputs import write_atomic

        buffer = io.BytesIO()
        np.save(buffer, features.astype(np.float32, copy=False), allow_pickle=False)
        write_atomic(self.folder / f"{key}.npy", buffer.getvalue())


def open_stores(model: torch.nn.Module, preprocess: Preprocess, aug_views: int, seed: int
                ) -> tuple[FeatureStore, FeatureStore] | None:
    """(plain view store, augmented views store) for this backbone and preprocessing, or None when there
    is no writable cache folder (then every feature is computed, as before)."""
    root = cache_folder()
    if root is None:
        return None
    arch = str(getattr(model, "default_cfg", {}).get("architecture", type(model).__name__))
    base = {"arch": arch, "backbone": backbone_digest(model), "preprocess": asdict(preprocess)}
    augmented = {**base, "aug_views": aug_views, "seed": seed, "augmentation": AUGMENTATION_VERSION}
    stores = tuple(FeatureStore(root / "features" / f"{arch}-{_digest(spec)}") for spec in (base, augmented))
    for store in stores:
        store.folder.mkdir(parents=True, exist_ok=True)
    return stores  # type: ignore[return-value]


def _digest(spec: dict) -> str:
    return hashlib.blake2b(json.dumps(spec, sort_keys=True, default=str).encode(), digest_size=8).hexdigest()


class KeyedDataset(ImageDataset):
    """An ImageDataset whose image i draws its random views from `seeds[i]` (from its content), not i."""

    def __init__(self, root: Path, samples: Sequence[tuple[str, int]], transforms: Sequence,
                 seeds: Sequence[int]) -> None:
        super().__init__(root, samples, transforms, seed=None)
        self.seeds = tuple(seeds)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        torch = import_torch()
        with torch.random.fork_rng(devices=()):
            torch.manual_seed(self.seeds[index])
            return super().__getitem__(index)


class SplitFeatures:
    """The head phase's features of a split's train and validation images, from the cache where it has
    them; the backbone runs (on the feature engine) only on the rest, which are then stored."""

    def __init__(self, model: torch.nn.Module, preprocess: Preprocess, root: Path, engine_name: str,
                 device: torch.device, batch_size: int, workers: int) -> None:
        self.model, self.preprocess, self.root, self.engine_name = model, preprocess, root, engine_name
        self.device, self.batch_size, self.workers = device, batch_size, workers
        self.computed = 0  # images that went through the backbone (the rest came from the cache)
        self._engine: FeatureEngine | None = None  # opened on the first miss, shared by train and val

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    def features(self, samples: Sequence[tuple[str, int]], stores: tuple[FeatureStore, ...], seed: int,
                 aug_views: int, on_image: Callable[[int], None]) -> tuple[torch.Tensor, torch.Tensor]:
        """([images, 1 + aug_views, dim], [images] labels) of `samples`; aug_views 0: the plain view only."""
        import numpy as np

        torch = import_torch()
        keys = [content_key(self.root / path) for path, _ in samples]
        found = [self._lookup(key, stores, aug_views) for key in keys]
        on_image(sum(item is not None for item in found))
        missing = [i for i, item in enumerate(found) if item is None]
        if missing:
            seeds = [_view_seed(seed, keys[i]) for i in missing]
            computed = self._compute([samples[i] for i in missing], seeds, aug_views, on_image)
            for row, index in zip(computed, missing, strict=True):
                found[index] = row
                stores[0].put(keys[index], row[:1])
                if aug_views:
                    stores[1].put(keys[index], row[1:])
            self.computed += len(missing)
        stacked = np.stack(found) if found else np.zeros((0, 1 + aug_views, 1), np.float32)
        return torch.from_numpy(stacked), torch.tensor([label for _, label in samples], dtype=torch.long)

    def _lookup(self, key: str, stores: tuple[FeatureStore, ...], aug_views: int) -> np.ndarray | None:
        import numpy as np

        plain = stores[0].get(key)
        if plain is None or not aug_views:
            return plain
        augmented = stores[1].get(key)
        if augmented is None or len(augmented) != aug_views or augmented.shape[1:] != plain.shape[1:]:
            return None
        return np.concatenate([plain, augmented])

    def _compute(self, samples: list[tuple[str, int]], seeds: list[int], aug_views: int,
                 on_image: Callable[[int], None]) -> np.ndarray:
        transforms = [ValTransform(self.preprocess)] + [TrainTransform(self.preprocess)] * aug_views
        dataset = KeyedDataset(self.root, samples, transforms, seeds)
        loader = make_loader(dataset, self.batch_size, shuffle=False, workers=self.workers)
        if self._engine is None:
            self._engine = feature_engine(self.engine_name, self.model, self.preprocess, self.device, dataset)
        features, _ = pooled_features(self.model, loader, self.device, on_image, self._engine)
        return features.numpy()


def head_features(model: torch.nn.Module, preprocess: Preprocess, split: DataSplit, config: FinetuneConfig,
                  device: torch.device, on_image: Callable[[int], None]
                  ) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """[(train features, labels), (val features, labels)] through the cache, or None without one."""
    stores = open_stores(model, preprocess, config.aug_views, config.seed)
    if stores is None:
        return None
    features = SplitFeatures(model, preprocess, split.root, config.feature_engine, device, config.batch_size,
                             config.workers)
    try:
        train = features.features(split.train, stores, config.seed, config.aug_views, on_image)
        val = features.features(split.val, stores, config.seed, 0, on_image)
    finally:
        features.close()
    total = len(split.train) + len(split.val)
    log.info("features: %d of %d images from the cache", total - features.computed, total)
    return [train, val]


def _view_seed(seed: int, key: str) -> int:
    return (seed * 1_000_003 + int(key[:12], 16)) % (1 << 62)
