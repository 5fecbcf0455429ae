"""The live camera loop: one or many sources, batched inference, recording and display off the hot path.

    summary = run_camera(load("bundles/imagenet"), CameraConfig(sources=("cam1.mp4", "rtsp://cam2/live")))

Each source is read on its own thread (`VideoSource`: newest frame for live sources), which also fits
the frame to the model, so decoding overlaps inference. One loop batches the frames that are ready
across the sources and keeps `engine.streams` batches running; results are handled in order
(per-source smoothing, overlay, statistics). Video and JSONL are written on their own threads through
bounded queues (`edgecnn.runtime.live.recording`), dropping and counting what they cannot keep up with,
so they never stall inference. A source that fails (a stream down past its --reconnect-timeout) is
reported and the others go on. Each `Sink` (the --serve page) is handed every result.
Camera-to-result latency runs from the moment a frame is read to the moment its result is ready.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.files import read_bounded
from edgecnn.runtime.core.outputs import check_distinct, check_output_path, check_writable
from edgecnn.runtime.live.camera_report import CameraSummary, SourceSummary
from edgecnn.runtime.live.frames import FrameRecord, FrameResult, LiveUpdate, Sink
from edgecnn.runtime.live.loop import CameraLoop, Smoother
from edgecnn.runtime.live.video import VideoOptions, check_source

if TYPE_CHECKING:
    from edgecnn.runtime.core.engine import Engine
    from edgecnn.runtime.live.regions import Region

__all__ = ["CameraConfig", "CameraSummary", "FrameRecord", "FrameResult", "LiveUpdate", "Sink",
           "SourceSummary", "Smoother", "camera_engine", "check_outputs", "read_sources_file", "run_camera"]

MAX_SOURCES = 64  # sources in one run, each with its own reader thread
# Sinks a caller adds to the runs started inside a block (`edgecnn run` around `edgecnn camera`: the box's
# reload), without threading them through the CLI function: `token = CALLER_SINKS.set((sink,))`.
CALLER_SINKS: ContextVar[tuple[Sink, ...]] = ContextVar("caller_sinks", default=())
SOURCES_FILE_BYTES = 1_000_000


@dataclass(frozen=True)
class CameraConfig:
    source: str | int | Path = 0
    sources: tuple[str | int | Path, ...] = ()  # several sources; `source` is used when empty
    names: tuple[str, ...] = ()  # --name per source, in order; derived from the sources when empty
    regions: tuple[Region | None, ...] = ()  # --region per source (None: whole frame); regions.py
    top_k: int = 3
    min_prob: float = 0.2  # top-1 below this is shown as "uncertain"; "unknown" is the model's detector
    smooth: float = 0.6  # EMA weight of the past probabilities (and unknown score); 0 = off
    headless: bool = False
    save: Path | None = None  # annotated .mp4 (one per source: name-1.mp4, name-2.mp4, ...)
    jsonl: Path | None = None  # one record per processed frame
    max_frames: int | None = None  # processed frames, all sources together
    video: VideoOptions = field(default_factory=VideoOptions)  # vid_stride: every Nth frame of a file
    force: bool = False  # replace existing --save / --jsonl files
    append: bool = False  # add to existing --jsonl files (a restarted service keeps its records)
    snapshot_dir: Path = Path(".")
    window_title: str = "edgecnn camera"

    @property
    def source_list(self) -> tuple[str | int | Path, ...]:
        return tuple(self.sources) or (self.source,)

    @property
    def camera_names(self) -> tuple[str, ...]:
        """Each source's camera name (names.py): what events, topics, metrics and clips call it."""
        from edgecnn.runtime.live.names import camera_names

        return camera_names([str(s) for s in self.source_list], self.names)

    def video_paths(self) -> list[Path]:
        """The --save file of each source: the name itself for one, NAME-1.mp4, NAME-2.mp4... for more."""
        if self.save is None:
            return []
        path, count = Path(self.save), len(self.source_list)
        return [path] if count == 1 else [path.with_name(f"{path.stem}-{i}{path.suffix}")
                                          for i in range(1, count + 1)]


def camera_engine(cores: int | None = None) -> dict[str, int]:
    """`load()` settings for camera use on the CPU: two single-thread streams on a 2-core machine, and
    one infer request more than streams (see `_Loop.depth`).

    Measured (benchmarks/camera.py, 2 cores): two 1-thread requests in flight keep both cores busy
    while a capture thread decodes; one 2-thread request leaves a core idle whenever decoding holds
    it. More cores get more threads per stream.
    """
    cores = cores or os.cpu_count() or 1
    streams, threads = (2, max(2, cores)) if cores >= 2 else (1, 1)
    return {"streams": streams, "threads": threads, "requests": streams + 1}


