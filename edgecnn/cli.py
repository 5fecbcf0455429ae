"""The `edgecnn` command: one thin Typer function per command (parse, call the library, print).

Heavy libraries (torch, timm, openvino) are imported inside the commands, so `edgecnn --help`
and the runtime commands start fast.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, TypeVar

import typer
from rich.console import Console

from edgecnn.runtime.core.errors import EdgecnnError, require_train
from edgecnn.runtime.core.options import check_options, parse_count
from edgecnn.runtime.core.terminal import printable

app = typer.Typer(
    name="edgecnn",
    help="Fine-tune an ImageNet-pretrained CNN on your photos, export it to ONNX/OpenVINO (FP32 + INT8) "
    "and run it live on a camera.\n\nExample: edgecnn finetune samples/photos --out runs/demo",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def user_errors(func: F) -> F:
    """Print an EdgecnnError as one line and exit 2; Ctrl-C (or SIGTERM) exits 130 without a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        previous = _terminate_like_ctrl_c()
        try:
            check_options(kwargs)  # every float finite, every count in range: before any work
            return func(*args, **kwargs)
        except EdgecnnError as exc:
            err_console.print(f"[bold red]error:[/] {printable(exc)}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt as exc:  # the message, when there is one, says what was kept
            message = f"interrupted: {exc}" if str(exc) else "interrupted"
            err_console.print(printable(message), highlight=False, soft_wrap=True)
            global _INTERRUPTED_EXIT
            _INTERRUPTED_EXIT = True
            raise typer.Exit(130) from None
        finally:
            _restore_signals(previous)

    return wrapper  # type: ignore[return-value]


def _terminate_like_ctrl_c() -> dict[int, Any]:
    """SIGTERM (kill, docker stop) cleans up like Ctrl-C: temporary files removed, last epoch kept.

    Both also set `interrupted`, so that export stops at its next step even when a library swallowed
    the KeyboardInterrupt. A second signal while that clean-up (or an atexit hook) runs is noted, not
    raised: the clean-up finishes and the exit status stays 130. A signal during an import is raised
    once the import is over: raised inside `import torch` it aborted the process ("terminate called after
    throwing pybind11::error_already_set", 1 of 60 early-interrupted finetunes). Returns the handlers it
    replaced.
    """
    import signal
    import threading

    from edgecnn.runtime.core.errors import interrupt_raised, interrupted

    def interrupt(signum: int, frame: Any) -> None:
        if interrupt_raised.is_set():
            return
        interrupted.set()
        if _importing(frame):
            threading.Timer(0.05, retry, (signum,)).start()
            return
        interrupt_raised.set()
        raise KeyboardInterrupt

    def retry(signum: int) -> None:  # the signal again, in the main thread, if still not raised
        import _thread

        if not interrupt_raised.is_set() and signal.getsignal(signum) is interrupt:
            _thread.interrupt_main(signum)

    interrupted.clear()
    interrupt_raised.clear()
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: signal.signal(signum, interrupt) for signum in (signal.SIGTERM, signal.SIGINT)}


