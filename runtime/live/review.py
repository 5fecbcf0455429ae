"""The review queue (`camera --review DIR`, and `--collect DIR`): frames worth a person's look, kept per
camera in the class-folder layout `DIR/CAMERA/ANSWER/NAME.jpg` + `NAME.json` (`ReviewRecord`).

A sink of the camera loop. Worth a look, in this order: the model's unknown detector fired ("unknown"),
top-1 below --min-prob or below `margin` ("uncertain"), a state that lasted fewer frames than the
consensus window ("short": its first frame, once it has ended), and a `sample` share of confident frames
("sample"). ANSWER is the model's top-1 class, or "unknown"; so after moving the wrong ones, `finetune
DIR/CAMERA` reads the folder as it is. On the loop's thread only the choice is made (at most one frame per
camera every `interval` seconds of its source); de-duplication (grey thumbnails within `min_change` of a
frame kept before count once), the bounds (`limit` frames and `max_bytes` per camera, what the folder
already holds included), JPEG encoding and the atomic, never-replacing writes happen on a background
thread, so the camera never waits for the disk.
"""

from __future__ import annotations

import json
import random
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from edgecnn.runtime.core import outputs
from edgecnn.runtime.core.records import spec
from edgecnn.runtime.live.capture import change, encode_jpeg, thumbnail
from edgecnn.runtime.live.frames import FrameRecord, LiveUpdate
from edgecnn.runtime.live.overlay import UNCERTAIN, UNKNOWN
from edgecnn.runtime.live.recording import BackgroundWriter

QUEUE = 8  # frames waiting for the disk; more are dropped and counted
RECENT = 256  # thumbnails of kept frames a new one is compared with, per camera (~1 MB, ~0.2 ms a frame)
SCHEMA = 1


@dataclass(frozen=True)
class ReviewConfig:
    folder: Path
    option: str = "--review"  # how messages name the folder
    limit: int = 500  # frames per camera, at most
    max_bytes: int = 256 * 2**20  # JPEG bytes per camera, at most
    interval: float = 1.0  # seconds of a source between two kept frames of one camera
    margin: float = 0.6  # top-1 below this is "uncertain" even above --min-prob (0: --min-prob only)
    window: int = 5  # consensus N: a class shown for fewer frames in a row is a "short" state
    sample: float = 0.02  # share of confident frames kept too (0: none)
    min_change: float = 0.02  # grey thumbnail difference (0..1) under which a frame counts as kept already
    quality: int = 92
    seed: int = 0  # the sample's random choice, reproducible


@dataclass(frozen=True)
class ReviewRecord:
    """One queued frame's sidecar (NAME.json beside NAME.jpg), as the queue's readers read it."""

    schema: int
    camera: str
    answer: str  # the folder it is in: the model's top-1 class, or "unknown"
    why: str  # "unknown", "uncertain", "short" or "sample"
    score: float = spec(low=0.0, high=1.0)  # top-1 probability (smoothed)
    frame: FrameRecord = spec()  # the frame's record, as --jsonl writes it
    saved_at: str = spec()  # ISO 8601 with the zone

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"frame": self.frame.to_json()}


def reason(record: FrameRecord, margin: float = 0.0) -> str | None:
    """Why this result is worth a person's look on its own: "unknown", "uncertain", or None."""
    if record.unknown:
        return UNKNOWN
    if record.label == UNCERTAIN or (record.top and record.top[0].probability < margin):
        return UNCERTAIN
    return None


def answer_folder(record: FrameRecord) -> str:
    """The class folder a frame is queued in: its top-1 class (one folder name), or "unknown"."""
    if record.unknown or not record.top:
        return UNKNOWN
    name = record.top[0].label.replace("/", "_").replace("\\", "_").strip().lstrip(".")
    return name or UNKNOWN


@dataclass
class _Camera:
    """What the loop's thread remembers of one camera."""

    last: float = -float("inf")  # source time of its last queued frame
    run: tuple[str, int, Any] | None = None  # the state shown now: (label, frames, first update)


