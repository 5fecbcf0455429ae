"""`edgecnn serve` under load vs the same engine in-process, measured in the same run (loopback only).

    python benchmarks/serve_load.py BUNDLE [--clients 16] [--requests 480] [--seconds 60] [--max-batch 16]

1. In-process baseline: `load(BUNDLE)` (what `edgecnn serve` loads), back-to-back `infer` on batches
   of --max-batch fitted sample photos for --baseline-seconds: images/s. The engine is closed after.
2. `edgecnn serve BUNDLE` in a subprocess on free 127.0.0.1 ports; --clients threads, each with its
   own tritonclient (gRPC by default), send one photo per request until --requests are done or
   --seconds pass. Triton's dynamic batcher merges them; its metrics give the mean batch it formed.
Reported: served images/s, p50/p99 request latency, errors, and served / in-process throughput.
Targets (issue 6): 0 errors, ratio >= 0.8. Needs the [serve] extra (nvidia-pytriton, numpy<2).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from edgecnn.runtime import load
from edgecnn.runtime.core.images import iter_image_files, read_image
from edgecnn.runtime.core.preprocess import fit_frame

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
NAME = "bench"


def sample_batch(bundle: Path, count: int) -> np.ndarray:
    with load(bundle) as engine:
        files = list(iter_image_files(ROOT / "samples" / "photos"))[:count]
        return np.stack([fit_frame(read_image(path), engine.preprocess) for path in files])


def in_process_throughput(bundle: Path, images: np.ndarray, max_batch: int, seconds: float) -> dict[str, Any]:
    """Images/s of back-to-back `infer` on full batches: the ceiling a server can approach."""
    batch = np.resize(images, (max_batch, *images.shape[1:]))
    with load(bundle) as engine:  # as `edgecnn serve` loads it for one instance
        engine.infer(batch)  # warm-up
        start, done = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            engine.infer(batch)
            done += len(batch)
        elapsed = time.perf_counter() - start
        return {"engine": engine.describe(), "images_per_s": done / elapsed, "batch": max_batch}


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind((HOST, 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def start_server(args: argparse.Namespace, ports: list[int], log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "edgecnn", "serve", str(args.bundle), "--host", HOST, "--name", NAME,
               "--http-port", str(ports[0]), "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2]),
               "--max-batch", str(args.max_batch), "--instances", str(args.instances)]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    import tritonclient.http as httpclient

    client, deadline = httpclient.InferenceServerClient(f"{HOST}:{ports[0]}"), time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if client.is_model_ready(NAME):
                return process
        except Exception:  # noqa: BLE001 - not listening yet
            pass
        time.sleep(0.5)
    stop_server(process)
    raise SystemExit(f"edgecnn serve did not come up; log: {log}")


def stop_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:  # its own session: tritonserver and its stub go too
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def client_loop(protocol: str, port: int, images: np.ndarray, budget: dict[str, Any], results: list) -> None:
    """One client: one image per request, back to back, until the shared budget runs out."""
    module = __import__(f"tritonclient.{protocol}", fromlist=["InferInput"])
    client = module.InferenceServerClient(f"{HOST}:{port}")
    rng = np.random.default_rng(threading.get_ident() % 2**32)
    while True:
        with budget["lock"]:
            if budget["left"] <= 0 or time.monotonic() > budget["deadline"]:
                return
            budget["left"] -= 1
        image = images[rng.integers(len(images))][None]
        request = module.InferInput("images", list(image.shape), "UINT8")
        request.set_data_from_numpy(image)
        start = time.perf_counter()
        try:
            client.infer(NAME, [request]).as_numpy("probabilities")
            results.append((time.perf_counter() - start, None))
        except Exception as exc:  # noqa: BLE001 - counted, shown once
            results.append((time.perf_counter() - start, str(exc)))


def metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=10).read().decode()
    prefix = f'{name}{{model="{NAME}"'
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))


def served_throughput(args: argparse.Namespace, images: np.ndarray, folder: Path) -> dict[str, Any]:
    ports = free_ports(3)
    process = start_server(args, ports, folder / "server.log")
    port = ports[1] if args.protocol == "grpc" else ports[0]
    try:
        warm: list = []
        client_loop(args.protocol, port, images, {"lock": threading.Lock(), "left": 8,
                                                   "deadline": time.monotonic() + 30}, warm)
        before = metric(ports[2], "nv_inference_exec_count"), metric(ports[2], "nv_inference_request_success")
        results: list = []
        deadline = time.monotonic() + args.seconds
        budget = {"lock": threading.Lock(), "left": args.requests, "deadline": deadline}
        threads = [threading.Thread(target=client_loop, args=(args.protocol, port, images, budget, results))
                   for _ in range(args.clients)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - start
        executions = metric(ports[2], "nv_inference_exec_count") - before[0]
        served = metric(ports[2], "nv_inference_request_success") - before[1]
    finally:
        stop_server(process)
    return summarise(results, elapsed, executions, served, process.returncode)


def summarise(results: list, elapsed: float, executions: float, served: float,
              exit_code: int) -> dict[str, Any]:
    latencies = np.array([seconds for seconds, error in results if error is None]) * 1000
    errors = [error for _, error in results if error is not None]
    return {"requests": len(results), "errors": len(errors), "first_error": errors[0] if errors else None,
            "images_per_s": len(latencies) / elapsed, "p50_ms": float(np.percentile(latencies, 50)),
            "p99_ms": float(np.percentile(latencies, 99)), "mean_batch": served / max(executions, 1),
            "server_exit_code": exit_code}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=480, help="total, all clients together")
    parser.add_argument("--seconds", type=float, default=60.0, help="stop sending after this long")
    parser.add_argument("--baseline-seconds", type=float, default=10.0)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--instances", type=int, default=1, help="edgecnn serve --instances")
    parser.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    images = sample_batch(args.bundle, 32)
    # Baseline before and after the served run (mean): a machine whose load drifts biases neither side.
    before = in_process_throughput(args.bundle, images, args.max_batch, args.baseline_seconds / 2)
    with tempfile.TemporaryDirectory() as folder:
        served = served_throughput(args, images, Path(folder))
    after = in_process_throughput(args.bundle, images, args.max_batch, args.baseline_seconds / 2)
    baseline = {**before, "images_per_s": (before["images_per_s"] + after["images_per_s"]) / 2,
                "before_after": [before["images_per_s"], after["images_per_s"]]}
    ratio = served["images_per_s"] / baseline["images_per_s"]
    report = {"in_process": baseline, "served": served, "ratio": ratio, "clients": args.clients,
              "protocol": args.protocol, "instances": args.instances}
    if args.json:
        print(json.dumps(report))
        return
    print(f"in-process  {baseline['engine']}, batch {args.max_batch}: {baseline['images_per_s']:.1f} "
          "images/s (before/after: {:.1f}/{:.1f})".format(*baseline["before_after"]))
    print(f"served      {args.clients} {args.protocol} clients x 1 image, {args.instances} instance(s): "
          f"{served['images_per_s']:.1f} "
          f"images/s, p50 {served['p50_ms']:.1f} ms, p99 {served['p99_ms']:.1f} ms, mean batch "
          f"{served['mean_batch']:.1f}, {served['requests']} requests, {served['errors']} errors"
          + (f" (first: {served['first_error']})" if served["errors"] else ""))
    print(f"ratio       served / in-process = {ratio:.2f}   (targets: 0 errors, >= 0.8)")


if __name__ == "__main__":
    main()
