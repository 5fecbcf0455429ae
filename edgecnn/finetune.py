"""`edgecnn finetune`: an ImageNet-pretrained CNN adapted to a folder of photos, checkpointed, resumable.

Two phases. "head": the backbone stays frozen, its pooled features are computed once and the new
classifier trains on them in seconds. "full" (optional, `epochs`): every layer trains, the backbone at
a lower learning rate. Each epoch ends by writing last.pt (best.pt when validation loss improves), and
each epoch's randomness derives from (seed, epoch) alone, so `resume` retraces an uninterrupted run.
Under torchrun (or `edgecnn finetune --devices/--nproc`) the same loop runs in every process; see
edgecnn/distributed.py and docs/distributed.md.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgecnn.checkpoint import Checkpoint, check_arg_types, load_checkpoint, save_checkpoint
from edgecnn.data import (
    DataSplit,
    ImageDataset,
    TrainTransform,
    ValTransform,
    drop_unreadable,
    make_loader,
    scan_folder,
)
from edgecnn.device import check_train_device, import_torch
from edgecnn.errors import EdgecnnError
from edgecnn.feature_cache import head_features
from edgecnn.feature_engine import ENGINES
from edgecnn.features import HeadPhase, cached_features, feature_engine
from edgecnn.models import DEFAULT_ARCH
from edgecnn.plots import plot_confusion, plot_curves, progress_bars, write_metrics
from edgecnn.process_group import (
    Dist,
    broadcast_weights,
    main_first,
    per_rank_batch,
    process_group,
    shard_sampler,
    wrap_ddp,
)
from edgecnn.runtime.core.metadata import Preprocess
from edgecnn.runtime.core.options import check_range
from edgecnn.runtime.core.outputs import check_distinct, check_output_path, check_writable, lock_out
from edgecnn.training import Evaluation, FullPhase, make_optimizer, param_groups, validate_model
from edgecnn.unknown import (
    DEFAULT_ACCEPT_RATE,
    DEFAULT_RULE,
    PRETRAINED_HEAD_RULES,
    Detector,
    check_accept_rate,
    check_rule,
    describe,
    fit_detector,
)

if TYPE_CHECKING:
    import torch
    from rich.progress import Progress
    from torch.utils.data import DataLoader

OUTPUTS = ("best.pt", "last.pt", "metrics.csv", "curves.png", "confusion_matrix.png")
RESULT_PATHS = ("best", "last", "metrics", "curves", "confusion_matrix")  # FinetuneResult.paths, as OUTPUTS
_NO_BEST = {"val_loss": math.inf, "val_top1": 0.0, "epoch": 0}


PHASES = ("head", "full")
# how to run, not what to train: kept out of checkpoint args
_RUN_ONLY = ("resume", "progress", "plots", "force", "dist_timeout")


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
    unknown_rule: str = DEFAULT_RULE  # the unknown detector fitted at the end (edgecnn/unknown.py)
    accept_rate: float = DEFAULT_ACCEPT_RATE  # share of known validation images the detector accepts
    feature_engine: str = "auto"  # runs the frozen backbone: auto, openvino, onnxruntime or torch
    bf16: bool = False  # full phase on a CPU under bfloat16 autocast (validation stays float32)
    imgsz: int = 0  # square input size in pixels; 0: the architecture's own (224 for the listed ones)
    resume: bool = False
    progress: bool = True
    plots: bool = True  # curves.png and confusion_matrix.png (a retrain's run folder is thrown away)
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
        """The config a checkpoint recorded, each value of its field's type (EdgecnnError naming the first
        that is not); `check()` then holds it to the command line's ranges."""
        known = {k: v for k, v in args.items() if k in cls.__dataclass_fields__}
        texts = {"data": "", "out": "", "weights": ""}  # recorded as text whatever their type here
        check_arg_types(known, {f.name: f.default for f in fields(cls)}, texts)
        known.update(data=Path(known["data"]), out=Path(known["out"]),
                     weights=Path(known["weights"]) if known.get("weights") else None)
        return cls(**{**known, **overrides})

    def check(self) -> None:
        """EdgecnnError naming the valid range for the first bad value (the options table's for the
        values a command takes, the same message as the CLI's)."""
        for name in ("head_epochs", "epochs", "patience", "batch_size", "workers", "dist_timeout", "seed",
                     "lr"):
            check_range(name, getattr(self, name))
        for name, (ok, valid) in {
            "lr": (self.lr > 0, "> 0"), "backbone_lr_scale": (self.backbone_lr_scale >= 0, ">= 0"),
            "aug_views": (self.aug_views >= 0, ">= 0"), "weight_decay": (self.weight_decay >= 0, ">= 0"),
            "label_smoothing": (0 <= self.label_smoothing < 1, "in [0, 1)"),
            "warmup": (0 <= self.warmup < 1, "in [0, 1)"), "val_split": (0 < self.val_split < 1, "in (0, 1)"),
        }.items():
            if not ok:
                raise EdgecnnError(f"{name} = {getattr(self, name)} is invalid; it must be {valid}")
        if self.feature_engine not in ENGINES:
            raise EdgecnnError(f"unknown feature engine {self.feature_engine!r}; available: "
                               f"{', '.join(ENGINES)}")
        check_accept_rate(self.accept_rate)
        check_rule(self.unknown_rule)
        check_train_device(self.device)
        if not any(epochs for _, epochs in phases(self)):
            raise EdgecnnError("nothing to train: give --head-epochs > 0 (with --freeze) or --epochs > 0")


