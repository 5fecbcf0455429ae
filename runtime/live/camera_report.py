"""What a camera run measured: a row per source and the totals, as records (`--json`; the CLI draws the
table)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

TOP_SHOWN = 3  # labels the summary lists as recognised


@dataclass(frozen=True)
class SourceSummary:
    source: str  # credentials masked
    frames_read: int
    frames_processed: int
    frames_dropped: int  # by the source: newest-frame policy of live / --realtime sources
    mean_fps: float
    latency_ms_median: float  # camera-to-result
    latency_ms_p95: float
    reconnects: int = 0
    recorded: int = 0  # annotated frames in this source's --save video
    recording_dropped: int = 0  # annotated frames the encoder could not keep up with
    error: str = ""  # why the source stopped early, when it failed
    frames_skipped: int = 0  # by --vid-stride (counted in frames_read, never processed)
    # what was recognised: the most frequent shown labels ("uncertain" included), share of processed frames
    recognised: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class CameraSummary:
    source: str  # the source, or "N sources"
    frames_read: int
    frames_processed: int
    frames_dropped: int
    mean_fps: float  # aggregate: processed frames of all sources per second
    inference_ms_median: float  # per batch
    inference_ms_p95: float
    latency_ms_median: float  # camera-to-result, over every frame of every source
    latency_ms_p95: float
    backend: str
    device: str
    reconnects: int = 0
    stopped_by: str = "end"  # end | max_frames | quit | interrupt
    batch_mean: float = 1.0  # frames per inference
    streams: int = 1  # requests the engine runs at once
    jsonl_written: int = 0
    jsonl_dropped: int = 0
    recognised: tuple[tuple[str, float], ...] = ()  # over every source
    sources: tuple[SourceSummary, ...] = ()
    frames_skipped: int = 0  # by --vid-stride


def _recognised(shown: Counter[str]) -> tuple[tuple[str, float], ...]:
    total = sum(shown.values())
    return tuple((label, n / total) for label, n in shown.most_common(TOP_SHOWN)) if total else ()


def _percentiles(values: Sequence[float]) -> tuple[float, float]:
    data = np.asarray(values or [0.0])
    return float(np.median(data)), float(np.percentile(data, 95))


def summarise(engine: Any, streams: Sequence[Any], started: float, stopped_by: str, batches: int,
              jsonl: Any) -> CameraSummary:
    """The summary of a finished loop (`streams` are its per-source states)."""
    rows = []
    for stream in streams:
        source, video = stream.source, stream.video
        seconds = stream.last_result - started
        processed = len(stream.latency_ms)
        median, p95 = _percentiles(stream.latency_ms)
        rows.append(SourceSummary(
            source=stream.name, frames_read=source.frames_read, frames_processed=processed,
            frames_dropped=source.frames_dropped, mean_fps=processed / seconds if seconds > 0 else 0.0,
            latency_ms_median=median, latency_ms_p95=p95, reconnects=source.reconnects,
            recorded=video.written if video else 0, recording_dropped=video.dropped if video else 0,
            error=stream.error, recognised=_recognised(stream.shown), frames_skipped=source.frames_skipped))
    processed = sum(row.frames_processed for row in rows)
    ended = max((stream.last_result for stream in streams), default=started)
    seconds = ended - started
    inference = [ms for stream in streams for ms in stream.inference_ms]
    latency = [ms for stream in streams for ms in stream.latency_ms]
    (inference_median, inference_p95), (latency_median, latency_p95) = _percentiles(inference), \
        _percentiles(latency)
    return CameraSummary(
        source=rows[0].source if len(rows) == 1 else f"{len(rows)} sources",
        frames_read=sum(r.frames_read for r in rows), frames_processed=processed,
        frames_dropped=sum(r.frames_dropped for r in rows),
        mean_fps=processed / seconds if seconds > 0 else 0.0,
        inference_ms_median=inference_median, inference_ms_p95=inference_p95,
        latency_ms_median=latency_median, latency_ms_p95=latency_p95,
        backend=str(engine.backend), device=str(engine.device), reconnects=sum(r.reconnects for r in rows),
        stopped_by=stopped_by, batch_mean=processed / batches if batches else 0.0,
        streams=int(getattr(engine, "streams", 1)),
        jsonl_written=jsonl.written if jsonl else 0, jsonl_dropped=jsonl.dropped if jsonl else 0,
        recognised=_recognised(sum((stream.shown for stream in streams), Counter())), sources=tuple(rows),
        frames_skipped=sum(r.frames_skipped for r in rows))

