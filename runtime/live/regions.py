"""Regions of interest: a camera that watches a part of its view (a shelf, a door) classifies only that part,
and several regions of one source are several cameras sharing one decoder.

    Region.parse("0.5,0,0.5,1")          # the right half: fractions 0-1 ...
    Region.parse("320,0,320,480")        # ... or pixels
    open_sources(config, prepare, say, wake)  # a VideoSource per plain source, a RegionSource per region

The crop is fitted before preprocessing (the classifier sees only the region) and it is what the window,
the page, --save and the sinks show: a camera of a region *is* that region (what the model saw is what a
person checks it against). Each decoded frame of a shared source is cropped and prepared for every region
on the capture thread, so a second region costs one `fit_frame`, not a second decode.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.live.video import Frame, VideoSource

if TYPE_CHECKING:
    from edgecnn.runtime.live.camera import CameraConfig

REGION_QUEUE = 2  # frames a region holds before the shared decoder waits for it (files frame by frame)
WHOLE = ("", "full")  # --region full: the whole frame (a camera without a region among ones with)


@dataclass(frozen=True)
class Region:
    """x, y, w, h: all in pixels (integers) or all fractions of the frame (0-1)."""

    x: float
    y: float
    w: float
    h: float

    @classmethod
    def parse(cls, text: str | Sequence[float], option: str = "--region") -> Region | None:
        """'X,Y,W,H' (or 4 numbers); 'full' or '' is the whole frame (None)."""
        if isinstance(text, str):
            if text.strip().lower() in WHOLE:
                return None
            parts: Sequence[Any] = text.split(",")
        else:
            parts = list(text)
        try:
            values = [float(part) for part in parts]
        except (TypeError, ValueError):
            values = []
        if len(values) != 4 or not all(np.isfinite(values)):
            raise EdgecnnError(f"{option} {_shown(text)} is not a region; give X,Y,W,H in pixels "
                               "(320,0,320,480) or fractions of the frame (0.5,0,0.5,1), or 'full'")
        region = cls(*values)
        region.check(option)
        return region

    @property
    def fractions(self) -> bool:
        """Every value within 0-1: fractions (0,0,1,1 is the whole frame, not one pixel)."""
        return all(0.0 <= v <= 1.0 for v in (self.x, self.y, self.w, self.h))

    def check(self, option: str = "--region") -> None:
        if min(self.x, self.y) < 0 or min(self.w, self.h) <= 0:
            raise EdgecnnError(f"{option} {self}: x and y must be 0 or more, w and h more than 0")
        if self.fractions:
            if self.x + self.w > 1.0 + 1e-9 or self.y + self.h > 1.0 + 1e-9:
                raise EdgecnnError(f"{option} {self} reaches past the frame: as fractions, x + w and y + h "
                                   "are at most 1")
        elif not all(float(v).is_integer() for v in (self.x, self.y, self.w, self.h)):
            raise EdgecnnError(f"{option} {self} mixes pixels and fractions; give all four in pixels "
                               "(whole numbers) or all as fractions 0-1")

    def box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) in pixels of a width x height frame; EdgecnnError when it lies outside."""
        scale = (width, height) if self.fractions else (1, 1)
        x0, y0 = round(self.x * scale[0]), round(self.y * scale[1])
        x1 = min(width, round((self.x + self.w) * scale[0]))
        y1 = min(height, round((self.y + self.h) * scale[1]))
        if x1 - x0 < 1 or y1 - y0 < 1:
            raise EdgecnnError(f"region {self} lies outside the {width}x{height} frame; give one inside it")
        return x0, y0, x1, y1

    def crop(self, image: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = self.box(image.shape[1], image.shape[0])
        return np.ascontiguousarray(image[y0:y1, x0:x1])

    def __str__(self) -> str:
        return ",".join(f"{v:g}" for v in (self.x, self.y, self.w, self.h))


def _shown(text: object) -> str:
    shown = str(text)
    return shown if shown.isprintable() and len(shown) <= 60 else repr(shown[:60])


class SharedDecoder:
    """One VideoSource decoding for several regions: each decoded frame is cut into every region (and
    prepared for the model) on the capture thread, then handed to each region's own short queue."""

    def __init__(self, source: str, regions: Sequence[Region], options: Any, prepare: Callable | None,
                 say: Callable[[str], None], on_ready: Callable[[], None]) -> None:
        self.regions = tuple(regions)
        self.video = VideoSource(source, options, prepare=self._prepare_all, say=say, on_ready=on_ready)
        self._fit = prepare
        self._queues: list[deque[Frame]] = [deque() for _ in self.regions]
        self._lock = threading.Lock()
        self._ended, self._error = False, None
        self._started = self._closed = False
        self._active = set(range(len(self.regions)))  # regions still watched (one may be removed on reload)

    def _prepare_all(self, image: np.ndarray) -> Any:
        crops = [region.crop(image) for region in self.regions]
        return [(crop, self._fit(crop) if self._fit is not None else None) for crop in crops]

    def start(self, wait_for_open: bool) -> None:
        if not self._started:
            self._started = True
            self.video.start(wait_for_open=wait_for_open)

    def pull(self) -> None:
        """Move the decoded frames into the regions' queues while every region has room (live: newest)."""
        with self._lock:
            while not self._ended and self._error is None and self.video.ready() and (
                    self.video.drops or all(len(q) < REGION_QUEUE for i, q in enumerate(self._queues)
                                            if i in self._active)):
                try:
                    frame = self.video.get()
                except EdgecnnError as exc:
                    self._error = exc
                    return
                if frame is None:
                    self._ended = True
                    return
                for index, (queue, (crop, prepared)) in enumerate(zip(self._queues, frame.prepared,
                                                                      strict=True)):
                    if index not in self._active:
                        continue
                    if self.video.drops:
                        queue.clear()
                    queue.append(replace(frame, image=crop, prepared=prepared))

    def take(self, index: int) -> Frame | None:
        self.pull()
        with self._lock:
            queue = self._queues[index]
            if queue:
                return queue.popleft()
            if self._error is not None:
                raise self._error
            return None

    def waiting(self, index: int) -> bool:
        """True when region `index` would get a frame, the end or an error at once."""
        self.pull()
        with self._lock:
            return bool(self._queues[index]) or self._ended or self._error is not None

    def finished(self, index: int) -> bool:
        with self._lock:
            return (self._ended or self._error is not None) and not self._queues[index]

    def release(self, index: int) -> None:
        """Region `index` is no longer watched; the decoder stops with the last one."""
        with self._lock:
            self._active.discard(index)
            self._queues[index].clear()
        if not self._active and not self._closed:
            self._closed = True
            self.video.close()


class RegionSource:
    """One region of a shared decoder, standing where the loop expects a VideoSource."""

    def __init__(self, decoder: SharedDecoder, index: int, camera: str) -> None:
        self.decoder, self.index = decoder, index
        video = decoder.video
        self.spec = replace(video.spec, name=f"{video.spec.name} [{camera}]")
        self.options, self.drops, self.stride = video.options, video.drops, video.stride
        self.frames_delivered = 0

    def __getattr__(self, name: str) -> Any:  # frames_dropped, frames_skipped, reconnects, fps: the decoder's
        if name in ("frames_dropped", "frames_skipped", "reconnects", "fps"):
            return getattr(self.decoder.video, name)
        raise AttributeError(name)

    @property
    def frames_read(self) -> int:
        video = self.decoder.video
        return self.frames_delivered + video.frames_dropped + video.frames_skipped

    @property
    def finished(self) -> bool:
        return self.decoder.finished(self.index)

    def start(self, wait_for_open: bool = True) -> RegionSource:
        self.decoder.start(wait_for_open)
        return self

    def ready(self) -> bool:
        return self.decoder.waiting(self.index)

    def get(self, timeout: float | None = None) -> Frame | None:
        frame = self.decoder.take(self.index)
        if frame is not None:
            self.frames_delivered += 1
        return frame

    def close(self) -> None:
        self.decoder.release(self.index)


def open_sources(config: CameraConfig, prepare: Callable[[np.ndarray], np.ndarray],
                 say: Callable[[str], None], on_ready: Callable[[], None]) -> list[Any]:
    """One source object per camera, in order: a VideoSource for a plain source, a RegionSource for a
    region (the regions of one source share its SharedDecoder)."""
    sources, regions = config.source_list, config.regions or (None,) * len(config.source_list)
    cameras = config.camera_names
    shared: dict[str, list[int]] = {}
    for index, (source, region) in enumerate(zip(sources, regions, strict=True)):
        if region is not None:
            shared.setdefault(str(source), []).append(index)
    decoders = {key: SharedDecoder(key, [regions[i] for i in indices], config.video, prepare, say, on_ready)
                for key, indices in shared.items()}
    opened: list[Any] = []
    for index, (source, region) in enumerate(zip(sources, regions, strict=True)):
        if region is None:
            opened.append(VideoSource(source, config.video, prepare=prepare, say=say, on_ready=on_ready))
        else:
            key = str(source)
            opened.append(RegionSource(decoders[key], shared[key].index(index), cameras[index]))
    return opened


def open_one(source: str, region: Region | None, camera: str, options: Any, prepare: Callable,
             say: Callable[[str], None], on_ready: Callable[[], None]) -> Any:
    """One camera's source on its own (a camera added to a running loop): its own decoder."""
    if region is None:
        return VideoSource(source, options, prepare=prepare, say=say, on_ready=on_ready)
    return RegionSource(SharedDecoder(source, [region], options, prepare, say, on_ready), 0, camera)

