"""The options table is the one owner of each range: the CLI, the camera's config check and finetune's
config refuse an out-of-range value with the same message, the table's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from edgecnn.runtime import load
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.options import RANGES, check_range, span
from edgecnn.runtime.live.camera import CameraConfig, run_camera
from edgecnn.runtime.live.video import VideoOptions
from typer.testing import CliRunner

from edgecnn.cli import app
from tests.runtime.conftest import mean_colour_onnx

CUP = Path(__file__).resolve().parents[2] / "samples" / "videos" / "cup.mp4"


def cli_error(*args: str) -> str:
    """The one `error:` line a command ends with (exit 2)."""
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 2, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("error:")]
    return line.removeprefix("error: ")


def library_error(check: object) -> str:
    with pytest.raises(EdgecnnError) as raised:
        check()  # type: ignore[operator]
    return str(raised.value)


@pytest.mark.parametrize("stride", [0, 1_000_001])
def test_vid_stride_the_cli_and_the_camera_say_the_same(tmp_path: Path, stride: int) -> None:
    labels = tmp_path / "colours.txt"
    labels.write_text("red\ngreen\nblue\n")
    model = mean_colour_onnx(tmp_path / "colour.onnx", np.eye(3))
    with load(model, labels=labels, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)) as engine:
        config = CameraConfig(sources=(str(CUP),), top_k=1, headless=True,
                              video=VideoOptions(vid_stride=stride))
        camera = library_error(lambda: run_camera(engine, config, say=lambda _: None))
    cli = cli_error("camera", str(model), "--source", str(CUP), "--headless", "--vid-stride", str(stride))
    assert camera == cli == f"--vid-stride {stride} is out of range; give 1 (every frame) to 1000000"


@pytest.mark.parametrize(("option", "value"), [("epochs", -1), ("epochs", 10_001), ("head_epochs", -1),
                                               ("batch_size", 0), ("patience", 0), ("workers", -1)])
def test_finetune_the_cli_and_its_config_say_the_same(tmp_path: Path, option: str, value: int) -> None:
    pytest.importorskip("torch")
    from edgecnn.finetune import FinetuneConfig

    config = FinetuneConfig(data=tmp_path, out=tmp_path / "run", **{option: value})
    flag = "--" + option.replace("_", "-")
    cli = cli_error("finetune", str(tmp_path), "--out", str(tmp_path / "run"), flag, str(value))
    assert library_error(config.check) == cli == f"{flag} {value} is out of range; give {span(option)}"


@pytest.mark.parametrize(("option", "value"), [("batch", 0), ("seconds", 0.0), ("batch", 5000)])
def test_bench_the_cli_and_its_config_say_the_same(tmp_path: Path, option: str, value: float) -> None:
    from edgecnn.runtime.measure.bench import BenchConfig, bench

    config = BenchConfig(model=tmp_path / "model.onnx", **{option: value})
    cli = cli_error("bench", str(tmp_path / "model.onnx"), f"--{option}", str(value))
    assert library_error(lambda: bench(config)) == cli == f"--{option} {value:g} is out of range; give " \
        f"{span(option)}"


def test_export_the_cli_and_its_config_say_the_same(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from edgecnn.export.bundle import ExportConfig, check_config

    config = ExportConfig(pretrained=True, out=tmp_path / "bundle", calibration_size=0)
    cli = cli_error("export", "--pretrained", "--out", str(tmp_path / "bundle"), "--calibration-size", "0")
    assert library_error(lambda: check_config(config)) == cli == \
        "--calibration-size 0 is out of range; give 1 to 100000"


def test_each_range_is_said_from_the_table() -> None:
    assert span("epochs") == "0 to 10000" and RANGES["epochs"] == (0, 10_000)
    check_range("vid_stride", 1_000_000)  # both ends are in range
    check_range("vid_stride", 1)
    check_range("vid_stride", "not a number")  # not the table's business
    with pytest.raises(EdgecnnError, match=r"--dist-timeout 0\.5 is out of range; give 1 to 86400"):
        check_range("dist_timeout", 0.5)


def test_help_shows_the_tables_range() -> None:
    import typer

    camera = typer.main.get_command(app).commands["camera"]  # type: ignore[attr-defined]
    (stride,) = [param for param in camera.params if param.name == "vid_stride"]
    assert stride.help.endswith("[1 (every frame) to 1000000]")
    assert (stride.min, stride.max) == (None, None)  # no Typer range: the table is the only owner