class _Files:
    """The BackgroundWriter's output: de-duplicate, bound, then one JPEG + sidecar per item."""

    def __init__(self, config: ReviewConfig) -> None:
        self.config = config
        self.session = time.strftime("%Y%m%d-%H%M%S")
        self.saved = self.similar = self.full = 0
        self._recent: dict[str, deque[np.ndarray]] = {}
        self._held: dict[str, list[int]] = {}  # camera -> [frames, bytes] in its folder

    def write(self, item: tuple[np.ndarray, FrameRecord, str]) -> None:
        image, record, why = item
        camera = record.camera or "camera"
        held = self._held.setdefault(camera, _held(self.config.folder / camera))
        if held[0] >= self.config.limit or held[1] >= self.config.max_bytes:
            self.full += 1
            return
        thumb = thumbnail(image)
        recent = self._recent.setdefault(camera, deque(maxlen=RECENT))
        if any(change(thumb, other) < self.config.min_change for other in recent):
            self.similar += 1
            return
        data = encode_jpeg(image, self.config.quality)
        folder = self.config.folder / camera / answer_folder(record)
        folder.mkdir(parents=True, exist_ok=True)
        path = outputs.write_new(folder, f"{camera}-{self.session}-{record.frame:06d}", ".jpg", data)
        score = record.top[0].probability if record.top else 0.0
        sidecar = ReviewRecord(SCHEMA, camera, folder.name, why, score, record,
                               time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        # after the JPEG: a reader lists the sidecars, so an item is whole when it appears
        outputs.write_atomic(path.with_suffix(".json"), json.dumps(sidecar.to_json(), indent=1).encode())
        recent.append(thumb)
        held[0], held[1] = held[0] + 1, held[1] + len(data)
        self.saved += 1

    def close(self) -> None:
        pass


def _held(folder: Path) -> list[int]:
    """[frames, bytes] a camera's folder holds already (a restarted run stays within the bounds)."""
    files = [path for path in folder.glob("*/*.jpg") if path.is_file()] if folder.is_dir() else []
    return [len(files), sum(path.stat().st_size for path in files)]


@dataclass
class ReviewQueue:
    """The sink: picks the frames on the loop's thread, hands them to a background writer."""

    config: ReviewConfig
    _cameras: dict[str, _Camera] = field(default_factory=dict)
    _checked: set[str] = field(default_factory=set)  # sources already known not to hold the folder

    def __post_init__(self) -> None:
        option, folder = self.config.option, Path(self.config.folder)
        outputs.check_output_path(folder, option, folder=True)
        outputs.check_writable(folder, option)
        folder.mkdir(parents=True, exist_ok=True)
        self._random = random.Random(self.config.seed)
        self._files = _Files(self.config)
        self._writer = BackgroundWriter(option, self._files, QUEUE)

    @property
    def saved(self) -> int:
        return self._files.saved

    @property
    def dropped(self) -> int:
        return self._writer.dropped

    def publish(self, update: LiveUpdate) -> None:
        record = update.record
        if record.source not in self._checked:
            self._check_source(record.source)
        camera = self._cameras.setdefault(record.camera, _Camera())
        ended = self._short(camera, update)
        why = reason(record, self.config.margin)
        if why is None and ended is not None:
            why, update = "short", ended  # the short state's first frame
        if why is None and self.config.sample and self._random.random() < self.config.sample:
            why = "sample"
        if why is None or update.image is None or record.timestamp - camera.last < self.config.interval:
            return
        if self._writer.put((update.image, update.record, why)):
            camera.last = record.timestamp

    def _short(self, camera: _Camera, update: LiveUpdate) -> LiveUpdate | None:
        """The first frame of the class shown until this frame, when it was shown for fewer than `window`
        frames in a row (uncertain and unknown runs are queued as such already); None otherwise."""
        label, ended = update.record.label, camera.run
        if ended is not None and ended[0] == label:
            camera.run = (label, ended[1] + 1, ended[2])
            return None
        camera.run = (label, 1, update)
        if ended is None or ended[0] in (UNCERTAIN, UNKNOWN) or ended[1] >= self.config.window:
            return None
        return ended[2]

    def _check_source(self, source: str) -> None:
        """A file or folder source's first result, before anything is written: the folder is not in it."""
        if Path(source).exists():
            outputs.check_distinct({self.config.option: Path(self.config.folder)}, {"--source": Path(source)})
        self._checked.add(source)

    def finish(self, stopped_by: str) -> None:
        pass  # the frames are flushed by `close`, which the command calls

    def close(self) -> None:
        self._writer.close()

    def describe(self) -> str:
        files = self._files
        extra = [f"{files.similar} near-identical skipped"] if files.similar else []
        extra += [f"{files.full} over the bounds"] if files.full else []
        extra += [f"{self.dropped} dropped: the disk was behind"] if self.dropped else []
        more = f" ({', '.join(extra)})" if extra else ""
        folder = self.config.folder
        return f"{self.config.option}: queued {self.saved} frames worth a look into {folder}{more}"

    def __enter__(self) -> ReviewQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
