"""The review queue's frames as items (`edgecnn review DIR`, and the page's review API can use the same):
list them, read a labels file, move labelled frames into a training data folder.

A frame's id is its file name without `.jpg` (`CAMERA-SESSION-FRAME`, unique in the queue: the camera and
the run's start are in it). A labels file holds one `id,label` a line (CSV; a first line `id,label` and
lines starting with `#` are skipped) or JSON lines `{"id": ..., "label": ...}`; every line is checked
before any frame moves. A move is a hard link to a name that did not exist in `DATA/LABEL/` (never
replacing a file), then the queue's name removed: the frame is whole in one place or the other, and a
frame two writers label at once goes to the first of them (the second is told it is gone).
"""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.files import read_bounded
from edgecnn.runtime.core.records import Origin, read_record
from edgecnn.runtime.live.review import ReviewRecord
from edgecnn.runtime.live.review_desk import move_frame

SIDECAR_LIMIT = 1 << 20  # bytes: a sidecar is about 1 KB
LABELS_LIMIT = 16 << 20  # bytes of a labels file
MAX_NAME_BYTES = 255  # a folder name on ext4, NTFS, APFS


@dataclass(frozen=True)
class QueuedFrame:
    """One frame of the queue: where it is and what the model said."""

    id: str
    camera: str
    answer: str  # the folder it is queued in: the model's top-1 class, or "unknown"
    why: str  # "unknown", "uncertain", "short" or "sample"
    score: float
    image: Path


@dataclass(frozen=True)
class Moved:
    """A labelled frame, moved out of the queue into the data folder."""

    id: str
    label: str
    image: Path  # its new place, DATA/LABEL/NAME.jpg


def queued_frames(folder: Path) -> list[QueuedFrame]:
    """Every whole item of the queue (JPEG + sidecar), sorted by camera, answer and id."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EdgecnnError(f"review folder {folder} is not a folder; give the DIR of camera --review DIR")
    items = []
    for sidecar in sorted(folder.glob("*/*/*.json")):
        image = sidecar.with_suffix(".jpg")
        if image.is_file():  # the sidecar is written last; a lone sidecar is not an item
            items.append(_item(sidecar, image))
    return sorted(items, key=lambda item: (item.camera, item.answer, item.id))


def _item(sidecar: Path, image: Path) -> QueuedFrame:
    origin = Origin(str(sidecar), fix="remove it with its .jpg, or let the camera queue it again")
    record = read_record(ReviewRecord, read_bounded(sidecar, SIDECAR_LIMIT, "sidecar"), origin, SIDECAR_LIMIT)
    camera, answer = image.parent.parent.name, image.parent.name
    return QueuedFrame(image.stem, camera, answer, record.why, record.score, image)


def read_labels(path: Path) -> list[tuple[str, str]]:
    """(id, label) pairs of a labels file (CSV `id,label` or JSON lines), each label a valid class name."""
    text = read_bounded(path, LABELS_LIMIT, "labels file").decode("utf-8-sig", errors="replace")
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1)]
    lines = [(number, line) for number, line in lines if line and not line.startswith("#")]
    pairs = [_pair(path, number, line) for number, line in lines]
    if pairs and pairs[0] == ("id", "label"):
        pairs = pairs[1:]  # the CSV header
    if not pairs:
        raise EdgecnnError(f"labels file {path} holds no `id,label` lines; write one per frame, e.g. "
                           "cup-20261207-101500-000042,cup")
    return pairs


def _pair(path: Path, number: int, line: str) -> tuple[str, str]:
    where = f"labels file {path} line {number}"
    if line.startswith("{"):
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise EdgecnnError(f"{where} is not JSON ({exc.msg}); write {{\"id\": ..., \"label\": ...}}"
                               ) from None
        fields = [data.get("id"), data.get("label")] if isinstance(data, dict) else []
    else:
        fields = next(csv.reader(io.StringIO(line)))
    if len(fields) != 2 or not all(isinstance(field, str) and field.strip() for field in fields):
        raise EdgecnnError(f"{where} is {line[:80]!r}; write `id,label` (or a JSON line with id and label)")
    frame, label = (field.strip() for field in fields)
    problem = label_problem(label)
    if problem:
        raise EdgecnnError(f"{where}: label {label[:80]!r} {problem}")
    return frame, label


def label_problem(label: str) -> str | None:
    """Why `label` cannot be a class folder's name, or None."""
    if label in (".", "..") or label.startswith("."):
        return "starts with a dot (a hidden folder, which finetune skips); give a class name"
    if "/" in label or "\\" in label:
        return "holds a slash; a class name is one folder name"
    if any(unicodedata.category(char).startswith("C") for char in label):
        return "holds a control character; a class name is printable text"
    if len(label.encode("utf-8")) > MAX_NAME_BYTES:
        return f"is longer than {MAX_NAME_BYTES} bytes, too long for a folder name"
    if label != unicodedata.normalize("NFC", label):
        return "is not in Unicode NFC form (it would print like another class); retype it"
    return None


def label_frames(folder: Path, pairs: list[tuple[str, str]], data: Path) -> list[Moved]:
    """Move each listed frame of the queue into `data/LABEL/`; every id and label is checked first."""
    frames = {item.id: item for item in queued_frames(folder)}
    chosen: dict[str, str] = {}
    for frame, label in pairs:
        if frame not in frames:
            raise EdgecnnError(f"frame {frame!r} is not in the review queue {folder} (edgecnn review "
                               f"{folder} --list shows the ids); nothing was moved")
        if chosen.setdefault(frame, label) != label:
            raise EdgecnnError(f"frame {frame!r} is labelled twice ({chosen[frame]!r} and {label!r}); keep "
                               "one line per frame; nothing was moved")
    for label in set(chosen.values()):
        _check_class_folder(Path(data), label)
    return [_move(frames[frame], label, Path(data)) for frame, label in chosen.items()]


def _check_class_folder(data: Path, label: str) -> None:
    place = data / label
    if place.exists() and not place.is_dir() or place.is_symlink():
        raise EdgecnnError(f"{place} is not a plain folder; give another label or remove it; nothing was "
                           "moved")


def _move(item: QueuedFrame, label: str, data: Path) -> Moved:
    """The frame and its sidecar into DATA/LABEL/ under a free name, as the page's labels move them."""
    return Moved(item.id, label, move_frame(item.image, data / label))

