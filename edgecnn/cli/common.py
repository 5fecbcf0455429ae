"""What several commands share: the model options (one help text each), run folders, loading a model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from edgecnn.cli.render import warn
from edgecnn.runtime.core.backends import registry
from edgecnn.runtime.core.options import span


def device_word(value: str) -> str:
    """One device vocabulary: PyTorch's "cuda" is taken as gpu, saying so (docs/devices.md)."""
    from edgecnn.runtime.core.devices import DEVICE_ALIASES

    word = DEVICE_ALIASES.get(value.strip().lower())
    if word is not None:
        warn(f"note: --device {value} is called {word} in edgecnn (every command); using {word}")
        return word
    return value


ModelPath = Annotated[Path, typer.Argument(
    help="Bundle folder, .onnx, OpenVINO .xml, or triton://HOST:PORT/MODEL (served by `edgecnn serve`).")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, gpu or npu; auto picks the fastest present "
                                        "(docs/devices.md).", callback=device_word)]
TrainDeviceOpt = Annotated[str, typer.Option(help="Where to train: auto, cpu or gpu (CUDA); cuda is taken as "
                                             "gpu (docs/devices.md).", callback=device_word)]
BackendOpt = Annotated[str, typer.Option(
    help=f"{', '.join(('auto', *registry.NAMES[:-1]))} or {registry.NAMES[-1]}.")]  # from the registry
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


def ranged(help: str, option: str) -> str:
    """An option's help with its range from the options table (its one owner: no Typer min/max)."""
    return f"{help} [{span(option)}]"


def run_folder(root: Path, name: str, exist_ok: bool, numbered: bool = True) -> Path:
    """runs/NAME (or bundles/NAME), numbered like Ultralytics' run folders unless --exist-ok.

    torchrun starts one CLI per rank: they must agree on one folder, so no numbering there.
    """
    from edgecnn.runtime.core.outputs import next_free_folder

    return next_free_folder(root, name, exist_ok or not numbered)


def load_engine(model: Path, device: str, backend: str, precision: str, labels: Path | None = None,
                mean: str | None = None, std: str | None = None, threads: int | None = None,
                quiet: bool = False, streams: int | None = None, cache_dir: str | None = None,
                requests: int | None = None, selftest: bool = False) -> Any:
    """The runtime's engine for `model`, and (unless `quiet`) one line on stderr saying what was picked;
    `selftest` runs the bundle's references first (runtime/core/selftest.py) and refuses a drifted model."""
    from edgecnn.runtime import load
    from edgecnn.runtime.core.selection import parse_triplet

    engine = load(model, device=device, precision=precision, backend=backend, labels=labels, threads=threads,
                  mean=parse_triplet(mean, "--mean"), std=parse_triplet(std, "--std"), streams=streams,
                  cache_dir=cache_dir, requests=requests)
    if not quiet:
        warn(f"{engine.describe()} ({engine.reason})")  # one line, also piped
    if selftest:
        from edgecnn.runtime.core.selftest import run_selftest

        try:
            run_selftest(engine, say=warn)
        except BaseException:
            engine.close()
            raise
    return engine
