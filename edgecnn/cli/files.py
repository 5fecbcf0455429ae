"""Commands on files: `predict` (images), `eval` (a labelled folder), `bench` (a model's speed), `info`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from edgecnn.cli.common import (
    BackendOpt,
    CacheOpt,
    DeviceOpt,
    JsonOpt,
    LabelsOpt,
    MeanOpt,
    ModelPath,
    PrecisionOpt,
    StdOpt,
    ThreadsOpt,
    load_engine,
)
from edgecnn.cli.process import user_errors
from edgecnn.cli.program import app
from edgecnn.cli.render import (
    bench_table,
    console,
    eval_table,
    info_table,
    predictions_table,
    say,
    show,
    tell,
    warn,
)
from edgecnn.runtime.core.errors import EdgecnnError, require_train
from edgecnn.runtime.core.terminal import printable


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

    skipped: list[str] = []
    with load_engine(model, device, backend, precision, labels, mean, std, threads,
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
                tell(f"{saved} annotated image(s) written to {save}")
    if skipped:  # damaged files inside folders: counted and named, the rest classified
        named = "; ".join(skipped[:3]) + (f"; and {len(skipped) - 3} more" if len(skipped) > 3 else "")
        warn(f"skipped {len(skipped)} unreadable image(s): {named}")


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

    if split not in SPLITS:
        raise EdgecnnError(f"--split {split!r} is not a split; choose {', '.join(SPLITS)}")
    if model.suffix == ".pt":
        engine, run = _checkpoint_engine(model, device, backend, precision, threads,
                                         given={"--labels": labels, "--mean": mean, "--std": std})
    else:
        run = bundle_split(model)
        engine = load_engine(model, device, backend, precision, labels, mean, std, threads,
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
    say(f"{engine.describe()} ({engine.reason})")
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
        help="Requests run at once (benchmark_app's -nstreams; default: the hint's).")] = None,
    nireq: Annotated[int | None, typer.Option(
        help="Requests kept in flight for throughput (benchmark_app's -nireq; default 4).")] = None,
    cold_start: Annotated[bool, typer.Option(help="Also time a fresh process: import, load, 1st result.")
                          ] = True,
    labels: LabelsOpt = None,
    json_out: JsonOpt = False, cache_dir: CacheOpt = None,
) -> None:
    """Measure latency, throughput, cold start and memory of a model on a device."""
    from edgecnn.runtime.measure.bench import BenchConfig
    from edgecnn.runtime.measure.bench import bench as run_bench

    config = BenchConfig(model=model, device=device, backend=backend, precision=precision, batch=batch,
                         threads=threads, seconds=seconds, baseline=baseline, hint=hint,
                         cold_start=cold_start, labels=str(labels) if labels else None, cache_dir=cache_dir,
                         nstreams=nstreams, nireq=nireq)
    report = run_bench(config)
    show(json_out, report.to_dict(), lambda: bench_table(report))


@app.command(epilog="Example: edgecnn info bundles/demo\n\nSelf-test: edgecnn info --check bundles/demo")
@user_errors
def info(
    model: Annotated[Path | None, typer.Argument(help="Bundle folder, .onnx or .xml.")] = None,
    json_out: JsonOpt = False,
    check: Annotated[bool, typer.Option(
        "--check", help="Run the bundle's self-test on the picked backend and device; print each "
        "reference's drift (exit 2 beyond its tolerance).")] = False,
) -> None:
    """Show a model's metadata and the backends and devices this machine offers."""
    from edgecnn.runtime.measure.info import machine_info, model_info

    if check:
        _check_selftest(model)
        return

    data = {"machine": machine_info(), "model": model_info(model) if model is not None else None}
    show(json_out, data, lambda: info_table(data))



def _check_selftest(model: Path | None) -> None:
    """`info --check`: the start-up self-test on demand, one line per reference frame."""
    from edgecnn.runtime.core.selftest import run_selftest

    if model is None:
        raise EdgecnnError("info --check needs a bundle folder, e.g. edgecnn info --check bundles/demo")
    with load_engine(model, "auto", "auto", "auto") as engine:
        drift = run_selftest(engine, say=warn)
        for one in drift:
            print(f"{one.name}: max abs diff {one.max_abs_diff:.3g} (tolerance {one.tolerance:.3g})")
        if drift:
            print(f"self-test passed: {engine.describe()}")
