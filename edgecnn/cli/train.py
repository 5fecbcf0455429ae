"""Training commands: `finetune` (a run folder from an image folder) and `models` (the --arch choices)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from edgecnn.cli.common import TrainDeviceOpt, ranged, run_folder
from edgecnn.cli.process import user_errors
from edgecnn.cli.program import app
from edgecnn.cli.render import console, models_table, result_table
from edgecnn.runtime.core.errors import EdgecnnError, require_train


@app.command(epilog="Example: edgecnn finetune samples/photos --epochs 3")
@user_errors
def finetune(
    data: Annotated[Path | None, typer.Argument(
        help="Image folder: one subfolder per class, or train/ and val/ of them.")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Run folder for best.pt, last.pt, metrics and plots (default: runs/NAME, numbered).")] = None,
    name: Annotated[str, typer.Option(
        help="Run name: writes runs/NAME, or runs/NAME2, runs/NAME3... when that is taken.")] = "finetune",
    exist_ok: Annotated[bool, typer.Option(
        "--exist-ok", help="Reuse runs/NAME instead of numbering a new one (its run files are replaced).")
    ] = False,
    arch: Annotated[str, typer.Option(
        help="efficientnet_lite0 (ImageNet weights built in) or a timm model, e.g. resnet18.")
    ] = "efficientnet_lite0",
    weights: Annotated[Path | None, typer.Option(help="Start from this local state dict.")] = None,
    imgsz: Annotated[int, typer.Option(
        min=0, help="Square input size in pixels, a multiple of 32 (default 0: the architecture's own, 224); "
        "export and the runtime take it from the checkpoint.")] = 0,
    epochs: Annotated[int, typer.Option(help=ranged("Epochs training every layer, after the head.", "epochs"))
                      ] = 0,
    head_epochs: Annotated[int, typer.Option(
        help=ranged("Epochs training the classifier on cached features of the frozen backbone.",
                    "head_epochs"))] = 10,
    batch_size: Annotated[int, typer.Option(help=ranged("Images per training step.", "batch_size"))] = 32,
    lr: Annotated[float, typer.Option(min=0.0, help="Classifier learning rate; backbone: 0.1x.")] = 1e-3,
    val_split: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Share of each class held out when there is no val/ folder.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seeds the split, initial weights and augmentation.")] = 0,
    device: TrainDeviceOpt = "auto",
    workers: Annotated[int, typer.Option(help=ranged("Image-decoding processes.", "workers"))] = 2,
    feature_engine: Annotated[Literal["auto", "openvino", "onnxruntime", "torch"], typer.Option(
        help="Runs the frozen backbone for the head phase; auto: OpenVINO, else ONNX Runtime, else "
        "PyTorch (PyTorch on a GPU).")] = "auto",
    bf16: Annotated[bool, typer.Option(
        help="Full fine-tuning on a CPU in bfloat16 autocast (AVX512-BF16/AMX); validation in float32.")
    ] = False,
    freeze: Annotated[bool, typer.Option(
        "--freeze/--no-freeze", help="Train the head on the frozen backbone first (fast).")] = True,
    patience: Annotated[int, typer.Option(
        help=ranged("Stop after this many epochs without better val loss.", "patience"))] = 5,
    resume: Annotated[Path | None, typer.Option(
        file_okay=False, help="Continue the interrupted run in RUN_DIR with its own settings.")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite the run files in a non-empty --out.")] = False,
    devices: Annotated[str | None, typer.Option(
        help="Train on these GPUs, one process each (DDP), e.g. 0,1.")] = None,
    nproc: Annotated[int | None, typer.Option(
        help=ranged("Train in N processes (DDP; CPU processes unless on GPUs).", "nproc"))] = None,
    dist_timeout: Annotated[float, typer.Option(
        help=ranged("Seconds a process waits for the others before the job fails.", "dist_timeout"))] = 120.0,
    accept_rate: Annotated[float, typer.Option(
        help="Share of known validation images the unknown detector accepts (0.5 to 1, exclusive); the "
        "rest of the score range is called unknown.")] = 0.95,
    unknown_rule: Annotated[str, typer.Option(
        help="Unknown-detector score: knn+imagenet (k-NN in the features and in the ImageNet head's "
        "logits), knn, mahalanobis, knn+msp, centroid, msp or energy.")] = "knn+imagenet",
) -> None:
    """Fine-tune an ImageNet-pretrained CNN on a folder of photos (several processes: --devices, --nproc)."""
    from edgecnn.distributed import launch, parse_devices
    from edgecnn.finetune import FinetuneConfig
    from edgecnn.finetune import finetune as run_finetune
    from edgecnn.process_group import env_dist

    if data is None and resume is None:
        raise EdgecnnError("give the DATA folder to train on, or --resume RUN_DIR to continue a run")
    if out is not None and name != "finetune":
        raise EdgecnnError("give --out PATH or --name NAME (runs/NAME), not both")
    gpus = parse_devices(devices)
    out = resume or out or run_folder(Path("runs"), name, exist_ok, numbered=not env_dist().active)
    config = FinetuneConfig(
        data=data or Path("."), out=out, arch=arch, weights=weights, head_epochs=head_epochs,
        epochs=epochs, batch_size=batch_size, lr=lr, val_split=val_split, seed=seed, imgsz=imgsz,
        device="gpu" if gpus else device, workers=workers, feature_engine=feature_engine, bf16=bf16,
        patience=patience,
        freeze=freeze, resume=resume is not None, force=force or exist_ok, dist_timeout=dist_timeout,
        accept_rate=accept_rate, unknown_rule=unknown_rule)
    result = launch(config, nproc or len(gpus), gpus) if gpus or nproc else run_finetune(config)
    if env_dist().main:  # under torchrun, rank 0 prints the summary
        console.print(result_table(result))


@app.command(epilog="Example: edgecnn models --latency --threads 2")
@user_errors
def models(
    latency: Annotated[bool, typer.Option(
        "--latency", help="Also measure PyTorch CPU latency (batch 1, median of 20).")] = False,
    threads: Annotated[int | None, typer.Option(help=ranged("CPU threads for --latency.", "threads"))] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the architectures: offline ImageNet weights, input size, size, measured latency."""
    import json
    from dataclasses import asdict

    require_train("models")
    from edgecnn.models import describe_archs

    found = describe_archs(measure=latency, threads=threads)
    if json_out:
        for info in found:
            typer.echo(json.dumps(asdict(info)))
        return
    console.print(models_table(found))
