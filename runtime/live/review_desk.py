"""What the review page does to the queue of `camera --review DIR` (review.py): list it, show a frame,
label a frame into the training data or discard it. The routes are in web_review.py.

A queued frame is DIR/CAMERA/ANSWER/NAME.jpg + NAME.json. Its id is 16 hex digits of the SHA-256 of that
path under DIR: the id names a frame of the listing and nothing else, so no request text ever becomes a
path. Labelling moves the JPEG and its sidecar into DATA/CLASS/ under names that were free (a hard link
never replaces a file; across file systems a copy, fsynced, is linked in the same way), then takes them
out of the queue, sidecar first. Answers are taken one at a time; a second answer for a frame already
answered (two tabs) is refused with what the first one did, and nothing is lost either way.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import threading
import unicodedata
from collections import OrderedDict
from pathlib import Path
from typing import Any

from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.outputs import AtomicPath, check_output_path, check_writable
from edgecnn.runtime.core.records import Origin, read_record
from edgecnn.runtime.live.capture import check_label
from edgecnn.runtime.live.names import NAME
from edgecnn.runtime.live.review import ReviewRecord

FRAME_ID = re.compile(r"[0-9a-f]{16}")
PAGE_SIZE = 60  # frames a listing returns unless asked (a phone screen shows ~10)
MOST_PER_PAGE = 200
DATA_FOLDER = "_labelled"  # DIR/_labelled by default: never a camera name (those start with a-z or 0-9)
SIDECAR_LIMIT = 64 * 1024  # characters of a sidecar (one is ~1 kB)
REMEMBERED = 4096  # answered ids kept, to tell a second tab what the first did
NO_LINKS = (errno.EXDEV, errno.EPERM)  # another file system; a file not ours (protected_hardlinks)


class Refused(EdgecnnError):
    """An answer the page must show: `status` is the HTTP status (400 bad, 404 not queued, 409 taken)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def frame_id(relative: str) -> str:
    return hashlib.sha256(relative.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def check_data(folder: Path, data: Path) -> None:
    """DATA may be anywhere but in the queue itself: inside a camera's folder its frames would be queued."""
    inside = _relative(data, folder)
    if inside is not None and (not inside.parts or NAME.fullmatch(inside.parts[0])):
        raise EdgecnnError(f"--data {data} is inside the --review queue {folder}; give a folder outside "
                           f"it, or leave --data out for {folder / DATA_FOLDER}")


def _relative(path: Path, folder: Path) -> Path | None:
    try:
        return path.resolve().relative_to(folder.resolve())
    except ValueError:
        return None


class ReviewDesk:
    """The queue under `folder` and the data folder labels go to; safe to call from several threads."""

    def __init__(self, folder: Path, data: Path | None = None) -> None:
        self.folder = Path(folder)
        self.data = Path(data) if data is not None else self.folder / DATA_FOLDER
        check_data(self.folder, self.data)
        check_output_path(self.data, "--data", folder=True)
        check_writable(self.data, "--data")
        self.classes: tuple[str, ...] = ()  # the model's classes, the page's first buttons (set once loaded)
        self._lock = threading.Lock()
        self._answered: OrderedDict[str, str] = OrderedDict()  # id -> what was done ("labelled 'cup'")
        self._labelled: list[Path] = []  # frames labelled since the last accepted retrain, in DATA
        self.retrain_job: Any = None  # the page's Retrain button (web_retrain.py), set once the model loaded

    # -- reading ---------------------------------------------------------------------------------------
    def _queued(self) -> list[tuple[int, str, Path]]:
        """(sidecar mtime, id, JPEG) of each whole queued frame: a sidecar is written after its JPEG."""
        found = []
        for camera in _folders(self.folder):
            if not NAME.fullmatch(camera.name):
                continue  # the default data folder, or anything else that is not a camera's
            for answer in _folders(Path(camera.path)):
                for entry in os.scandir(answer.path):
                    if entry.name.endswith(".json") and not entry.name.startswith(".") and entry.is_file(
                            follow_symlinks=False):
                        jpeg = Path(entry.path).with_suffix(".jpg")
                        if jpeg.is_file() and not jpeg.is_symlink():
                            relative = f"{camera.name}/{answer.name}/{jpeg.name}"
                            found.append((entry.stat().st_mtime_ns, frame_id(relative), jpeg))
        return sorted(found, key=lambda item: (item[0], item[2].name), reverse=True)

    def listing(self, offset: int = 0, limit: int = PAGE_SIZE) -> dict[str, Any]:
        """GET /api/review: one page of the queue, newest first, and the classes to offer."""
        queued = self._queued()
        frames, unreadable = [], 0
        for _, key, jpeg in queued[offset:offset + limit]:
            try:
                frames.append(_summary(key, jpeg))
            except (OSError, EdgecnnError):
                unreadable += 1  # half-removed by another tab, or not a sidecar of ours: not offered
        return {"frames": frames, "total": len(queued), "offset": offset, "limit": limit,
                "unreadable": unreadable, "classes": self.choices()}

    def choices(self) -> list[str]:
        """The model's classes in its order, then the classes DATA holds already."""
        held = sorted(entry.name for entry in _folders(self.data) if not entry.name.startswith("."))
        return list(self.classes) + [name for name in held if name not in self.classes]

    def image(self, key: str) -> bytes:
        return self._find(key).read_bytes()

    # -- answering -------------------------------------------------------------------------------------
    def label(self, key: str, label: str) -> dict[str, Any]:
        """Move the frame into DATA/LABEL/ ("none" is a class like any other); returns where it went."""
        name = unicodedata.normalize("NFC", check_label(label, "label"))  # finetune refuses NFD twins
        with self._lock:
            jpeg = self._find(key)
            folder = self.data / name
            if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
                raise Refused(f"{name!r} is a file in the data folder, not a class folder; pick another "
                              "label", 400)
            target = move_frame(jpeg, folder)
            self._remember(key, f"labelled {name!r}")
            self._labelled.append(target)
        return {"id": key, "label": name, "file": f"{name}/{target.name}"}

    def take_labelled(self) -> list[Path]:
        """The frames labelled since the last call (a retrain's "frames just labelled"), still in DATA."""
        with self._lock:
            taken, self._labelled = [path for path in self._labelled if path.is_file()], []
        return taken

    def give_back(self, frames: list[Path]) -> None:
        """A retrain that did not go live: its frames count as just labelled for the next one too."""
        with self._lock:
            self._labelled[:0] = frames

    def discard(self, key: str) -> dict[str, Any]:
        """Delete the frame and its sidecar (sidecar first: the listing drops it at once)."""
        with self._lock:
            jpeg = self._find(key)
            jpeg.with_suffix(".json").unlink(missing_ok=True)
            jpeg.unlink(missing_ok=True)
            self._remember(key, "discarded")
        return {"id": key, "discarded": True}

    def _find(self, key: str) -> Path:
        if not FRAME_ID.fullmatch(key):
            shown = key if key.isprintable() and len(key) <= 40 else repr(key[:40])
            raise Refused(f"{shown} is not a frame id (16 hex digits, as GET /api/review lists them)", 400)
        if key in self._answered:
            raise Refused(f"frame {key} was {self._answered[key]} already (in another tab?); reload the "
                          "queue", 409)
        for _, other, jpeg in self._queued():
            if other == key:
                return jpeg
        raise Refused(f"no frame {key} in the queue (labelled or discarded since?); reload the queue", 404)

    def _remember(self, key: str, what: str) -> None:
        self._answered[key] = what
        while len(self._answered) > REMEMBERED:
            self._answered.popitem(last=False)


def _folders(folder: Path) -> list[os.DirEntry[str]]:
    if not folder.is_dir():
        return []
    with os.scandir(folder) as entries:
        return [entry for entry in entries if entry.is_dir(follow_symlinks=False)]


def _summary(key: str, jpeg: Path) -> dict[str, Any]:
    """One frame of the listing, from its sidecar (read strictly: it came from disk)."""
    sidecar = jpeg.with_suffix(".json")
    record = read_record(ReviewRecord, sidecar.read_bytes(), Origin(sidecar.name), SIDECAR_LIMIT)
    return {"id": key, "camera": jpeg.parent.parent.name, "answer": jpeg.parent.name, "why": record.why,
            "score": record.score, "saved_at": record.saved_at, "frame": record.frame.frame,
            "timestamp": record.frame.timestamp, "label": record.frame.label,
            "top": [{"label": shown.label, "probability": shown.probability} for shown in record.frame.top]}


def move_frame(jpeg: Path, folder: Path) -> Path:
    """JPEG and sidecar into `folder` under one free stem (NAME, NAME-1, ...), then out of the queue (the
    page's labels and `edgecnn review --labels` alike)."""
    folder.mkdir(parents=True, exist_ok=True)
    sidecar = jpeg.with_suffix(".json")
    for n in range(100_000):
        target = folder / (jpeg.name if n == 0 else f"{jpeg.stem}-{n}.jpg")
        try:
            _place(jpeg, target)
        except FileExistsError:
            continue
        try:
            _place(sidecar, target.with_suffix(".json"))
        except FileExistsError:
            target.unlink()  # a sidecar of that name is there already: try the next stem
            continue
        sidecar.unlink(missing_ok=True)
        jpeg.unlink(missing_ok=True)
        return target
    raise Refused(f"no free file name for {jpeg.name} in {folder}", 409)


def _place(source: Path, target: Path) -> None:
    """`source` also at `target`, which must not exist: a hard link, else a synced copy linked in."""
    try:
        os.link(source, target)
        return
    except FileNotFoundError:
        if not source.exists():
            raise Refused(f"{source.name} left the queue meanwhile; reload the queue", 409) from None
        raise
    except OSError as exc:
        if exc.errno not in NO_LINKS:
            raise
    copy = AtomicPath(target)
    try:
        with open(source, "rb") as reading, open(copy.temp, "wb") as writing:
            shutil.copyfileobj(reading, writing)
            writing.flush()
            os.fsync(writing.fileno())
        copy.commit_new([target])  # FileExistsError when taken: never replaces
        _sync_folder(target.parent)
    finally:
        copy.discard()


def _sync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
