"""The `export` command: a checkpoint (or the ImageNet model) to a bundle, its gates deciding the status."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgecnn.cli.common import run_folder
from edgecnn.cli.process import user_errors
from edgecnn.cli.program import app
from edgecnn.cli.render import console, err_console, print_report
from edgecnn.runtime.core.errors import EdgecnnError, require_train
from edgecnn.runtime.core.options import check_options, parse_count
from edgecnn.runtime.core.terminal import printable


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
    report.md; `auto` never picks them), 2 for bad input. An INT8 model that fails only on its
    known/unknown decisions is held back (shipped, never picked by `auto`) and does not fail the export.
    """
    require_train("export")
    from edgecnn.export.bundle import FORMATS, ExportConfig, ExportFailed, export_bundle

    fixed_batch = None if batch == "dynamic" else parse_count(batch)
    if batch != "dynamic" and fixed_batch is None:
        raise EdgecnnError(f"--batch must be 'dynamic' or a positive number, got {batch!r}")
    if out is not None and name is not None:
        raise EdgecnnError("give --out PATH or --name NAME (bundles/NAME), not both")
    if out is None:
        default = "imagenet" if pretrained or checkpoint is None else Path(checkpoint).resolve().parent.name
        out = run_folder(Path("bundles"), name or default, exist_ok)
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
        print_report(exc.report)
        err_console.print(f"[bold red]gate failed:[/] {printable(exc)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    print_report(report)
    console.print(f"bundle written to {printable(out)}", highlight=False)