def phases(config: FinetuneConfig) -> list[tuple[str, int]]:
    """(phase, epochs) in order; the head phase needs the frozen backbone."""
    return [("head", config.head_epochs if config.freeze else 0), ("full", config.epochs)]


@dataclass(frozen=True)
class FinetuneResult:
    run_dir: Path
    best_top1: float  # validation top-1 of best.pt
    best_val_loss: float
    best_epoch: int
    epochs: int  # epochs trained, both phases
    labels: tuple[str, ...]
    train_images: int
    val_images: int
    skipped: tuple[str, ...]  # unreadable images left out
    seconds: float
    paths: dict[str, Path] = field(default_factory=dict)  # best, last, metrics, curves, confusion_matrix
    unknown: str = ""  # the unknown detector stored in best.pt, in words
    phases: tuple[tuple[str, int], ...] = ()  # epochs per phase, in order: (("head", 10), ("full", 3))
    groups: int = 0  # near-duplicate groups the split kept whole (0: not grouped, e.g. train/ + val/)


def finetune(config: FinetuneConfig) -> FinetuneResult:
    """Train, checkpoint every epoch, write metrics and plots; Ctrl-C first saves a resumable last.pt.
    Started by torchrun (or `launch`), each process trains its share and rank 0 writes the files."""
    import_torch()
    config.check()
    began = time.perf_counter()
    out, created = Path(config.out), not Path(config.out).exists()
    with lock_out(out, "--out"), process_group(config.device, config.dist_timeout) as (dist, device):
        try:
            run = Run.resume(config, dist, device) if config.resume else Run.start(config, dist, device)
        except KeyboardInterrupt:
            if created and dist.main and out.is_dir() and not any(out.iterdir()):
                out.rmdir()  # interrupted while scanning the data or building the model: leave no empty run
            raise KeyboardInterrupt("before training began, nothing was saved; run the command again"
                                    ) from None
        with progress_bars(config.progress and dist.main) as progress:
            try:  # the unknown detector and the plots too: after the epochs, last.pt holds the last one
                run.train(progress)
                return run.finish(began, progress)
            except KeyboardInterrupt:
                first = run.save_initial()
                kept = "the starting weights (no epoch had finished)" if first else "the last finished epoch"
                raise KeyboardInterrupt(f"{out / 'last.pt'} holds {kept}; continue with: edgecnn finetune "
                                        f"--resume {out}") from None


