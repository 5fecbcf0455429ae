"""The fast path: with the backbone frozen, run it once per image and train the classifier on the
cached pooled features, so a head epoch costs milliseconds instead of a pass through the network.

Training images contribute their `fit_frame` view plus a few augmented views, cached up front. On a CPU
the backbone runs on the deployment engine (OpenVINO or ONNX Runtime, see edgecnn/feature_engine.py)
while worker processes decode and augment the next images.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from edgecnn.data import ImageDataset, ValTransform, make_loader
from edgecnn.device import import_torch
from edgecnn.feature_engine import PARITY_IMAGES, FeatureEngine, TorchFeatures, open_engine, verified
from edgecnn.process_group import Dist, gather_rows
from edgecnn.training import EpochStats, Evaluation, StepCallback, accuracy, evaluation

if TYPE_CHECKING:
    import torch
    from torch.utils.data import DataLoader

    from edgecnn.runtime.core.metadata import Preprocess


def pooled_features(model: torch.nn.Module, loader: DataLoader, device: torch.device,
                    on_batch: Callable[[int], None], engine: FeatureEngine | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Features right before the classifier: ([images, views, dim] float32 on CPU, [images] labels).

    `engine` (PyTorch by default) works on one batch while the loader's workers decode the next."""
    torch = import_torch()
    engine = engine or TorchFeatures(model, device)
    features, labels, pending = [], [], deque()
    for views, targets in loader:
        views = views if views.dim() == 5 else views[:, None]  # one view: add the views axis
        pending.append((engine.submit(views.flatten(0, 1)), views.shape[:2], targets))
        while len(pending) > _IN_FLIGHT:
            _collect(pending.popleft(), features, labels, on_batch)
    while pending:
        _collect(pending.popleft(), features, labels, on_batch)
    return torch.cat(features), torch.cat(labels)


_IN_FLIGHT = 2  # loader batches handed to the engine before the first is collected


def _collect(item: tuple, features: list, labels: list, on_batch: Callable[[int], None]) -> None:
    result, (batch, count), targets = item
    features.append(result.result().view(batch, count, -1))
    labels.append(targets)
    on_batch(batch)


def cached_features(model: torch.nn.Module, loader: DataLoader, dist: Dist, device: torch.device,
                    on_batch: Callable[[int], None], engine: FeatureEngine | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """`pooled_features` of this rank's share of `loader`, then everyone's gathered in dataset order."""
    features, labels = pooled_features(model, loader, device, on_batch, engine)
    total = len(loader.dataset)
    return gather_rows(dist, features, total, device), gather_rows(dist, labels, total, device)


def feature_engine(name: str, model: torch.nn.Module, preprocess: Preprocess, device: torch.device,
                   dataset: ImageDataset) -> FeatureEngine:
    """The engine `name` (see edgecnn.feature_engine), checked against PyTorch on `dataset`'s first images."""
    torch = import_torch()
    engine = open_engine(name, model, preprocess.input_size, device, threads=torch.get_num_threads())
    items = [dataset[i][0] for i in range(min(PARITY_IMAGES, len(dataset)))]
    pixels = torch.cat([item if item.dim() == 4 else item[None] for item in items])[:PARITY_IMAGES]
    return verified(engine, model, device, pixels)


def image_features(model: torch.nn.Module, preprocess: Preprocess, images: Sequence[Path],
                   engine: str = "auto", batch_size: int = 32, workers: int = 0) -> torch.Tensor:
    """Pooled features [images, dim] of image files as deployment sees them (`fit_frame`), computed by
    the feature engine on the CPU: what a model fitted on the backbone's features (e.g. an unknown-input
    detector) trains on."""
    torch = import_torch()
    device = torch.device("cpu")
    dataset = ImageDataset(Path(), [(str(path), 0) for path in images], [ValTransform(preprocess)])
    loader = make_loader(dataset, batch_size, shuffle=False, workers=workers)
    chosen = feature_engine(engine, model, preprocess, device, dataset)
    try:
        features, _ = pooled_features(model, loader, device, lambda n: None, chosen)
    finally:
        chosen.close()
    return features[:, 0]


class HeadPhase:
    """Trains `model.get_classifier()` in place on cached features (dropout as the model would apply)."""

    def __init__(self, model: torch.nn.Module, train: tuple[torch.Tensor, torch.Tensor],
                 val: tuple[torch.Tensor, torch.Tensor], batch_size: int, label_smoothing: float,
                 device: torch.device) -> None:
        torch = import_torch()
        features, labels = train
        self.train_features = features.flatten(0, 1).to(device)  # every view is one training sample
        self.train_labels = labels.repeat_interleave(features.shape[1]).to(device)
        self.val_features, self.val_labels = val[0][:, 0].to(device), val[1].to(device)
        self.head = model.get_classifier()
        self.dropout = float(getattr(model, "drop_rate", 0.0))
        self.batch_size = batch_size
        self.loss = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.steps_per_epoch = math.ceil(len(self.train_labels) / batch_size)

    def train_epoch(self, optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LambdaLR,
                    seed: int, on_step: StepCallback) -> EpochStats:
        torch = import_torch()
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(self.train_labels), generator=generator).to(self.train_labels.device)
        self.head.train()
        total_loss, correct = 0.0, 0
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            features = torch.nn.functional.dropout(self.train_features[batch], self.dropout, training=True)
            logits = self.head(features)
            loss = self.loss(logits, self.train_labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += loss.item() * len(batch)
            correct += accuracy(logits, self.train_labels[batch])
            seen = start + len(batch)
            on_step(total_loss / seen, correct / seen)
        return EpochStats(total_loss / len(order), correct / len(order))

    def validate(self) -> Evaluation:
        """Loss and top-1 of the head on the cached validation features."""
        torch = import_torch()
        self.head.eval()
        with torch.inference_mode():
            logits = self.head(self.val_features).float().cpu()
        return evaluation(logits, self.val_labels.cpu())

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
