"""What a training run shows and leaves: progress bars, the summary table, metrics.csv, curves.png and
confusion_matrix.png (files written atomically)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgecnn.runtime.core.outputs import write_atomic

if TYPE_CHECKING:
    from rich.progress import Progress

    from edgecnn.finetune import FinetuneResult

METRICS_COLUMNS = ("phase", "epoch", "train_loss", "train_top1", "val_loss", "val_top1", "lr", "seconds")


def write_metrics(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """One row per epoch, both phases, in order."""
    text = io.StringIO()
    writer = csv.DictWriter(text, METRICS_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_atomic(path, text.getvalue().encode())


def plot_curves(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Loss and top-1 per epoch, train and validation; a dotted line where full fine-tuning starts."""
    from edgecnn.runtime.core.cache import import_matplotlib

    import_matplotlib()  # its font cache in ours, not in ~/.config and ~/.cache
    from matplotlib.figure import Figure

    epochs = [row["epoch"] for row in rows]
    figure = Figure(figsize=(10, 4), layout="constrained")
    loss_axes, top1_axes = figure.subplots(1, 2)
    for axes, key, title in ((loss_axes, "loss", "loss"), (top1_axes, "top1", "top-1 accuracy")):
        axes.plot(epochs, [row[f"train_{key}"] for row in rows], "o-", label="train")
        axes.plot(epochs, [row[f"val_{key}"] for row in rows], "o-", label="validation")
        phases = [row["phase"] for row in rows]
        for start in [epochs[i] - 0.5 for i in range(1, len(rows)) if phases[i] != phases[i - 1]]:
            axes.axvline(start, color="gray", linestyle=":", label="all layers train")
        axes.set(title=title, xlabel="epoch")
        axes.legend()
        axes.grid(alpha=0.3)
    return _save(figure, path)


def plot_confusion(labels: Sequence[str], targets: Sequence[int], predictions: Sequence[int],
                   path: Path) -> Path:
    """Validation confusion matrix of the best checkpoint: rows true class, columns predicted."""
    import numpy as np

    from edgecnn.runtime.measure.plots import save_confusion  # the same picture `edgecnn eval` draws

    counts = np.zeros((len(labels), len(labels)), dtype=int)
    for target, prediction in zip(targets, predictions, strict=True):
        counts[target, prediction] += 1
    top1 = np.trace(counts) / max(1, counts.sum())
    save_confusion(counts, list(labels), list(labels), path,
                   title=f"validation top-1 {top1:.1%} ({counts.sum()} images)")
    return path


def _save(figure: Any, path: Path) -> Path:
    """Render with Agg into memory (a bare Figure needs no display or pyplot state), then write."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return write_atomic(path, buffer.getvalue())


def progress_bars(enabled: bool) -> Progress:
    """One bar per stage (features, head, full) with loss, accuracy and ETA; on stderr."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("{task.description:<8}"), BarColumn(bar_width=16), MofNCompleteColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(compact=True), TextColumn("{task.fields[status]}"),
                    console=Console(stderr=True), disable=not enabled)


PHASE_NAMES = {"head": "head epoch", "full": "full fine-tune epoch"}


def best_epoch_text(result: FinetuneResult) -> str:
    """Which epoch of which phase was best: "full fine-tune epoch 1 of 3, after 10 head epochs"."""
    before = 0
    for phase, count in result.phases:
        if result.best_epoch <= before + count:
            text = f"{PHASE_NAMES.get(phase, phase)} {result.best_epoch - before} of {count}"
            return text + (f", after {before} head epochs" if before else "")
        before += count
    return f"epoch {result.best_epoch} of {result.epochs}"
