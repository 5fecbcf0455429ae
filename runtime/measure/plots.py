"""The confusion-matrix picture: matplotlib when installed (the [train] extra), else drawn with OpenCV."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from edgecnn.runtime.core.outputs import AtomicPath
from edgecnn.runtime.core.terminal import visible

TEXT_CELLS_UP_TO = 30  # classes; above, the heat map has no per-cell counts (400 classes: 160 000 texts)
TICKS_UP_TO = 100  # classes; above, no class names along the axes (they would overlap anyway)


def plot_text(text: object) -> str:
    """A user-given string (a class name, a bundle name) as matplotlib draws it literally: `$` would
    start mathtext (`$x^$` is a parse error), so it is escaped, and control characters are written out
    (an ESC drawn raw is a glyph warning that puts the escape sequence on the terminal); every plot passes
    user text through this."""
    return visible(text).replace("$", r"\$")


def save_confusion(matrix: np.ndarray, rows: list[str], columns: list[str], path: Path,
                   title: str = "") -> None:
    """Write a counts heat map, true classes down, predicted across; atomically."""
    with AtomicPath(path) as temp:
        if importlib.util.find_spec("matplotlib") is not None:
            _matplotlib(matrix, rows, columns, temp, title)
        else:
            _opencv(matrix, rows, columns, temp)


def _matplotlib(matrix: np.ndarray, rows: list[str], columns: list[str], path: Path, title: str) -> None:
    from edgecnn.runtime.core.cache import import_matplotlib

    import_matplotlib().use("Agg")  # its font cache in ours, not in ~/.config and ~/.cache
    import matplotlib.pyplot as plt

    count = max(len(rows), len(columns))
    size = min(16.0, max(4.0, (0.5 if count <= TEXT_CELLS_UP_TO else 0.12) * count + 2))
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(matrix, cmap="Blues", interpolation="nearest")
    ax.set(xlabel="predicted", ylabel="true", title=plot_text(title))
    if count <= TICKS_UP_TO:
        font = 10 if count <= TEXT_CELLS_UP_TO else 5
        ax.set_xticks(range(len(columns)), [plot_text(c) for c in columns], fontsize=font, rotation=45,
                      ha="right")
        ax.set_yticks(range(len(rows)), [plot_text(r) for r in rows], fontsize=font)
    if count <= TEXT_CELLS_UP_TO:
        _cell_counts(ax, matrix)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)


def _cell_counts(ax: object, matrix: np.ndarray) -> None:
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center",  # type: ignore[attr-defined]
                color="white" if value > threshold else "black")


def _opencv(matrix: np.ndarray, rows: list[str], columns: list[str], path: Path) -> None:
    import cv2

    cell, margin = max(2, min(48, 2000 // max(1, len(rows), len(columns)))), 160  # at most ~2000 px
    canvas = np.full((margin + cell * len(rows) + 10, margin + cell * len(columns) + 10, 3), 255, np.uint8)
    peak = max(int(matrix.max()), 1)
    for (i, j), value in np.ndenumerate(matrix):
        shade = int(255 - 200 * value / peak)
        top_left = (margin + j * cell, margin + i * cell)
        cv2.rectangle(canvas, top_left, (top_left[0] + cell, top_left[1] + cell), (255, shade, shade), -1)
        if cell == 48:
            color = (255, 255, 255) if shade < 128 else (0, 0, 0)
            origin = (top_left[0] + 8, top_left[1] + 30)
            cv2.putText(canvas, str(value), origin, cv2.FONT_HERSHEY_SIMPLEX, 0.5, color)
    if cell < 20:  # names would overlap
        return _write(path, canvas)
    for i, name in enumerate(rows):
        cv2.putText(canvas, name[:18], (4, margin + i * cell + 30), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0))
    for j, name in enumerate(columns):
        cv2.putText(canvas, name[:18], (margin + j * cell + 4, margin - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                    (0, 0, 0))
    _write(path, canvas)


def _write(path: Path, canvas: np.ndarray) -> None:
    import cv2

    if not cv2.imwrite(str(path), canvas):
        raise OSError(f"cannot write {path}")


def save_openset(known: np.ndarray, unknown: np.ndarray, threshold: float, path: Path,
                 title: str = "") -> None:
    """Two panels: the score histograms of known and unknown images with the model's threshold, and the
    ROC curve (unknown = positive) with the threshold's operating point; needs matplotlib."""
    from edgecnn.runtime.core.errors import EdgecnnError, install_hint
    from edgecnn.runtime.measure.openset import auroc, roc_curve

    if importlib.util.find_spec("matplotlib") is None:
        raise EdgecnnError(f"the --unknown plot needs matplotlib: {install_hint('train')}")
    from edgecnn.runtime.core.cache import import_matplotlib

    import_matplotlib().use("Agg")  # its font cache in ours, not in ~/.config and ~/.cache
    import matplotlib.pyplot as plt

    fig, (hist, roc) = plt.subplots(1, 2, figsize=(11, 4.2))
    bins = np.histogram_bin_edges(np.concatenate([known, unknown]), bins=30)
    hist.hist(known, bins=bins, alpha=0.6, color="tab:blue", label=f"known ({len(known)})")
    hist.hist(unknown, bins=bins, alpha=0.6, color="tab:orange", label=f"unknown ({len(unknown)})")
    hist.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3g}")
    hist.set(xlabel="unknown_score (higher = more likely unknown)", ylabel="images", title="scores")
    hist.legend()
    fpr, tpr = roc_curve(known, unknown)
    roc.plot(fpr, tpr, color="tab:red", label=f"AUROC {auroc(known, unknown):.3f}")
    roc.plot([0, 1], [0, 1], color="grey", linestyle=":")
    roc.plot([np.mean(known > threshold)], [np.mean(unknown > threshold)], "ko", label="at the threshold")
    roc.set(xlabel="known images rejected", ylabel="unknown images caught", title="ROC", xlim=(0, 1),
            ylim=(0, 1.02))
    roc.legend(loc="lower right")
    if title:
        fig.suptitle(plot_text(title))
    fig.tight_layout()
    with AtomicPath(path) as temp:
        fig.savefig(temp, dpi=110, format="png")
    plt.close(fig)
