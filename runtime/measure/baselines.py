"""Baselines for `bench`, each in its own subprocess: PyTorch eager FP32 (edgecnn.torch_baseline, with
[train]) and OpenVINO's benchmark_app."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from edgecnn.runtime.core.devices import has_module
from edgecnn.runtime.core.engine import Engine
from edgecnn.runtime.core.errors import EdgecnnError, install_hint
from edgecnn.runtime.core.timing import summarize


def run_baseline(name: str, engine: Engine, report: Any, seconds: float) -> dict[str, Any]:
    """The baseline's figures and our ratios against it (latency: ours/theirs; throughput: ours/theirs)."""
    run = torch_eager if name == "torch" else benchmark_app
    result = run(engine, report, seconds)
    theirs_latency = result["latency_ms"]["median"]
    result["latency_ratio"] = report.latency_ms["median"] / theirs_latency if theirs_latency else None
    theirs_fps = result.get("throughput_fps")
    result["throughput_ratio"] = report.throughput_fps / theirs_fps if theirs_fps else None
    return {"name": name, **result}


def torch_eager(engine: Engine, report: Any, seconds: float) -> dict[str, Any]:
    """PyTorch eager FP32 of the same architecture and class count (same compute; fresh head weights),
    run by the training side's `edgecnn.torch_baseline` in its own process."""
    if not (has_module("torch") and has_module("timm")):
        raise EdgecnnError(f"--baseline torch needs PyTorch: {install_hint('train')}")
    if not engine.meta.arch or engine.meta.arch == "foreign":
        raise EdgecnnError("--baseline torch needs an edgecnn model (its architecture is in the metadata)")
    height, width = engine.input_size
    args = [engine.meta.arch, str(len(engine.labels)), str(report.batch), str(height), str(width),
            str(report.threads or 0), str(seconds / 2)]
    done = subprocess.run([sys.executable, "-m", "edgecnn.torch_baseline", *args], capture_output=True,
                          text=True, timeout=600, check=False)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise EdgecnnError(f"the torch baseline failed: {tail}")
    data = json.loads(done.stdout.strip().splitlines()[-1])
    latency = summarize(data["times_ms"])
    return {"latency_ms": latency, "throughput_fps": 1e3 * report.batch / latency["mean"],
            "command": f"PyTorch eager FP32 {engine.meta.arch}, {data['threads']} threads"}


def benchmark_app(engine: Engine, report: Any, seconds: float) -> dict[str, Any]:
    """OpenVINO's benchmark_app on the same IR, device, shape and thread count."""
    if engine.model_path.suffix != ".xml":
        raise EdgecnnError("--baseline benchmark_app needs an OpenVINO model; add --backend openvino")
    tool = shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app"))
    if not Path(tool).is_file():
        raise EdgecnnError("benchmark_app is missing; it ships in the openvino wheel: pip install openvino")
    height, width = engine.input_size
    device = engine.device.split(",")[0]
    shape = f"[{report.batch},{height},{width},3]"
    duration = str(max(1, round(seconds / 2)))
    command = [tool, "-m", str(engine.model_path), "-d", device, "-shape", shape, "-t", duration]
    # -nthreads is honoured only without a performance hint.
    command += ["-hint", "none", "-nthreads", str(report.threads)] if report.threads else ["-hint", "latency"]
    if engine.meta.precision != "int8" and device in ("CPU", "GPU"):
        command += ["-infer_precision", "f32"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise EdgecnnError(f"benchmark_app failed: {(done.stdout + done.stderr).strip().splitlines()[-1]}")
    return {"latency_ms": _parse_latency(done.stdout), "throughput_fps": _parse(done.stdout, "Throughput"),
            "command": " ".join(["benchmark_app", *command[1:]])}


def _parse(text: str, key: str) -> float:
    match = re.search(rf"{key}:\s+([\d.]+)", text)
    if match is None:
        raise EdgecnnError(f"cannot find {key} in benchmark_app's output; is it a supported version?")
    return float(match.group(1))


def _parse_latency(text: str) -> dict[str, float]:
    names = {"median": "Median", "mean": "Average", "min": "Min", "max": "Max"}
    return {ours: _parse(text, theirs) for ours, theirs in names.items()}
