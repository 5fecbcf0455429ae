"""Training pieces shared by both phases: the run's settings, device choice, optimiser, schedule, and
full fine-tuning."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgecnn.feature_engine import ENGINES
from edgecnn.models import DEFAULT_ARCH
from edgecnn.runtime.errors import EdgecnnError, install_hint

if TYPE_CHECKING:
    import torch
    from torch.utils.data import DataLoader

    from edgecnn.distributed import Dist

DEVICES = ("auto", "cpu", "cuda")
StepCallback = Callable[[float, float], None]  # (running loss, running top-1) after each batch


PHASES = ("head", "full")
# how to run, not what to train: kept out of checkpoint args
_RUN_ONLY = ("resume", "progress", "force", "dist_timeout")


@dataclass(frozen=True)
class FinetuneConfig:
    data: Path
    out: Path
    arch: str = DEFAULT_ARCH
    weights: Path | None = None  # a local state dict instead of the built-in pretrained weights
    head_epochs: int = 10  # classifier only, on cached features of the frozen backbone
    epochs: int = 0  # then every layer
    batch_size: int = 32
    lr: float = 1e-3  # classifier; the backbone gets lr * backbone_lr_scale
    backbone_lr_scale: float = 0.1
    weight_decay: float = 0.01
    label_smoothing: float = 0.1
    warmup: float = 0.1  # fraction of each phase's steps with a linearly rising learning rate
    val_split: float = 0.2
    seed: int = 0
    device: str = "auto"
    workers: int = 2
    patience: int = 5  # stop a phase after this many epochs without a lower validation loss
    freeze: bool = True  # False: no head phase, all layers train from the start
    aug_views: int = 2  # augmented views per training image cached for the head, beside the plain one
    feature_engine: str = "auto"  # runs the frozen backbone: auto, openvino, onnxruntime or torch
    resume: bool = False
    progress: bool = True
    force: bool = False
    dist_timeout: float = 120.0  # seconds a collective waits for the other processes before the job fails

    def to_args(self) -> dict[str, str | int | float | bool]:
        """Plain values only, so checkpoints stay loadable with `weights_only=True`."""
        args = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _RUN_ONLY}
        args.update(data=str(Path(self.data).resolve()), out=str(self.out),
                    weights=str(self.weights) if self.weights else "")
        return args

    @classmethod
    def from_args(cls, args: dict[str, Any], **overrides: Any) -> FinetuneConfig:
        known = {k: v for k, v in args.items() if k in cls.__dataclass_fields__}
        known.update(data=Path(known["data"]), out=Path(known["out"]),
                     weights=Path(known["weights"]) if known.get("weights") else None)
        return cls(**{**known, **overrides})

    def check(self) -> None:
        """EdgecnnError naming the valid range for the first bad value."""
        for name, (ok, valid) in {
            "head_epochs": (self.head_epochs >= 0, ">= 0"), "epochs": (self.epochs >= 0, ">= 0"),
            "patience": (self.patience >= 1, ">= 1"), "batch_size": (self.batch_size >= 1, ">= 1"),
            "lr": (self.lr > 0, "> 0"), "workers": (self.workers >= 0, ">= 0"),
            "backbone_lr_scale": (self.backbone_lr_scale >= 0, ">= 0"),
            "aug_views": (self.aug_views >= 0, ">= 0"), "weight_decay": (self.weight_decay >= 0, ">= 0"),
            "label_smoothing": (0 <= self.label_smoothing < 1, "in [0, 1)"),
            "warmup": (0 <= self.warmup < 1, "in [0, 1)"), "val_split": (0 < self.val_split < 1, "in (0, 1)"),
            "dist_timeout": (self.dist_timeout > 0, "> 0 seconds"),
        }.items():
            if not ok:
                raise EdgecnnError(f"{name} = {getattr(self, name)} is invalid; it must be {valid}")
        if self.feature_engine not in ENGINES:
            raise EdgecnnError(f"unknown feature engine {self.feature_engine!r}; available: "
                               f"{', '.join(ENGINES)}")
        if self.device not in DEVICES:
            raise EdgecnnError(f"unknown device {self.device!r}; available: {', '.join(DEVICES)}")
        if not any(epochs for _, epochs in phases(self)):
            raise EdgecnnError("nothing to train: give --head-epochs > 0 (with --freeze) or --epochs > 0")


def phases(config: FinetuneConfig) -> list[tuple[str, int]]:
    """(phase, epochs) in order; the head phase needs the frozen backbone."""
    return [("head", config.head_epochs if config.freeze else 0), ("full", config.epochs)]


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


def import_torch():  # noqa: ANN201 - the torch module
    """torch, or the one-line install hint when the [train] extra is missing."""
    try:
        import torch
    except ImportError as exc:
        raise EdgecnnError(f"training needs PyTorch: {install_hint('train')}") from exc
    return torch


def pick_device(name: str) -> torch.device:
    torch = import_torch()
    if name not in DEVICES:
        raise EdgecnnError(f"unknown device {name!r}; available: {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise EdgecnnError("device cuda asked for but PyTorch sees no CUDA GPU; use --device cpu or auto")
    return torch.device("cuda" if name != "cpu" and torch.cuda.is_available() else "cpu")


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
                 label_smoothing: float, dist: Dist | None = None) -> None:
        from edgecnn.distributed import Dist

        torch = import_torch()
        self.model, self.train, self.val, self.device = model, train, val, device
        self.dist = dist or Dist()
        self.amp = device.type == "cuda"  # mixed precision where it pays; CPU stays in float32
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.loss = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.steps_per_epoch = len(train)

    def train_epoch(self, optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LambdaLR,
                    seed: int, on_step: StepCallback) -> EpochStats:
        from edgecnn.distributed import sum_across

        torch = import_torch()
        if hasattr(self.train.sampler, "set_epoch"):
            self.train.sampler.set_epoch(seed)  # the same shuffle on every rank, each taking its share
        self.train.generator.manual_seed(self.dist.rank_seed(seed))  # shuffling and worker augmentation seeds
        self.model.train()
        total_loss, correct, seen = 0.0, 0, 0
        for images, targets in self.train:
            images = images.to(self.device, memory_format=torch.channels_last)
            targets = targets.to(self.device)
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
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

    def evaluate(self) -> Evaluation:
        return evaluate_model(getattr(self.model, "module", self.model), self.val, self.device, self.dist)

    def state_dict(self) -> dict:
        return {"scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


def evaluate_model(model: torch.nn.Module, loader: DataLoader, device: torch.device,
                   dist: Dist | None = None) -> Evaluation:
    """The whole network on the validation images (`fit_frame` pixels), in eval mode. Distributed, each
    rank runs its share and all logits are gathered: exactly the single-process figures, padding dropped."""
    from edgecnn.distributed import Dist, gather_rows

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
