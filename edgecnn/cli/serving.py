"""Serving commands: `serve` (a model behind Triton Inference Server) and `triton` (a model repository)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from edgecnn.cli.common import DeviceOpt, ModelPath, PrecisionOpt
from edgecnn.cli.process import user_errors
from edgecnn.cli.program import app
from edgecnn.cli.render import console, warn
from edgecnn.runtime.core.terminal import printable


@app.command(epilog="Example: edgecnn serve bundles/demo --http-port 8000 --max-batch 16")
@user_errors
def serve(
    model: ModelPath,
    host: Annotated[str, typer.Option(help="Address to listen on; 0.0.0.0 exposes it to the network.")] = (
        "127.0.0.1"),
    http_port: Annotated[int, typer.Option(help="Triton HTTP/REST port.")] = 8000,
    grpc_port: Annotated[int, typer.Option(help="Triton gRPC port.")] = 8001,
    metrics_port: Annotated[int, typer.Option(help="Prometheus metrics port (/metrics).")] = 8002,
    max_batch: Annotated[int, typer.Option(help="Largest batch the dynamic batcher forms.")] = 16,
    instances: Annotated[int, typer.Option(help="Model instances running side by side.")] = 1,
    device: DeviceOpt = "auto", precision: PrecisionOpt = "auto",
    name: Annotated[str | None, typer.Option(help="Model name clients use (default: the folder's).")] = None,
) -> None:
    """Serve a model through NVIDIA Triton Inference Server (HTTP, gRPC, metrics) until SIGTERM or Ctrl-C."""
    from edgecnn.runtime.serving.serve import ServeConfig
    from edgecnn.runtime.serving.serve import serve as run_server

    def ready(endpoints: Any) -> None:
        warn(f"serving {endpoints.name} ({endpoints.engine}): HTTP {endpoints.http}, "
             f"gRPC {endpoints.grpc}, metrics {endpoints.metrics}")

    run_server(ServeConfig(model=model, host=host, http_port=http_port, grpc_port=grpc_port,
                           metrics_port=metrics_port, max_batch=max_batch, instances=instances, device=device,
                           precision=precision, name=name), on_ready=ready)


@app.command(epilog="Example: edgecnn triton bundles/demo triton_repo --kind gpu --max-batch 32")
@user_errors
def triton(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder written by `edgecnn export`.")],
    repo: Annotated[Path, typer.Argument(help="Triton model repository folder to write into.")],
    name: Annotated[str | None, typer.Option(help="Model name (default: the bundle folder's).")] = None,
    kind: Annotated[str, typer.Option(help="Where Triton runs the ONNX model: cpu or gpu.")] = "cpu",
    max_batch: Annotated[int, typer.Option(help="max_batch_size for the dynamic batcher.")] = 16,
    instances: Annotated[int, typer.Option(help="Model instances (instance_group count).")] = 1,
    precision: Annotated[str, typer.Option(help="Which bundle models to use: fp32 or int8.")] = "fp32",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing REPO/NAME model folder.")
                     ] = False,
) -> None:
    """Write a Triton Inference Server model repository (ONNX Runtime + OpenVINO) from a bundle."""
    from edgecnn.runtime.serving.triton_repo import TritonRepoConfig, write_triton_repo

    config = TritonRepoConfig(bundle=bundle, repo=repo, name=name, kind=kind, max_batch=max_batch,
                              instances=instances, precision=precision, force=force)
    for folder in write_triton_repo(config):
        console.print(f"wrote {printable(folder)}", highlight=False)
    console.print(f"run: tritonserver --model-repository={printable(repo.resolve())} (see docs/serving.md)",
                  highlight=False)

