"""The `edgecnn` command: one thin Typer function per command (parse, call the library, print).

Heavy libraries (torch, timm, openvino) are imported inside the commands, so `edgecnn --help`
and the runtime commands start fast.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from edgecnn.runtime.errors import EdgecnnError

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
    """Print an EdgecnnError as one line and exit 2; Ctrl-C exits 130 without a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except EdgecnnError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def not_yet(command: str) -> None:
    raise EdgecnnError(f"`edgecnn {command}` is not yet available in this version")


ExistingDir = Annotated[Path, typer.Argument(exists=True, file_okay=False, help="A folder of images.")]


@app.command(epilog="Example: edgecnn finetune samples/photos --out runs/demo --epochs 3")
@user_errors
def finetune(
    data: Annotated[Path, typer.Argument(help="Image folder: one subfolder per class, or train/ and val/.")],
    out: Annotated[Path, typer.Option(help="Run folder for best.pt, last.pt, metrics and plots.")] = Path(
        "runs/finetune"),
) -> None:
    """Fine-tune an ImageNet-pretrained CNN on a folder of photos."""
    not_yet("finetune")


@app.command(epilog="Example: edgecnn export runs/demo/best.pt --out bundles/demo --int8")
@user_errors
def export(
    checkpoint: Annotated[Path | None, typer.Argument(help="best.pt written by `edgecnn finetune`.")] = None,
    out: Annotated[Path, typer.Option(help="Bundle folder to write.")] = Path("bundle"),
) -> None:
    """Export a checkpoint to a self-describing ONNX + OpenVINO bundle, optionally INT8."""
    not_yet("export")


@app.command(epilog="Example: edgecnn predict bundles/demo samples/photos/tools --top-k 3")
@user_errors
def predict(
    model: Annotated[Path, typer.Argument(help="Bundle folder, .onnx or OpenVINO .xml.")],
    images: Annotated[list[Path], typer.Argument(help="Image files or folders.")],
) -> None:
    """Classify images with an exported model (no PyTorch needed)."""
    not_yet("predict")


@app.command(name="eval", epilog="Example: edgecnn eval bundles/demo samples/photos")
@user_errors
def evaluate(
    model: Annotated[Path, typer.Argument(help="Bundle folder, .onnx or OpenVINO .xml.")],
    data: Annotated[Path, typer.Argument(help="Folder with one subfolder per class.")],
) -> None:
    """Measure top-1/top-5, per-class precision/recall and the confusion matrix on a labelled folder."""
    not_yet("eval")


@app.command(epilog="Example: edgecnn bench bundles/demo --device cpu --seconds 5")
@user_errors
def bench(model: Annotated[Path, typer.Argument(help="Bundle folder, .onnx or OpenVINO .xml.")]) -> None:
    """Measure latency, throughput, cold start and memory of a model on a device."""
    not_yet("bench")


@app.command(epilog="Example: edgecnn camera bundles/imagenet --source samples/videos/cup.mp4 --headless")
@user_errors
def camera(model: Annotated[Path, typer.Argument(help="Bundle folder, .onnx or OpenVINO .xml.")]) -> None:
    """Recognise what a webcam, video file, stream or image folder shows, live."""
    not_yet("camera")


@app.command(epilog="Example: edgecnn info bundles/demo")
@user_errors
def info(model: Annotated[Path | None, typer.Argument(help="Bundle folder, .onnx or .xml.")] = None) -> None:
    """Show a model's metadata and the backends and devices this machine offers."""
    not_yet("info")


def main() -> None:  # pragma: no cover - console entry for `python -m edgecnn`
    app(prog_name="edgecnn")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