class Run:
    """One training run's state: model, data split, history, best so far, and where training stands."""

    def __init__(self, config: FinetuneConfig, split: DataSplit, model: torch.nn.Module,
                 preprocess: Preprocess, state: dict[str, Any], dist: Dist, device: torch.device) -> None:
        torch = import_torch()
        self.config, self.split, self.preprocess, self.state = config, split, preprocess, state
        self.out, self.dist, self.device = Path(config.out), dist, device
        self.batch_size = per_rank_batch(config.batch_size, dist.world_size)
        # channels-last: ~1.5x faster convolutions on this CPU (oneDNN); also the layout tensor cores like
        self.model = model.to(self.device, memory_format=torch.channels_last)
        self.history: list[dict[str, Any]] = list(state.get("history", []))
        self.best: dict[str, float] = dict(state.get("best", _NO_BEST))
        self.position = (state.get("phase", "head"), state.get("phase_epoch", 0), state.get("stopped", False))
        # kept until an epoch ends, so that Ctrl-C before then can still leave a resumable last.pt
        self.initial = None if self.history else {k: v.detach().cpu().clone()
                                                  for k, v in model.state_dict().items()}
        self.head: HeadPhase | None = None  # the head phase of this process, with its cached features

    @classmethod
    def start(cls, config: FinetuneConfig, dist: Dist, device: torch.device) -> Run:
        from edgecnn.models import build_model, sized

        torch = import_torch()
        split = main_first(dist, lambda: _new_split(config))
        torch.manual_seed(config.seed)  # the new classifier's initial weights
        built = build_model(config.arch, len(split.labels), pretrained=True, weights=config.weights)
        preprocess = sized(built, config.imgsz) if config.imgsz else built.preprocess
        return cls(config, split, built.model, preprocess, {}, dist, device)

    @classmethod
    def resume(cls, config: FinetuneConfig, dist: Dist, device: torch.device) -> Run:
        """Continue from RUN_DIR/last.pt with the configuration stored in it (read by rank 0, sent to all)."""
        checkpoint, split = main_first(dist, lambda: _last_checkpoint(Path(config.out)))
        try:  # a recorded option is held to the command line's ranges: `lr -1` or `head_epochs 10**9` refused
            config = FinetuneConfig.from_args(checkpoint.args, out=Path(config.out), resume=True,
                                              progress=config.progress, dist_timeout=config.dist_timeout)
            config.check()
        except EdgecnnError as exc:
            raise EdgecnnError(f"{Path(config.out) / 'last.pt'} records an option that cannot run: {exc}; "
                               "start a new run without --resume") from None
        return cls(config, split, checkpoint.build_model(), checkpoint.preprocess, checkpoint.training_state,
                   dist, device)

    def train(self, progress: Progress) -> None:
        for name, epochs in phases(self.config):
            if epochs and not self._phase_done(name, epochs):
                phase = self._head_phase(progress) if name == "head" else self._full_phase()
                self.head = phase if name == "head" else self.head
                self._run_phase(name, epochs, phase, progress)

    def _phase_done(self, name: str, epochs: int) -> bool:
        phase, done, stopped = self.position
        if name != phase:
            return PHASES.index(name) < PHASES.index(phase)
        return stopped or done >= epochs

    def _head_phase(self, progress: Progress) -> HeadPhase:
        config = self.config
        self.model.requires_grad_(False)
        self.model.get_classifier().requires_grad_(True)
        task = progress.add_task("features", total=len(self.split.train) + len(self.split.val), status="")
        features = (head_features(self.model, self.preprocess, self.split, config, self.device,
                                  lambda n: progress.advance(task, n)) if self.dist.world_size == 1 else None)
        features = features or self._shared_features(progress, task)
        # every rank trains the same head on all features: milliseconds, and exactly one process's result
        return HeadPhase(self.model, features[0], features[1], config.batch_size, config.label_smoothing,
                         self.device)

    def _shared_features(self, progress: Progress, task: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every process computes its share of the features, without the cache (several processes)."""
        views = [ValTransform(self.preprocess)] + [TrainTransform(self.preprocess)] * self.config.aug_views
        loaders = [self._loader(self.split.train, views), self._loader(self.split.val)]
        engine = feature_engine(self.config.feature_engine, self.model, self.preprocess, self.device,
                                loaders[0].dataset)
        progress.update(task, status=engine.name)
        try:
            return [cached_features(self.model, loader, self.dist, self.device,
                                    lambda n: progress.advance(task, n), engine) for loader in loaders]
        finally:
            engine.close()

    def _full_phase(self) -> FullPhase:
        self.model.requires_grad_(True)
        dataset = ImageDataset(self.split.root, self.split.train, [TrainTransform(self.preprocess)])
        sampler = shard_sampler(self.dist, dataset, shuffle=True)
        train = make_loader(dataset, self.batch_size, shuffle=True, workers=self.config.workers,
                            seed=self.config.seed, drop_last=len(sampler or dataset) > self.batch_size,
                            sampler=sampler)
        return FullPhase(wrap_ddp(self.dist, self.model, self.device), train, self._loader(self.split.val),
                         self.device, self.config.label_smoothing, self.dist, bf16=self.config.bf16)

    def _loader(self, samples: tuple[tuple[str, int], ...], transforms: list | None = None) -> DataLoader:
        """Validation pixels (or seeded `transforms`), in order, this rank's share."""
        dataset = ImageDataset(self.split.root, samples, transforms or [ValTransform(self.preprocess)],
                               seed=self.config.seed)  # views the same in every process and worker
        return make_loader(dataset, self.batch_size, shuffle=False, workers=self.config.workers,
                           seed=self.config.seed, sampler=shard_sampler(self.dist, dataset, shuffle=False))

    def _run_phase(self, name: str, epochs: int, phase: Any, progress: Progress) -> None:
        """Epochs of one phase with early stopping; picks up mid-phase when resuming."""
        torch, config = import_torch(), self.config
        groups = param_groups(self.model, config.lr, config.backbone_lr_scale, head_only=name == "head")
        optimizer, scheduler = make_optimizer(groups, config.weight_decay, epochs * phase.steps_per_epoch,
                                              config.warmup)
        start, bad_epochs = self._resume_phase(name, phase, optimizer, scheduler)
        steps = phase.steps_per_epoch
        task = progress.add_task(name, total=epochs * steps, completed=start * steps, status="")

        def on_step(loss: float, top1: float) -> None:
            progress.update(task, advance=1, status=f"loss {loss:.3f} acc {top1:.0%} {self._best_text()}")

        for phase_epoch in range(start, epochs):
            epoch, began = len(self.history) + 1, time.perf_counter()
            seed = config.seed * 100_003 + epoch  # the epoch's shuffling, augmentation and dropout
            torch.manual_seed(seed if name == "head" else self.dist.rank_seed(seed))  # heads stay identical
            stats = phase.train_epoch(optimizer, scheduler, seed, on_step)
            row = {"phase": name, "epoch": epoch, "train_loss": stats.loss, "train_top1": stats.top1}
            bad_epochs = self._end_epoch(row, phase.validate(), optimizer, began, phase_epoch, bad_epochs)
            training_state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                              "phase_state": phase.state_dict(), "bad_epochs": bad_epochs}
            self._save_last(training_state)
            if self.position[2]:
                progress.update(task, completed=epochs * steps, status=f"early stop {self._best_text()}")
                break

    def _resume_phase(self, name: str, phase: Any, optimizer: Any, scheduler: Any) -> tuple[int, int]:
        """(first epoch, epochs without improvement) of the phase: from last.pt when it stopped mid-phase."""
        if self.position[0] == name and "optimizer" in self.state:
            optimizer.load_state_dict(self.state["optimizer"])
            scheduler.load_state_dict(self.state["scheduler"])
            phase.load_state_dict(self.state["phase_state"])
            return self.position[1], self.state["bad_epochs"]
        if name == "full" and self.best["epoch"]:
            self._load_best()  # from the best head
        return 0, 0

    def _end_epoch(self, row: dict[str, Any], result: Any, optimizer: Any, began: float, phase_epoch: int,
                   bad_epochs: int) -> int:
        """Record the epoch, keep best.pt on a lower validation loss; the new count of epochs without one."""
        self.history.append({**row, "val_loss": result.loss, "val_top1": result.top1,
                             "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - began})
        self._check_finite(row["phase"], row["epoch"], row["train_loss"], result.loss)
        improved = result.loss < self.best["val_loss"]
        bad_epochs = 0 if improved else bad_epochs + 1
        self.position = (row["phase"], phase_epoch + 1, bad_epochs >= self.config.patience)
        if improved:
            self.best = {"val_loss": result.loss, "val_top1": result.top1, "epoch": row["epoch"]}
            if self.dist.main:
                save_checkpoint(self._checkpoint({}), self.out / "best.pt")
        return bad_epochs

    def _best_text(self) -> str:
        return f"val {self.best['val_top1']:.0%}" if self.best["epoch"] else ""

    def _checkpoint(self, training_state: dict[str, Any]) -> Checkpoint:
        row = self.history[-1] if self.history else {}
        metrics = {k: float(v) for k, v in row.items() if k not in ("phase", "epoch")}
        return Checkpoint(arch=self.config.arch, labels=list(self.split.labels), preprocess=self.preprocess,
                          state_dict={k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                          epoch=len(self.history), metrics=metrics, args=self.config.to_args(),
                          split=self.split.record(), training_state=training_state)

    def _save_last(self, training_state: dict[str, Any]) -> None:
        self.initial = None
        if not self.dist.main:
            return
        phase, phase_epoch, stopped = self.position
        state = {**training_state, "phase": phase, "phase_epoch": phase_epoch, "stopped": stopped,
                 "best": self.best, "history": self.history, "world_size": self.dist.world_size}
        save_checkpoint(self._checkpoint(state), self.out / "last.pt")
        write_metrics(self.history, self.out / "metrics.csv")

    def _load_best(self) -> None:
        """best.pt's weights on every rank (rank 0 reads the file and sends them)."""
        if self.dist.main:
            self.model.load_state_dict(load_checkpoint(self.out / "best.pt").state_dict)
        broadcast_weights(self.dist, self.model)

    def _check_finite(self, phase: str, epoch: int, train_loss: float, val_loss: float) -> None:
        """A loss of NaN/inf (a too high --lr) ends the run in one line, before last.pt is overwritten."""
        if math.isfinite(train_loss) and math.isfinite(val_loss):
            return
        kept = (f"best.pt holds epoch {int(self.best['epoch'])}" if (self.out / "best.pt").is_file()
                else "no best.pt was written")
        raise EdgecnnError(f"training diverged in {phase} epoch {epoch} (train loss {train_loss}, val loss "
                           f"{val_loss}) with --lr {self.config.lr:g}; {kept}: lower --lr, e.g. "
                           f"{self.config.lr / 10:g}")

    def save_initial(self) -> bool:
        """Interrupted before any epoch finished: last.pt with the starting weights, so --resume works.
        True when it wrote one (False: an epoch had finished, its last.pt stands)."""
        if self.initial is None:
            return False
        if self.dist.main:
            state = {"phase": self.position[0], "phase_epoch": 0, "stopped": False}
            checkpoint = replace(self._checkpoint(state), state_dict=self.initial)
            save_checkpoint(checkpoint, self.out / "last.pt")
        return True

    def finish(self, began: float, progress: Progress) -> FinetuneResult:
        """The unknown detector, plots, the confusion matrix of best.pt on the validation images, and the
        result record."""
        self._load_best()
        detector = self._fit_unknown(progress)
        result = self._best_evaluation()
        paths = {name: self.out / file for name, file in zip(RESULT_PATHS, OUTPUTS, strict=True)}
        if self.dist.main:
            write_metrics(self.history, paths["metrics"])
        if self.dist.main and self.config.plots:
            plot_curves(self.history, paths["curves"])
            plot_confusion(self.split.labels, result.targets, result.predictions, paths["confusion_matrix"])
        return FinetuneResult(self.out, self.best["val_top1"], self.best["val_loss"], int(self.best["epoch"]),
                              len(self.history), self.split.labels, len(self.split.train),
                              len(self.split.val), self.split.skipped, time.perf_counter() - began,
                              paths, describe(detector), _phase_counts(self.history), self.split.groups)

    def _fit_unknown(self, progress: Progress) -> Detector:
        """Fit the unknown detector on best.pt's pooled features (training images' plain view) and
        calibrate it on the validation images; stored in best.pt. A best head epoch reuses the cached
        features of the frozen backbone; after full fine-tuning they are computed again."""
        from edgecnn.models import pretrained_head

        train, val = self._final_features(progress)
        rule, config = self.config.unknown_rule, self.config
        head = pretrained_head(config.arch, config.weights) if rule in PRETRAINED_HEAD_RULES else None
        detector = fit_detector(rule, train, val, self.model.get_classifier(), len(self.split.labels),
                                config.accept_rate, head)
        if self.dist.main:
            best = load_checkpoint(self.out / "best.pt")
            save_checkpoint(replace(best, unknown=detector), self.out / "best.pt")
        return detector

    def _final_features(self, progress: Progress) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(pooled features, labels) of the training images' plain view and of the validation images."""
        best_phase = next((row["phase"] for row in self.history if row["epoch"] == self.best["epoch"]), "")
        if self.head is not None and best_phase == "head" and self.split.train:
            views = len(self.head.train_labels) // len(self.split.train)  # the plain view comes first
            features = self.head.train_features.view(len(self.split.train), views, -1)[:, 0].cpu()
            return [(features, self.head.train_labels[::views].cpu()),
                    (self.head.val_features.cpu(), self.head.val_labels.cpu())]
        loaders = [self._loader(self.split.train), self._loader(self.split.val)]
        task = progress.add_task("unknown", total=sum(len(loader.sampler) for loader in loaders), status="")
        engine = feature_engine(self.config.feature_engine, self.model, self.preprocess, self.device,
                                loaders[0].dataset)
        try:
            found = [cached_features(self.model, loader, self.dist, self.device,
                                     lambda n: progress.advance(task, n), engine) for loader in loaders]
        finally:
            engine.close()
        return [(features[:, 0], labels) for features, labels in found]


    def _best_evaluation(self) -> Evaluation:
        """best.pt on the validation images: a head epoch has the frozen backbone, so its cached features
        serve (milliseconds instead of a pass through the network); otherwise the whole network."""
        best_phase = next((row["phase"] for row in self.history if row["epoch"] == self.best["epoch"]), "")
        if self.head is not None and best_phase == "head":
            return self.head.validate()
        return validate_model(self.model, self._loader(self.split.val), self.device, self.dist)


def _phase_counts(history: list[dict[str, Any]]) -> tuple[tuple[str, int], ...]:
    counts: dict[str, int] = {}
    for row in history:
        counts[row["phase"]] = counts.get(row["phase"], 0) + 1
    return tuple(counts.items())


def _new_split(config: FinetuneConfig) -> DataSplit:
    """The run folder made ready and the images found and decode-checked (rank 0's job)."""
    split = scan_folder(config.data, config.val_split, config.seed)  # data errors first: no empty run folder
    check_distinct({"--out": Path(config.out)}, {"DATA": Path(config.data)})  # plots would become images
    _prepare_out(Path(config.out), config.force)
    return drop_unreadable(split, threads=max(1, config.workers))


def _last_checkpoint(out: Path) -> tuple[Checkpoint, DataSplit]:
    last = out / "last.pt"
    if not last.is_file():
        raise EdgecnnError(f"no {last} to resume from; start a new run without --resume")
    checkpoint = load_checkpoint(last)
    if checkpoint.split is None:
        raise EdgecnnError(f"{last} records no data split; start a new run without --resume")
    split = DataSplit.from_record(checkpoint.split, checkpoint.labels)
    if not split.root.is_dir():
        raise EdgecnnError(f"the run's data folder {split.root} is gone; restore it to resume the run")
    return checkpoint, split


def _prepare_out(out: Path, force: bool) -> None:
    """Refuse to mix two runs in one folder; with `force`, remove only the files a run writes."""
    if out.exists() and not out.is_dir():
        raise EdgecnnError(f"--out {out} is a file; give a folder for the run")
    check_output_path(out, "--out", folder=True)
    check_writable(out, "--out")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise EdgecnnError(f"run folder {out} is not empty; pass --force to overwrite it or "
                               f"--resume {out} to continue it")
        for name in OUTPUTS:
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
