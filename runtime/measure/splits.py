"""Which images `eval` scores: the fine-tune run's validation split, its training split, or all of DATA.

A bundle (report.json) and a checkpoint record the run's split as paths relative to its data folder
(`RunSplit`). `auto` scores the validation split whenever DATA holds any of the run's training images
(its data folder, a copy, or a folder it was copied from, like samples/photos for `make demo`), so
`eval bundles/demo samples/photos` no longer counts images the model was trained on as a test; a
folder without any (a test set of its own) is scored whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from edgecnn.runtime.core.bundle import Bundle, RunSplit
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.images import iter_image_files

SPLITS = ("auto", "val", "train", "all")
PART = {"val": "validation", "train": "training"}


@dataclass(frozen=True)
class Selection:
    """The labelled images to score and which split they are."""

    items: list[tuple[Path, int]]  # (file, label index)
    split: str  # "val" | "train" | "all"
    missing: int = 0  # images of the run's split that DATA does not hold


def bundle_split(model: Path) -> RunSplit | None:
    """The run split a bundle folder's report.json records; None for a model file, a --pretrained or an
    older bundle."""
    if not Path(model).is_dir():
        return None
    report = Bundle(model).report
    return report.split if report is not None else None


def select_images(data: Path, labels: tuple[str, ...], split: str, run: RunSplit | None) -> Selection:
    """The images of `split` under `data`, labelled by their class folder; EdgecnnError when there are
    none, or when `split` needs a run split the model does not record."""
    if split not in SPLITS:
        raise EdgecnnError(f"--split {split!r} is not a split; choose {', '.join(SPLITS)}")
    if split == "auto":
        split = "val" if run is not None and holds_training_images(data, run) else "all"
    if split == "all":
        return Selection(labelled_images(data, labels), "all")
    if run is None or not getattr(run, split):
        raise EdgecnnError(f"--split {split}: this model records no {PART[split]} split of a fine-tune run "
                           "(a --pretrained, foreign or older export); use --split all")
    files = [_inside(data, rel) for rel in getattr(run, split)]
    present = [file for file in files if file.is_file()]
    if not present:
        raise EdgecnnError(f"{data} holds none of the run's {len(files)} {PART[split]} images (it was "
                           f"trained on {run.data_root or 'another folder'}); give that data folder, or "
                           f"--split all to score every image of {data}")
    return Selection([(file, _label(file, labels)) for file in present], split, len(files) - len(present))


def holds_training_images(data: Path, run: RunSplit) -> bool:
    """Whether scoring all of DATA would count images the run trained on (stops at the first found)."""
    return any(_inside(data, rel).is_file() for rel in run.train)


def labelled_images(data: Path, labels: tuple[str, ...]) -> list[tuple[Path, int]]:
    """(file, label index) for every image under class folders named like the model's labels."""
    root = data / "val" if (data / "val").is_dir() else data
    if not root.is_dir():
        raise EdgecnnError(f"{data} is not a folder; give a folder with one subfolder per class")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        raise EdgecnnError(f"{root} has no class subfolders; put each class's images in its own folder")
    unknown = [f.name for f in folders if f.name not in labels]
    if unknown:
        raise EdgecnnError(f"class folder(s) {', '.join(unknown)} are not labels of this model "
                           f"(it knows {', '.join(labels[:8])}{'...' if len(labels) > 8 else ''})")
    items = [(file, labels.index(folder.name)) for folder in folders for file in iter_image_files(folder)]
    if not items:
        raise EdgecnnError(f"{root} holds no images ({', '.join(f.name for f in folders)} are empty)")
    return items


def _inside(data: Path, rel: str) -> Path:
    """DATA/rel for a recorded path; EdgecnnError for one that would lead outside DATA."""
    parts = PurePosixPath(rel)
    if not rel or parts.is_absolute() or ".." in parts.parts:
        raise EdgecnnError(f"the model's recorded split lists {rel!r}, not a path inside a data folder; "
                           "export the bundle again, or use --split all")
    return Path(data).joinpath(*parts.parts)


def _label(file: Path, labels: tuple[str, ...]) -> int:
    if file.parent.name not in labels:
        raise EdgecnnError(f"{file}: its class folder {file.parent.name!r} is not a label of this model "
                           f"(it knows {', '.join(labels[:8])}{'...' if len(labels) > 8 else ''})")
    return labels.index(file.parent.name)
