"""The fast path: with the backbone frozen, run it once per image and train the classifier on the
cached pooled features, so a head epoch costs milliseconds instead of a pass through the network.

Training images contribute their `fit_frame` view plus a few augmented views, cached up front.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from edgecnn.training import EpochStats, Evaluation, StepCallback, accuracy, evaluation, import_torch

if TYPE_CHECKING:
    import torch
    from torch.utils.data import DataLoader

    from edgecnn.distributed import Dist


def pooled_features(model: torch.nn.Module, loader: DataLoader, device: torch.device,
                    on_batch: Callable[[int], None]) -> tuple[torch.Tensor, torch.Tensor]:
    """Features right before the classifier: ([images, views, dim] float32 on CPU, [images] labels)."""
    torch = import_torch()
    model.eval()
    features, labels = [], []
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.float16,
                                                enabled=device.type == "cuda"):
        for views, targets in loader:
            views = views if views.dim() == 5 else views[:, None]  # one view: add the views axis
            batch, count = views.shape[:2]
            maps = model.forward_features(views.flatten(0, 1).to(device, memory_format=torch.channels_last))
            pooled = model.forward_head(maps, pre_logits=True)
            features.append(pooled.float().cpu().view(batch, count, -1))
            labels.append(targets)
            on_batch(batch)
    return torch.cat(features), torch.cat(labels)


def cached_features(model: torch.nn.Module, loader: DataLoader, dist: Dist, device: torch.device,
                    on_batch: Callable[[int], None]) -> tuple[torch.Tensor, torch.Tensor]:
    """`pooled_features` of this rank's share of `loader`, then everyone's gathered in dataset order."""
    from edgecnn.distributed import fault_point, gather_rows

    features, labels = pooled_features(model, loader, device, on_batch)
    fault_point(dist, "features")
    total = len(loader.dataset)
    return gather_rows(dist, features, total, device), gather_rows(dist, labels, total, device)


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

    def evaluate(self) -> Evaluation:
        torch = import_torch()
        self.head.eval()
        with torch.inference_mode():
            logits = self.head(self.val_features).float().cpu()
        return evaluation(logits, self.val_labels.cpu())

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