def _importing(frame: Any) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _restore_signals(previous: dict[int, Any]) -> None:
    """After a command: the caller's handlers back. After an interrupt the `edgecnn` process itself
    ignores further signals while it exits: Python resets its own handlers to the default at shutdown,
    so a late SIGTERM would otherwise kill it (status 143, not 130) or raise inside an atexit hook."""
    import signal


    if _STANDALONE:  # the work is done or cleaned up: a signal during shutdown must not turn 0/130 into 143
        for signum in previous:
            signal.signal(signum, signal.SIG_IGN)  # SIG_IGN survives Python's shutdown
    else:  # called in-process: the caller's handlers back, also after an interrupt (a later Ctrl-C is theirs)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


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
    epochs: Annotated[int, typer.Option(min=0, help="Epochs training every layer, after the head.")] = 0,
    head_epochs: Annotated[int, typer.Option(
        min=0, help="Epochs training the classifier on cached features of the frozen backbone.")] = 10,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    lr: Annotated[float, typer.Option(min=0.0, help="Classifier learning rate; backbone: 0.1x.")] = 1e-3,
    val_split: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Share of each class held out when there is no val/ folder.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seeds the split, initial weights and augmentation.")] = 0,
    device: Annotated[Literal["auto", "cpu", "cuda"], typer.Option(help="Where to train.")] = "auto",
    workers: Annotated[int, typer.Option(min=0, help="Image-decoding processes.")] = 2,
    feature_engine: Annotated[Literal["auto", "openvino", "onnxruntime", "torch"], typer.Option(
        help="Runs the frozen backbone for the head phase; auto: OpenVINO, else ONNX Runtime, else "
        "PyTorch (PyTorch on a GPU).")] = "auto",
    bf16: Annotated[bool, typer.Option(
        help="Full fine-tuning on a CPU in bfloat16 autocast (AVX512-BF16/AMX); validation in float32.")
    ] = False,
    freeze: Annotated[bool, typer.Option(
        "--freeze/--no-freeze", help="Train the head on the frozen backbone first (fast).")] = True,
    patience: Annotated[int, typer.Option(min=1, help="Stop after this many epochs without better val loss.")
                        ] = 5,
    resume: Annotated[Path | None, typer.Option(
        file_okay=False, help="Continue the interrupted run in RUN_DIR with its own settings.")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite the run files in a non-empty --out.")] = False,
    devices: Annotated[str | None, typer.Option(
        help="Train on these GPUs, one process each (DDP), e.g. 0,1.")] = None,
    nproc: Annotated[int | None, typer.Option(
        min=1, help="Train in N processes (DDP; CPU processes unless on GPUs).")] = None,
    dist_timeout: Annotated[float, typer.Option(
        min=1.0, help="Seconds a process waits for the others before the job fails.")] = 120.0,
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
    from edgecnn.plots import result_table
    from edgecnn.process_group import env_dist

    if data is None and resume is None:
        raise EdgecnnError("give the DATA folder to train on, or --resume RUN_DIR to continue a run")
    if out is not None and name != "finetune":
        raise EdgecnnError("give --out PATH or --name NAME (runs/NAME), not both")
    gpus = parse_devices(devices)
    out = resume or out or _run_folder(Path("runs"), name, exist_ok, numbered=not env_dist().active)
    config = FinetuneConfig(
        data=data or Path("."), out=out, arch=arch, weights=weights, head_epochs=head_epochs,
        epochs=epochs, batch_size=batch_size, lr=lr, val_split=val_split, seed=seed, imgsz=imgsz,
        device="cuda" if gpus else device, workers=workers, feature_engine=feature_engine, bf16=bf16,
        patience=patience,
        freeze=freeze, resume=resume is not None, force=force or exist_ok, dist_timeout=dist_timeout,
        accept_rate=accept_rate, unknown_rule=unknown_rule)
    result = launch(config, nproc or len(gpus), gpus) if gpus or nproc else run_finetune(config)
    if env_dist().main:  # under torchrun, rank 0 prints the summary
        console.print(result_table(result))


def _run_folder(root: Path, name: str, exist_ok: bool, numbered: bool = True) -> Path:
    """runs/NAME (or bundles/NAME), numbered like Ultralytics' run folders unless --exist-ok.

    torchrun starts one CLI per rank: they must agree on one folder, so no numbering there.
    """
    from edgecnn.runtime.core.outputs import next_free_folder

    return next_free_folder(root, name, exist_ok or not numbered)


@app.command(epilog="Example: edgecnn export runs/finetune/best.pt --int8")
@user_errors
def export(
    checkpoint: Annotated[Path | None, typer.Argument(help="best.pt written by `edgecnn finetune`.")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Bundle folder to write (default: bundles/NAME, numbered).")] = None,
    name: Annotated[str | None, typer.Option(
        help="Bundle name: writes bundles/NAME, or bundles/NAME2... when taken (default: the run folder's "
        "name, or imagenet with --pretrained).")] = None,
    exist_ok: Annotated[bool, typer.Option(
        "--exist-ok", help="Replace bundles/NAME instead of numbering a new one.")] = False,
    format: Annotated[str, typer.Option(help="onnx, openvino or all.")] = "all",  # the CLI's word
    int8: Annotated[bool, typer.Option("--int8", help="Also write INT8 models, checked vs FP32.")] = False,
    calibration: Annotated[Path | None, typer.Option(
        help="Images to calibrate INT8 on (default: the checkpoint's training images; with --pretrained: "
        "samples/photos of the edgecnn clone).")] = None,
    calibration_size: Annotated[int, typer.Option(help="How many calibration images.")] = 300,
    calibration_method: Annotated[str, typer.Option(
        help="ONNX Runtime calibration: auto (try MinMax and Percentile, keep the best), minmax, entropy "
             "or percentile.")] = "auto",
    max_drop: Annotated[float, typer.Option(
        help="Labelled images: fail (exit 1, best INT8 kept and marked) when INT8 loses more top-1 points "
             "than this, never judged finer than one image. Any changed answer FP32 is confident in "
             "(probability >= 0.5) fails too.")] = 1.0,
    opset: Annotated[int, typer.Option(help="ONNX opset (13 to 20).")] = 17,
    batch: Annotated[str, typer.Option(help="'dynamic' or a fixed batch size.")] = "dynamic",
    pretrained: Annotated[bool, typer.Option("--pretrained", help="Export the ImageNet-1k model.")] = False,
    accept_rate: Annotated[float, typer.Option(
        help="With --pretrained: share of the calibration images its unknown score (1 - max softmax) "
        "accepts; a fine-tuned checkpoint brings its own threshold.")] = 0.95,
    imgsz: Annotated[int, typer.Option(
        min=0, help="With --pretrained: square input size, a multiple of 32 (default 0: the architecture's "
        "own, 224). A checkpoint exports at the size it was fine-tuned at (finetune --imgsz).")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --out folder.")] = False,
) -> None:
    """Export a checkpoint to a self-describing ONNX + OpenVINO bundle, optionally INT8.

    Exit 0 when every gate passed, 1 when a gate failed (bundle written, failed models marked in
    report.md; `auto` never picks them), 2 for bad input.
    """
    require_train("export")
    from edgecnn.export.bundle import FORMATS, ExportConfig, ExportFailed, export_bundle
    from edgecnn.export.report import print_report

    fixed_batch = None if batch == "dynamic" else parse_count(batch)
    if batch != "dynamic" and fixed_batch is None:
        raise EdgecnnError(f"--batch must be 'dynamic' or a positive number, got {batch!r}")
    if out is not None and name is not None:
        raise EdgecnnError("give --out PATH or --name NAME (bundles/NAME), not both")
    if out is None:
        default = "imagenet" if pretrained or checkpoint is None else Path(checkpoint).resolve().parent.name
        out = _run_folder(Path("bundles"), name or default, exist_ok)
        force = force or exist_ok
    if fixed_batch:
        check_options({"batch": fixed_batch})
    config = ExportConfig(
        checkpoint=checkpoint, out=out, pretrained=pretrained, int8=int8, calibration=calibration,
        formats=FORMATS if format == "all" else (format,), calibration_size=calibration_size,
        calibration_method=calibration_method, max_drop=max_drop, opset=opset,
        batch=fixed_batch, accept_rate=accept_rate, imgsz=imgsz, force=force)
    try:
        report = export_bundle(config)
    except ExportFailed as exc:  # the bundle is written, a gate failed: the table, the error, exit 1
        print_report(exc.report, console)
        err_console.print(f"[bold red]gate failed:[/] {printable(exc)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    print_report(report, console)
    console.print(f"bundle written to {printable(out)}", highlight=False)


@app.command(epilog="Example: edgecnn models --latency --threads 2")
@user_errors
def models(
    latency: Annotated[bool, typer.Option(
        "--latency", help="Also measure PyTorch CPU latency (batch 1, median of 20).")] = False,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads for --latency.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the architectures: offline ImageNet weights, input size, size, measured latency."""
    import json
    from dataclasses import asdict

    from rich.table import Table

    require_train("models")
    from edgecnn.models import describe_archs

    found = describe_archs(measure=latency, threads=threads)
    if json_out:
        for info in found:
            typer.echo(json.dumps(asdict(info)))
        return
    table = Table(title="--arch choices (any timm classifier name works too)", title_justify="left")
    for name, justify in (("arch", "left"), ("weights here", "left"), ("input", "right"),
                          ("params", "right"), ("CPU ms", "right")):
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for info in found:
        table.add_row(info.arch, "yes" if info.weights else "no (download)",
                      f"{info.input_size[0]}x{info.input_size[1]}", f"{info.params_m:.1f} M",
                      "-" if info.latency_ms is None else f"{info.latency_ms:.1f}")
    console.print(table)


ModelPath = Annotated[Path, typer.Argument(help="Bundle folder, .onnx or OpenVINO .xml.")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, gpu or npu; auto picks the fastest present.")]
BackendOpt = Annotated[str, typer.Option(help="auto, onnxruntime or openvino.")]
PrecisionOpt = Annotated[str, typer.Option(
    help="auto (INT8 when its accuracy check passed), fp32, fp16 (OpenVINO) or int8.")]
LabelsOpt = Annotated[Path | None, typer.Option(help="Labels (one a line) for a model without metadata.")]
MeanOpt = Annotated[str | None, typer.Option(help="R,G,B mean of a float-input model without metadata.")]
StdOpt = Annotated[str | None, typer.Option(help="R,G,B std of a float-input model, e.g. 0.229,0.224,0.225.")]
ThreadsOpt = Annotated[int | None, typer.Option(help="CPU threads for inference (default: the backend's).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
CacheOpt = Annotated[str | None, typer.Option(
    help="OpenVINO compiled-model cache folder (default: $EDGECNN_CACHE_DIR, else "
    "$XDG_CACHE_HOME/edgecnn/openvino or ~/.cache/edgecnn/openvino; '' = off).")]


def _show(json_out: bool, data: Any, table: Callable[[], Any]) -> None:
    """--json: `data` as one JSON line on stdout; else the Rich table `table()` makes."""
    import json

    if json_out:
        typer.echo(json.dumps(data))
    else:
        console.print(table())


def _load_engine(model: Path, device: str, backend: str, precision: str, labels: Path | None = None,
                 mean: str | None = None, std: str | None = None, threads: int | None = None,
                 quiet: bool = False, streams: int | None = None, cache_dir: str | None = None,
                 requests: int | None = None) -> Any:
    from edgecnn.runtime import load
    from edgecnn.runtime.core.selection import parse_triplet

    engine = load(model, device=device, precision=precision, backend=backend, labels=labels, threads=threads,
                  mean=parse_triplet(mean, "--mean"), std=parse_triplet(std, "--std"), streams=streams,
                  cache_dir=cache_dir, requests=requests)
    if not quiet:
        err_console.print(printable(f"{engine.describe()} ({engine.reason})"), highlight=False,
                          soft_wrap=True)  # one line, also piped
    return engine


@app.command(epilog="Example: edgecnn predict bundles/demo samples/photos/tools --top-k 3\n\n"
                     "Glob, annotated copies: edgecnn predict bundles/demo 'samples/photos/*/fish*.webp' "
                     "--save runs/predict")
@user_errors
def predict(
    model: ModelPath,
    images: Annotated[list[Path], typer.Argument(
        help="Image files, folders or quoted globs ('photos/*/fish*.webp', expanded by edgecnn, sorted).")],
    top_k: Annotated[int | None, typer.Option(
        help="How many classes to show per image (default: 5, or all when the model has fewer).")] = None,
    device: DeviceOpt = "auto", backend: BackendOpt = "auto", precision: PrecisionOpt = "auto",
    labels: LabelsOpt = None, mean: MeanOpt = None, std: StdOpt = None, threads: ThreadsOpt = None,
    json_out: JsonOpt = False, cache_dir: CacheOpt = None,
    save: Annotated[Path | None, typer.Option(
        help="Folder for an annotated copy of each image (top label, probabilities, unknown), named after "
        "it; refused when it already holds one of those names, unless --force.")] = None,
    force: Annotated[bool, typer.Option("--force", help="With --save: replace files of the same name.")
                     ] = False,
) -> None:
    """Classify images with an exported model (no PyTorch needed)."""
    import json

    from edgecnn.runtime.measure.predict import predict_files
    from edgecnn.runtime.measure.tables import predictions_table

    skipped: list[str] = []
    with _load_engine(model, device, backend, precision, labels, mean, std, threads,
                      cache_dir=cache_dir) as engine:
        rows = predict_files(engine, images, min(5, len(engine.labels)) if top_k is None else top_k, skipped,
                             save_to=save, force=force)
        if json_out:
            for row in rows:
                typer.echo(json.dumps(row.to_dict()))
        else:
            rows = list(rows)
            console.print(predictions_table(rows))  # the model line is already on stderr
            if save is not None:
                saved = sum(row.saved is not None for row in rows)
                console.print(printable(f"{saved} annotated image(s) written to {save}"), highlight=False,
                              soft_wrap=True)
    if skipped:  # damaged files inside folders: counted and named, the rest classified
        named = "; ".join(skipped[:3]) + (f"; and {len(skipped) - 3} more" if len(skipped) > 3 else "")
        err_console.print(printable(f"skipped {len(skipped)} unreadable image(s): {named}"), highlight=False,
                          soft_wrap=True)


@app.command(name="eval", epilog="Example: edgecnn eval bundles/demo samples/photos --unknown photos/other"
             "\n\nA checkpoint (needs the [train] extra): edgecnn eval runs/demo/best.pt samples/photos")
@user_errors
def eval_command(
    model: Annotated[Path, typer.Argument(
        help="Bundle folder, .onnx, OpenVINO .xml, or a .pt checkpoint of `edgecnn finetune` (PyTorch).")],
    data: Annotated[Path, typer.Argument(help="Folder with one subfolder per class (or a val/ of them).")],
    out: Annotated[Path, typer.Option(help="Folder for eval.json, misclassified.txt, confusion_matrix.png.")
                   ] = Path("runs/eval"),
    device: DeviceOpt = "auto", backend: BackendOpt = "auto", precision: PrecisionOpt = "auto",
    labels: LabelsOpt = None, mean: MeanOpt = None, std: StdOpt = None, threads: ThreadsOpt = None,
    json_out: JsonOpt = False, cache_dir: CacheOpt = None,
    unknown: Annotated[Path | None, typer.Option(
        help="Folder of images of none of the classes: AUROC, unknown accepted at the model's threshold, "
        "and unknown.png (score histograms + ROC).")] = None,
    split: Annotated[str, typer.Option(
        help="val: the fine-tune run's own validation images in DATA (the bundle or checkpoint records "
        "them), train: its training images, all: every image of DATA; auto: val when DATA holds any of "
        "the run's training images, else all.")] = "auto",
) -> None:
    """Measure top-1/top-5, per-class precision/recall and the confusion matrix on a labelled folder
    (and the unknown detector: known images accepted; with --unknown, how well it catches others).
    Where DATA holds images the model was trained on, only the run's validation images count (--split)."""
    import json

    from edgecnn.runtime.measure.evaluate import evaluate_folder
    from edgecnn.runtime.measure.splits import SPLITS, bundle_split
    from edgecnn.runtime.measure.tables import eval_table

    if split not in SPLITS:
        raise EdgecnnError(f"--split {split!r} is not a split; choose {', '.join(SPLITS)}")
    if model.suffix == ".pt":
        engine, run = _checkpoint_engine(model, device, backend, precision, threads,
                                         given={"--labels": labels, "--mean": mean, "--std": std})
    else:
        run = bundle_split(model)
        engine = _load_engine(model, device, backend, precision, labels, mean, std, threads,
                              cache_dir=cache_dir)
    with engine:
        report = evaluate_folder(engine, data, out, progress=not json_out, unknown_dir=unknown, split=split,
                                 run=run)
    if json_out:
        typer.echo(json.dumps(report.to_dict()))
        return
    console.print(eval_table(report))
    console.print(f"{len(report.misclassified)} misclassified, {len(report.skipped)} skipped; "
                  f"written to {printable(out)}", highlight=False)


def _checkpoint_engine(model: Path, device: str, backend: str, precision: str, threads: int | None,
                       given: dict[str, Any]) -> Any:
    """eval on a .pt: the checkpoint's FP32 PyTorch model on the CPU (export's reference), and its split."""
    for option, value, allowed in (("--device", device, ("auto", "cpu")),
                                   ("--backend", backend, ("auto", "pytorch")),
                                   ("--precision", precision, ("auto", "fp32"))):
        if value not in allowed:
            raise EdgecnnError(f"{option} {value}: a .pt checkpoint runs in PyTorch, FP32, on the CPU; "
                               f"export it (edgecnn export {model}) for other devices, backends and INT8")
    for option, value in given.items():
        if value is not None:
            raise EdgecnnError(f"{option} is for models without metadata; a checkpoint brings its own labels "
                               f"and preprocessing: leave {option} out")
    require_train("eval on a .pt checkpoint")
    from edgecnn.export.reference import checkpoint_engine

    engine, run = checkpoint_engine(model, threads)
    err_console.print(printable(f"{engine.describe()} ({engine.reason})"), highlight=False)
    return engine, run


@app.command(epilog="Example: edgecnn bench bundles/demo --device cpu --seconds 5")
@user_errors
def bench(
    model: ModelPath,
    device: DeviceOpt = "auto", backend: BackendOpt = "auto", precision: PrecisionOpt = "auto",
    batch: Annotated[int, typer.Option(help="Images per inference.")] = 1,
    threads: ThreadsOpt = None,
    seconds: Annotated[float, typer.Option(help="Measuring time (half latency, half throughput).")] = 10.0,
    baseline: Annotated[str, typer.Option(help="none, torch (PyTorch eager) or benchmark_app.")] = "none",
    hint: Annotated[str, typer.Option(help="OpenVINO performance hint: latency or throughput.")] = "latency",
    nstreams: Annotated[int | None, typer.Option(
        min=1, help="Requests run at once (benchmark_app's -nstreams; default: the hint's).")] = None,
    nireq: Annotated[int | None, typer.Option(
        min=1, help="Requests kept in flight for throughput (benchmark_app's -nireq; default 4).")] = None,
    cold_start: Annotated[bool, typer.Option(help="Also time a fresh process: import, load, 1st result.")
                          ] = True,
    labels: LabelsOpt = None,
    json_out: JsonOpt = False, cache_dir: CacheOpt = None,
) -> None:
    """Measure latency, throughput, cold start and memory of a model on a device."""

    from edgecnn.runtime.measure.bench import BenchConfig
    from edgecnn.runtime.measure.bench import bench as run_bench
    from edgecnn.runtime.measure.tables import bench_table

    config = BenchConfig(model=model, device=device, backend=backend, precision=precision, batch=batch,
                         threads=threads, seconds=seconds, baseline=baseline, hint=hint,
                         cold_start=cold_start, labels=str(labels) if labels else None, cache_dir=cache_dir,
                         nstreams=nstreams, nireq=nireq)
    report = run_bench(config)
    _show(json_out, report.to_dict(), lambda: bench_table(report))


@app.command(epilog="Example: edgecnn camera bundles/imagenet --source samples/videos/cup.mp4 --headless "
                     "--serve 8080\n\nSeveral: edgecnn camera bundles/imagenet --source 0 --source rtsp://cam2/live")
@user_errors
def camera(
    model: ModelPath,
    source: Annotated[list[str] | None, typer.Option(
        help="Webcam index (0), video file, rtsp:// or http:// URL, or a folder of images; repeat it for "
             "several sources (batched together).")] = None,
    sources: Annotated[Path | None, typer.Option(
        "--sources", exists=True, dir_okay=False, help="A text file naming one source a line.")] = None,
    device: DeviceOpt = "auto", backend: BackendOpt = "auto", precision: PrecisionOpt = "auto",
    top_k: Annotated[int | None, typer.Option(
        help="Labels to show per frame (default: 3, or all when the model has fewer).")] = None,
    min_prob: Annotated[float, typer.Option(
        help="Top label below this probability shows as 'uncertain' (a low-confidence floor among the "
        "model's classes; with 4 classes it is never below 0.25). Frames of none of the classes show as "
        "'unknown' by the model's own unknown detector and threshold, whatever --min-prob is.")] = 0.2,
    smooth: Annotated[float, typer.Option(
        help="Weight of past frames in the moving average of probabilities and unknown score; 0 = off.")
                      ] = 0.6,
    headless: Annotated[bool, typer.Option(help="No window (automatic when there is no display).")] = False,
    save: Annotated[Path | None, typer.Option(
        help="Write the annotated video to this .mp4 (H.264 when this OpenCV build has it, else mp4v).")
    ] = None,
    jsonl: Annotated[Path | None, typer.Option(help="Write one JSON line per processed frame.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing --save and --jsonl files.")
                     ] = False,
    max_frames: Annotated[int | None, typer.Option(help="Stop after this many processed frames.")] = None,
    realtime: Annotated[bool, typer.Option(help="Play files at their FPS and drop frames like a camera.")
                        ] = False,
    width: Annotated[int | None, typer.Option(help="Frame width to ask the webcam for.")] = None,
    height: Annotated[int | None, typer.Option(help="Frame height to ask the webcam for.")] = None,
    fps: Annotated[float | None, typer.Option(help="FPS to ask the webcam for (folders: slideshow speed).")
                   ] = None,
    reconnect_timeout: Annotated[float, typer.Option(help="Seconds to keep reconnecting a lost stream.")
                                 ] = 30.0,
    start: Annotated[float, typer.Option(min=0, max=10**6, help="Video files: skip this many seconds first.")
                     ] = 0.0,
    vid_stride: Annotated[int, typer.Option(
        min=1, max=1_000_000, help="Files and folders: process every Nth frame (the others are skipped "
        "before they become images; frame numbers stay the source's). Live sources take every "
        "newest frame.")] = 1,
    collect: Annotated[Path | None, typer.Option(
        help="Save the frames whose result was uncertain or unknown here (JPEG + JSON sidecar), to label "
        "and fine-tune on.")] = None,
    collect_max: Annotated[int, typer.Option(min=1, max=1_000_000, help="Frames --collect saves at most.")
                           ] = 100,
    record_to: Annotated[Path | None, typer.Option(
        help="With --serve: the page's record button saves frames into RECORD_TO/CLASS/ (finetune's "
        "layout).")] = None,
    threads: ThreadsOpt = None,
    serve: Annotated[str | None, typer.Option(
        metavar="[HOST:]PORT", help="Show the live picture and results on a web page at this address "
        "(host 127.0.0.1 unless given; another host needs --token or --no-auth).")] = None,
    token: Annotated[str | None, typer.Option(
        envvar="EDGECNN_TOKEN", help="Secret viewers of --serve must give: open /?token=TOKEN.")] = None,
    no_auth: Annotated[bool, typer.Option(
        "--no-auth", help="Let anyone who can reach a non-loopback --serve address watch.")] = False,
    json_out: JsonOpt = False, cache_dir: CacheOpt = None,
) -> None:
    """Recognise what webcams, video files, streams or image folders show, live (several at once).

    With --serve, a browser shows it too: http://127.0.0.1:PORT/ (also /stream.mjpg, /events,
    /api/state and /healthz).
    """
    from contextlib import ExitStack
    from dataclasses import asdict, replace

    from edgecnn.runtime.live.camera import CameraConfig, camera_engine, check_outputs, run_camera
    from edgecnn.runtime.live.camera_report import summary_table
    from edgecnn.runtime.live.video import VideoOptions

    say = lambda message: err_console.print(printable(message), highlight=False)  # noqa: E731
    names, shown = _camera_sources(source, sources)
    if serve is None and (no_auth or record_to is not None):
        raise EdgecnnError(f"{'--no-auth' if no_auth else '--record-to'} goes with --serve [HOST:]PORT")
    options = VideoOptions(width=width, height=height, fps=fps, realtime=realtime,
                           reconnect_timeout=reconnect_timeout, start=start, vid_stride=vid_stride)
    config = CameraConfig(sources=names, top_k=3 if top_k is None else top_k, min_prob=min_prob,
                          smooth=smooth, headless=headless, save=save, jsonl=jsonl, max_frames=max_frames,
                          video=options, force=force)
    check_outputs(config)  # an existing --save or --jsonl is refused before the page or the model start
    with ExitStack() as stack:
        sinks = [stack.enter_context(_live_server(serve, shown, token, no_auth, say, record_to))
                 ] if serve else []
        collector = stack.enter_context(_collector(collect, collect_max)) if collect else None
        sinks += [collector] if collector else []
        settings = camera_engine() if threads is None else {"threads": threads}
        engine = stack.enter_context(_load_engine(model, device, backend, precision, **settings,
                                                  cache_dir=cache_dir))
        if top_k is None:
            config = replace(config, top_k=min(3, len(engine.labels)))
        summary = run_camera(engine, config, say=say, sinks=sinks)
    collected = {} if collector is None else {"collected": collector.saved,
                                              "collect_dropped": collector.dropped}
    _show(json_out, {**asdict(summary), **collected}, lambda: summary_table(summary))
    if collector is not None and not json_out:
        console.print(printable(collector.describe()), highlight=False, soft_wrap=True)


def _camera_sources(source: list[str] | None, sources: Path | None) -> tuple[tuple[str, ...], str]:
    """The sources named (--source, --sources FILE; else webcam 0), each checked, and how to show them."""
    from edgecnn.runtime.live.camera import read_sources_file
    from edgecnn.runtime.live.video import check_source

    names = tuple(source or ()) + (read_sources_file(sources) if sources else ()) or ("0",)
    specs = [check_source(name) for name in names]  # a missing file fails before the model loads
    return names, specs[0].name if len(specs) == 1 else ", ".join(spec.name for spec in specs)


def _collector(folder: Path, limit: int) -> Any:
    from edgecnn.runtime.live.collect import Collector

    return Collector(folder, limit=limit)


@app.command(epilog="Example: edgecnn capture 0 --out data/mine --label cup --count 100 --every 0.5")
@user_errors
def capture(
    source: Annotated[str, typer.Argument(help="Webcam index (0), video file, rtsp:// or http:// URL, or a "
                                               "folder of images.")],
    out: Annotated[Path, typer.Option(help="Data folder: frames go to OUT/LABEL/ (what finetune reads).")],
    label: Annotated[str, typer.Option(help="Class name: the folder the frames go to.")],
    count: Annotated[int, typer.Option(min=1, max=1_000_000, help="Frames to save.")] = 100,
    every: Annotated[float, typer.Option(min=0, max=86_400, help="Seconds between saved frames (media time "
                                         "for files).")] = 0.0,
    min_change: Annotated[float, typer.Option(min=0, max=1, help="Skip a frame that differs less than this "
                                              "from the last saved one (mean grey difference, 0-1).")] = 0.02,
    duration: Annotated[float | None, typer.Option(
        min=0, max=86_400, help="Stop after this many seconds of the source (media time for files).")] = None,
    headless: Annotated[bool, typer.Option(help="No preview window (automatic when there is no display).")
                        ] = False,
    reconnect_timeout: Annotated[float, typer.Option(
        min=0, max=86_400, help="Seconds to keep reconnecting a lost stream.")] = 30.0,
    json_out: JsonOpt = False,
) -> None:
    """Save frames of a camera, video or stream as training images for one class (Ctrl-C keeps them)."""
    import json
    from dataclasses import asdict

    from edgecnn.runtime.core.outputs import check_writable
    from edgecnn.runtime.live.capture import CaptureConfig, check_label, run_capture_cli
    from edgecnn.runtime.live.video import VideoOptions, check_source

    check_source(source)
    check_label(label)
    check_writable(out, "--out")
    config = CaptureConfig(source=source, out=out, label=label, count=count, every=every,
                           min_change=min_change, duration=duration,
                           video=VideoOptions(reconnect_timeout=reconnect_timeout))
    summary = run_capture_cli(config, headless=headless, progress=not json_out,
                              say=lambda message: err_console.print(printable(message), highlight=False))
    if json_out:
        typer.echo(json.dumps({k: v for k, v in asdict(summary).items() if k != "files"}))
    else:
        console.print(printable(capture_line(summary)), highlight=False, soft_wrap=True)
    if summary.interrupted:
        raise typer.Exit(130)


def capture_line(summary: Any) -> str:
    """One sentence: how many frames were saved where, and why the capture stopped early if it did."""
    text = f"saved {summary.saved} of {summary.requested} frames to {summary.folder}"
    if summary.skipped_similar + summary.skipped_interval:
        text += (f" ({summary.skipped_similar} near-identical and {summary.skipped_interval} too-soon frames "
                 "skipped)")
    if summary.interrupted:
        text += "; interrupted, the saved frames are kept"
    elif summary.duration_reached:
        text += f"; --duration reached after {summary.frames_read} frames"
    elif summary.ended_early:
        text += f"; the source ended after {summary.frames_read} frames"
    return text


@contextmanager
def _live_server(serve: str, source: str, token: str | None, no_auth: bool,
                 say: Callable[[str], None], record_to: Path | None = None) -> Iterator[Any]:
    """The --serve page, listening before the model loads (a port in use fails at once)."""
    from edgecnn.runtime.live.recorder import Recorder
    from edgecnn.runtime.live.web import LiveServer, check_access, parse_address

    address = parse_address(serve)
    access = check_access(address, token, no_auth, say)
    recorder = Recorder(record_to) if record_to is not None else None
    try:
        with LiveServer(address, source, access, say, recorder=recorder) as server:
            say(f"camera page: {server.url}" + ("?token=TOKEN" if server.token else ""))
            yield server
    finally:
        if recorder is not None:
            recorder.close()


@app.command(epilog="Example: edgecnn info bundles/demo")
@user_errors
def info(
    model: Annotated[Path | None, typer.Argument(help="Bundle folder, .onnx or .xml.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Show a model's metadata and the backends and devices this machine offers."""

    from edgecnn.runtime.measure.info import machine_info, model_info
    from edgecnn.runtime.measure.tables import info_table

    data = {"machine": machine_info(), "model": model_info(model) if model is not None else None}
    _show(json_out, data, lambda: info_table(data))


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
        err_console.print(printable(f"serving {endpoints.name} ({endpoints.engine}): HTTP {endpoints.http}, "
                                    f"gRPC {endpoints.grpc}, metrics {endpoints.metrics}"), highlight=False,
                          soft_wrap=True)

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
) -> None:
    """Write a Triton Inference Server model repository (ONNX Runtime + OpenVINO) from a bundle."""
    from edgecnn.runtime.serving.triton_repo import TritonRepoConfig, write_triton_repo

    config = TritonRepoConfig(bundle=bundle, repo=repo, name=name, kind=kind, max_batch=max_batch,
                              instances=instances, precision=precision)
    for folder in write_triton_repo(config):
        console.print(f"wrote {printable(folder)}", highlight=False)
    console.print(f"run: tritonserver --model-repository={printable(repo.resolve())} (see docs/serving.md)",
                  highlight=False)


_STANDALONE = False  # True in the `edgecnn` process itself (main), False when the app is called in-process
_INTERRUPTED_EXIT = False  # a command ended by Ctrl-C or SIGTERM, and said so


class _FlagsWithoutType(typer.core.TyperCommand):
    """On/off options show no `<bool>` type in --help: it invites `--json true`, which is an error."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


class _GroupWithoutType(typer.core.TyperGroup):
    """`edgecnn --help` itself: no `<bool>` after --help either."""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


app.info.cls = _GroupWithoutType
for _command in app.registered_commands:
    if _command.cls in (None, typer.core.TyperCommand):
        _command.cls = _FlagsWithoutType


def main() -> None:  # pragma: no cover - console entry for `edgecnn` and `python -m edgecnn`
    global _STANDALONE
    _STANDALONE = True
    import atexit

    atexit.register(_exit_130_after_interrupt)  # first registered, so it runs after every other atexit hook
    try:
        app(prog_name="edgecnn")
    except SystemExit as done:
        _leave(done.code)
    _leave(0)


def _leave(code: int | str | None) -> NoReturn:  # pragma: no cover - ends the process
    """Exit hooks run, then the process ends without tearing the interpreter down: with torch and timm
    loaded that teardown took 1.7-2 s after every command's work was done (python -c 'import torch,
    timm', 2 cores). When a non-daemon thread is still running, Python's own exit waits for it as usual."""
    import atexit
    import os
    import threading

    if isinstance(code, str):  # what SystemExit does with a message: print it, status 1
        sys.stderr.write(code + "\n")
        code = 1
    code = 130 if _INTERRUPTED_EXIT else int(code or 0)
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if any(t.is_alive() for t in others):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (edgecnn ... | head) or a closed stream
            pass
    os._exit(code)


def _exit_130_after_interrupt() -> None:
    """After an interrupted command, leave with status 130 once the other exit hooks have run.

    CPython exits by SIGINT instead (status -2 to a Python parent, whatever sys.exit said) when a
    KeyboardInterrupt once passed through one of its internal code runners, even one we caught: a SIGTERM
    during `import torch` did so in 5 of 60 runs of an early-interrupted finetune.
    """
    if _INTERRUPTED_EXIT:
        import os

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
