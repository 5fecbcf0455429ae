"""Training pieces shared by both phases: optimiser, schedule, accuracy, and full fine-tuning."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgecnn.device import import_torch
from edgecnn.process_group import Dist, gather_rows, sum_across

if TYPE_CHECKING:
    import torch
    from torch.utils.data import DataLoader


StepCallback = Callable[[float, float], None]  # (running loss, running top-1) after each batch


@dataclass(frozen=True)
class EpochStats:
    loss: float
    top1: float


@dataclass(frozen=True)
class Evaluation:
    loss: float  # plain cross-entropy (no label smoothing): what early stopping watches
    top1: float
    predictions: tuple[int, ...]
    targets: tuple[int, ...]


def param_groups(model: torch.nn.Module, lr: float, backbone_lr_scale: float, head_only: bool) -> list[dict]:
    """Head at `lr`, backbone at `lr * backbone_lr_scale` (left out entirely when `head_only`)."""
    head = list(model.get_classifier().parameters())
    head_ids = {id(p) for p in head}
    groups = [{"params": head, "lr": lr, "name": "head"}]
    if not head_only:
        backbone = [p for p in model.parameters() if id(p) not in head_ids]
        groups.append({"params": backbone, "lr": lr * backbone_lr_scale, "name": "backbone"})
    return groups


def make_optimizer(groups: list[dict], weight_decay: float, total_steps: int, warmup: float
                   ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW with a per-step cosine schedule after a linear warm-up over `warmup` of the steps."""
    torch = import_torch()
    optimizer = torch.optim.AdamW(groups, weight_decay=weight_decay)
    warmup_steps = max(1, round(total_steps * warmup)) if warmup > 0 else 0

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> int:
    return int((logits.argmax(1) == targets).sum())


class FullPhase:
    """Every layer trains on augmented images; validation runs the whole network on `fit_frame` pixels.

    Distributed, `model` is the DistributedDataParallel wrapper and both loaders hold this rank's share.
    """

    def __init__(self, model: torch.nn.Module, train: DataLoader, val: DataLoader, device: torch.device,
                 label_smoothing: float, dist: Dist | None = None, bf16: bool = False) -> None:
        torch = import_torch()
        self.model, self.train, self.val, self.device = model, train, val, device
        self.dist = dist or Dist()
        self.amp = device.type == "cuda"  # mixed precision where it pays; CPU in float32 unless `bf16`
        self.bf16 = bf16 and device.type == "cpu"  # bfloat16 autocast: needs no gradient scaling
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.loss = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.steps_per_epoch = len(train)

    def train_epoch(self, optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LambdaLR,
                    seed: int, on_step: StepCallback) -> EpochStats:
        torch = import_torch()
        if hasattr(self.train.sampler, "set_epoch"):
            self.train.sampler.set_epoch(seed)  # the same shuffle on every rank, each taking its share
        self.train.generator.manual_seed(self.dist.rank_seed(seed))  # shuffling and worker augmentation seeds
        self.model.train()
        total_loss, correct, seen = 0.0, 0, 0
        for images, targets in self.train:
            images = images.to(self.device, memory_format=torch.channels_last)
            targets = targets.to(self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16 if self.bf16 else torch.float16,
                                enabled=self.amp or self.bf16):
                logits = self.model(images)
                loss = self.loss(logits.float(), targets)
            optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()
            scheduler.step()
            total_loss += loss.item() * len(targets)
            correct += accuracy(logits, targets)
            seen += len(targets)
            on_step(total_loss / seen, correct / seen)
        total_loss, correct, seen = sum_across(self.dist, [total_loss, correct, seen], self.device)
        return EpochStats(total_loss / max(1, seen), correct / max(1, seen))

    def validate(self) -> Evaluation:
        """Loss and top-1 on the validation split."""
        return validate_model(getattr(self.model, "module", self.model), self.val, self.device, self.dist)

    def state_dict(self) -> dict:
        return {"scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


def validate_model(model: torch.nn.Module, loader: DataLoader, device: torch.device,
                   dist: Dist | None = None) -> Evaluation:
    """The whole network on the validation images (`fit_frame` pixels), in eval mode. Distributed, each
    rank runs its share and all logits are gathered: exactly the single-process figures, padding dropped."""
    torch, dist = import_torch(), dist or Dist()
    model.eval()
    logits, targets = [], []
    amp = device.type == "cuda"
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.float16, enabled=amp):
        for images, labels in loader:
            logits.append(model(images.to(device, memory_format=torch.channels_last)).float().cpu())
            targets.append(labels)
    total = len(loader.dataset)
    return evaluation(gather_rows(dist, torch.cat(logits), total, device),
                      gather_rows(dist, torch.cat(targets), total, device))


def evaluation(logits: torch.Tensor, targets: torch.Tensor) -> Evaluation:
    torch = import_torch()
    loss = float(torch.nn.functional.cross_entropy(logits, targets))
    predictions = logits.argmax(1)
    return Evaluation(loss, accuracy(logits, targets) / max(1, len(targets)),
                      tuple(int(p) for p in predictions), tuple(int(t) for t in targets))