def read_sources_file(path: Path) -> tuple[str, ...]:
    """--sources FILE: one source a line; blank lines and # comments skipped. A plain file of at most
    1 MB naming at most MAX_SOURCES (a FIFO or /dev/zero would block or grow without end)."""
    data = read_bounded(path, SOURCES_FILE_BYTES, "--sources")
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise EdgecnnError(f"cannot read --sources {path}: {exc}; give a text file, one source a line"
                           ) from exc
    sources = tuple(line.strip() for line in lines if line.strip() and not line.strip().startswith("#"))
    if not sources:
        raise EdgecnnError(f"--sources {path} lists no source; write one source a line")
    if len(sources) > MAX_SOURCES:
        raise EdgecnnError(f"--sources {path} lists {len(sources)} sources; one camera run takes at most "
                           f"{MAX_SOURCES} (each has its own reader thread): split them over several runs")
    return sources


def run_camera(engine: Engine, config: CameraConfig, say: Callable[[str], None] = print,
               sinks: Sequence[Sink] = ()) -> CameraSummary:
    """Run the loop until every source ends, `max_frames`, q/Esc, window close or Ctrl-C."""
    _check(engine, config)
    return CameraLoop(engine, config, say, tuple(sinks) + CALLER_SINKS.get()).run()


def _check(engine: Engine, config: CameraConfig) -> None:
    from edgecnn.runtime.core.options import check_range

    if not 1 <= config.top_k <= len(engine.labels):
        raise EdgecnnError(f"--top-k {config.top_k} is out of range: the model has "
                           f"{len(engine.labels)} classes")
    Smoother(config.smooth)  # checks the range
    if not 0.0 <= config.min_prob <= 1.0:
        raise EdgecnnError(f"--min-prob {config.min_prob} is out of range; give 0 to 1")
    if config.max_frames is not None and config.max_frames < 1:
        raise EdgecnnError(f"--max-frames {config.max_frames} must be at least 1")
    video = config.video
    for name, value in (("width", video.width), ("height", video.height), ("fps", video.fps)):
        if value is not None and value <= 0:
            raise EdgecnnError(f"--{name} {value} must be positive")
    check_range("vid_stride", video.vid_stride)  # the options table's range and message, as the CLI's
    config.camera_names  # noqa: B018 - checks --name: one per source, each a slug, no repeats
    if config.regions and len(config.regions) != len(config.source_list):
        raise EdgecnnError(f"--region was given {len(config.regions)} times for {len(config.source_list)} "
                           "sources; give one per --source, in order ('full' for the whole frame), or none")
    check_outputs(config)


def check_outputs(config: CameraConfig) -> None:
    """--save and --jsonl, before anything starts (the CLI calls it before the model loads): each a
    writable file that is not an input, and new unless `force`; the sources named exist."""
    if config.save is not None and Path(config.save).suffix.lower() != ".mp4":
        raise EdgecnnError(f"--save {config.save}: give a file name ending in .mp4")
    if Path(config.snapshot_dir) != Path("."):
        check_writable(Path(config.snapshot_dir), "--snapshot-dir")
    from edgecnn.runtime.live.recording import is_stdout

    for option, path, suffix in (("--save", config.save, ".mp4"), ("--jsonl", config.jsonl, ".jsonl")):
        if path is not None and not is_stdout(path):
            check_output_path(Path(path), option, suffix=suffix)
            check_writable(Path(path), option)
    for source in config.source_list:
        check_source(source)  # a path that does not exist is a typo: say so before anything starts
    files = [Path(str(s)) for s in config.source_list if Path(str(s)).is_file()]
    named = {"--source": files[0]} if len(files) == 1 else {f"--source {f}": f for f in files}
    videos = config.video_paths()
    written = {"--save": videos[0]} if len(videos) == 1 else {
        f"--save (source {i})": path for i, path in enumerate(videos, 1)}  # NAME-1.mp4 may be an input
    written["--jsonl"] = None if config.jsonl is None or is_stdout(config.jsonl) else Path(config.jsonl)
    check_distinct(written, named)  # even --force never writes over an input
    for option, path in written.items():
        if path is None:
            continue
        jsonl = option == "--jsonl"
        if path.exists() and not config.force and not (config.append and jsonl):
            raise EdgecnnError(f"{option} {path} already exists; pass --force to overwrite it"
                               f"{', --append to add to it' if jsonl else ''} or choose another "
                               f"{option.split()[0]}")
