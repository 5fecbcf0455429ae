"""`bench`: latency, throughput, load/compile time, first inference and cold start of a model.

Baselines run in the same call, each in its own subprocess so their imports (torch!) never
touch this process: `torch` = PyTorch eager FP32 of the same network, `benchmark_app` = OpenVINO's
own tool on the same IR. Ratios are ours / theirs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from edgecnn.runtime.core.engine import Engine, load
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.options import check_range
from edgecnn.runtime.core.timing import summarize

BASELINES = ("none", "torch", "benchmark_app")


@dataclass(frozen=True)
class BenchConfig:
    model: Path
    device: str = "auto"
    backend: str = "auto"
    precision: str = "auto"
    batch: int = 1
    threads: int | None = None
    seconds: float = 10.0
    baseline: str = "none"
    hint: str = "latency"
    cold_start: bool = True
    cache_dir: str | None = None
    labels: str | None = None  # for foreign models
    nstreams: int | None = None  # requests run at once (benchmark_app's -nstreams); None: the hint's
    nireq: int | None = None  # requests kept in flight for throughput (-nireq); None: 4


@dataclass(frozen=True)
class BenchReport:
    model: str
    backend: str
    device: str
    precision: str
    batch: int
    threads: int | None
    load_seconds: float  # read + compile, this process
    compile_seconds: float
    first_inference_ms: float
    latency_ms: dict[str, float]  # median, p90, p99, min, max, mean
    throughput_fps: float  # images/s with overlapped requests
    picked: str = ""  # why this model/backend/device, when chosen automatically
    cold_start: dict[str, Any] = field(default_factory=dict)  # seconds, process_seconds, peak_rss_mb
    baseline: dict[str, Any] = field(default_factory=dict)  # name, latency_ms, throughput_fps, ratios
    streams: int = 1  # requests the compiled model runs at once
    requests: int = 4  # requests kept in flight by the throughput loop

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bench(config: BenchConfig, progress: bool = True) -> BenchReport:
    """Measure one model on one device; half the time for latency, half for throughput."""
    if config.baseline not in BASELINES:
        raise EdgecnnError(f"unknown baseline {config.baseline!r}; choose one of {', '.join(BASELINES)}")
    for name in ("batch", "seconds"):
        check_range(name, getattr(config, name))  # the options table's range and message, as the CLI's
    engine = load(config.model, config.device, config.precision, config.backend, labels=config.labels,
                  threads=config.threads, cache_dir=config.cache_dir, hint=config.hint,
                  streams=config.nstreams, requests=config.nireq)
    with engine:
        batch = sample_batch(engine, config.batch)
        start = time.perf_counter()
        engine.infer(batch)
        first_ms = (time.perf_counter() - start) * 1e3
        latencies = latency_loop(engine, batch, config.seconds / 2)
        throughput = _throughput_loop(engine, batch, config.seconds / 2, config.nireq or 4)
        streams = engine.streams
    report = BenchReport(
        model=str(engine.model_path), backend=engine.backend, device=engine.device,
        precision=engine.meta.precision, batch=config.batch, threads=config.threads,
        load_seconds=engine.load_seconds, compile_seconds=engine.compile_seconds,
        first_inference_ms=first_ms, latency_ms=summarize(latencies), throughput_fps=throughput,
        picked=engine.reason, streams=streams, requests=config.nireq or 4)
    if config.cold_start:
        report = _with(report, cold_start=cold_start(engine, config))
    if config.baseline != "none":
        from edgecnn.runtime.measure.baselines import run_baseline

        report = _with(report, baseline=run_baseline(config.baseline, engine, report, config.seconds))
    return report


def sample_batch(engine: Engine, size: int) -> np.ndarray:
    """A fixed batch of fitted noise: inference time does not depend on pixel values."""
    height, width = engine.input_size
    return np.random.default_rng(0).integers(0, 256, (size, height, width, 3), dtype=np.uint8)


def latency_loop(engine: Engine, batch: np.ndarray, seconds: float) -> list[float]:
    """Milliseconds of back-to-back synchronous `infer` calls (after a warm-up) for `seconds`."""
    for _ in range(3):  # warm-up
        engine.infer(batch)
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 10:
        start = time.perf_counter()
        engine.infer(batch)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def _throughput_loop(engine: Engine, batch: np.ndarray, seconds: float, requests: int = 4) -> float:
    """Images per second keeping several requests in flight, as a camera pipeline does."""
    in_flight: list[Future[np.ndarray]] = []
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline or done < 10:
        in_flight.append(engine.submit(batch))
        if len(in_flight) >= requests:
            in_flight.pop(0).result()
            done += 1
    for future in in_flight:
        future.result()
        done += 1
    return done * len(batch) / (time.perf_counter() - start)


_COLD_START = """
import time
start = time.perf_counter()
import json, resource, sys
import numpy as np
from edgecnn.runtime import load
engine = load(sys.argv[1], device=sys.argv[2], backend=sys.argv[3], precision=sys.argv[4],
              threads=int(sys.argv[5]) or None, cache_dir=sys.argv[6] if sys.argv[6] != "-" else None)
result = engine.classify(np.full((480, 640, 3), 128, np.uint8), top_k=1)
seconds = time.perf_counter() - start
try:  # VmHWM: this program's own peak; ru_maxrss also counts the parent's pages from before exec()
    status = open("/proc/self/status").read()
    peak_mb = int(status.split("VmHWM:")[1].split()[0]) / 1024
except (OSError, IndexError):
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform == "darwin" else 1)
    peak_mb = peak_kb / 1024
print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_mb, "torch_imported": "torch" in sys.modules,
                  "label": result[0][0].label}))
"""


def cold_start(engine: Engine, config: BenchConfig) -> dict[str, Any]:
    """A fresh process: import, load this very model file, classify one frame; its time and peak RSS."""
    args = [str(engine.model_path), engine.device_kind, engine.backend, "auto", str(config.threads or 0),
            config.cache_dir if config.cache_dir is not None else "-"]
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _COLD_START, *args], capture_output=True, text=True,
                          timeout=300, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": tail}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {**result, "process_seconds": wall, "cache": "warm" if engine.backend == "openvino" else "n/a"}


def _with(report: BenchReport, **changes: Any) -> BenchReport:
    from dataclasses import replace

    return replace(report, **changes)
