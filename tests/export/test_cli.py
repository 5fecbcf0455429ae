"""`edgecnn export` through the CLI: the drop gate, and every bad input gives exit 2 and no bundle."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgecnn.cli import app

runner = CliRunner()


def error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("error:")
    return lines[0]


class RunsCode:
    """Pickles into a call of os.system: loading it with pickle would run the command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.system, (f"touch {self.marker}",)


def bad_checkpoint(kind: str, folder: Path, tiny_run: Path | None) -> Path:
    import torch

    path = folder / f"{kind}.pt"
    if kind == "truncated":
        data = (tiny_run / "best.pt").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "foreign":
        torch.save({"weight": torch.zeros(3)}, path)
    elif kind == "pickled-code":
        torch.save({"format": "edgecnn-checkpoint", "payload": RunsCode(folder / "pwned")}, path)
    return path


@pytest.mark.parametrize("kind, message", [
    ("missing", "does not exist"),
    ("truncated", "truncated or not a checkpoint"),
    ("foreign", "not an edgecnn checkpoint"),
    ("pickled-code", "pickled code, refused"),
])
def test_bad_checkpoint_exits_2_without_bundle(tmp_path: Path, tiny_run: Path, kind: str,
                                               message: str) -> None:
    checkpoint = bad_checkpoint(kind, tmp_path, tiny_run)
    out = tmp_path / "bundle"
    result = runner.invoke(app, ["export", str(checkpoint), "--out", str(out)])
    assert result.exit_code == 2
    assert message in error_line(result.stderr)
    assert not out.exists() and not (tmp_path / "pwned").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def make_no_image_folder(folder: Path) -> Path:
    folder.mkdir()
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is no jpeg")
    return folder


@pytest.mark.parametrize("args, message", [
    (["--opset", "7"], "unsupported opset 7; choose one from 13 to 20"),
    (["--format", "tflite"], "choose from onnx, openvino, all"),
    (["--calibration-method", "magic"], "choose from auto, minmax, entropy, percentile"),
    (["--batch", "many"], "'dynamic' or a positive number"),
    (["--int8", "--calibration", "{no_images}"], "has no readable images"),
    (["--imgsz", "192"], "was fine-tuned at 224x224 and exports at that size"),
])
def test_bad_options_exit_2_without_bundle(tmp_path: Path, tiny_run: Path, args: list[str],
                                           message: str) -> None:
    no_images = make_no_image_folder(tmp_path / "empty")
    args = [a.replace("{no_images}", str(no_images)) for a in args]
    out = tmp_path / "bundle"
    result = runner.invoke(app, ["export", str(tiny_run / "best.pt"), "--out", str(out), *args])
    assert result.exit_code == 2
    assert message in error_line(result.stderr)
    assert not out.exists()


def test_pretrained_export_at_another_input_size(tmp_path: Path, sample_photos: Path) -> None:
    """`--imgsz` (Ultralytics' name) sizes the ImageNet model's input, checked against its stride; the
    bundle's models take that size and still agree with PyTorch at it."""
    import onnx
    from edgecnn.runtime.core.metadata import ModelMeta

    bad = runner.invoke(app, ["export", "--pretrained", "--out", str(tmp_path / "bad"), "--imgsz", "200"])
    assert bad.exit_code == 2 and "multiple of its stride 32" in error_line(bad.stderr)
    out = tmp_path / "small"
    result = runner.invoke(app, ["export", "--pretrained", "--out", str(out), "--imgsz", "192",
                                 "--format", "onnx", "--calibration", str(sample_photos / "fishes")])
    assert result.exit_code == 0, result.output
    dims = onnx.load(str(out / "model.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims[1:]] == [192, 192, 3]
    assert ModelMeta.read(out / "model.onnx").preprocess.input_size == (192, 192)


def test_existing_out_is_refused_without_force(tmp_path: Path, tiny_run: Path) -> None:
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["export", str(tiny_run / "best.pt"), "--out", str(out)])
    assert result.exit_code == 2
    assert "--force" in error_line(result.stderr)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_failed_gate_exits_1_and_keeps_the_best_int8_marked(tmp_path: Path, sample_photos: Path) -> None:
    """INT8 calibrated on one black picture (the first of the folder, --calibration-size 1) saturates on
    real photos: confident answers change, both recipes and the fallback fail, and export says so with
    exit 1 (not 2: the input was valid), the best INT8 kept and marked."""
    import shutil

    import cv2
    import numpy as np

    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "0-black.png"), np.zeros((240, 320, 3), np.uint8))  # sorts first
    for image in sorted(sample_photos.rglob("*.webp"))[::15]:
        shutil.copy(image, photos / image.name)
    out = tmp_path / "bundle"
    out.mkdir()  # and --force replaces it
    result = runner.invoke(app, ["export", "--pretrained", "--out", str(out), "--format", "onnx", "--int8",
                                 "--calibration", str(photos), "--calibration-size", "1", "--force"])
    assert result.exit_code == 1, result.output
    assert "onnx int8 changed" in result.stderr and "confident in" in result.stderr
    report = json.loads((out / "report.json").read_text())
    int8 = next(m for m in report["models"] if m["name"] == "onnx int8")
    assert int8["status"] == "failed" and not report["passed"] and int8["gate"]["confident_flips"] > 0
    tries = report["calibration"]["recipes"]["onnxruntime"]
    assert [t["recipe"] for t in tries][:2] == ["minmax, first conv float",
                                                "percentile 99.99, first conv float"]
    assert any("most harmful nodes float" in t["recipe"] for t in tries)  # the fallback ran, and failed
    assert sum(t["kept"] for t in tries) == 1 and all(not t["passed"] for t in tries)
    assert (out / "model.int8.onnx").is_file() and not (out / "openvino").exists()
    assert "FAILED" in (out / "report.md").read_text()


def test_export_numbers_bundles_after_the_run(tmp_path: Path, tiny_run: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """No --out: bundles/<run name>, then bundles/<run name>2 (the tour never collides with make demo)."""
    monkeypatch.chdir(tmp_path)
    for expected in ("tiny", "tiny2"):
        result = runner.invoke(app, ["export", str(tiny_run / "best.pt"), "--format", "onnx"])
        assert result.exit_code == 0, result.output
        assert (tmp_path / "bundles" / expected / "model.onnx").is_file()
        assert f"bundle written to bundles/{expected}" in result.output


def test_export_without_torch_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A runtime-only install: one line naming the [train] extra, not a ModuleNotFoundError traceback."""
    monkeypatch.setitem(__import__("sys").modules, "torch", None)  # `import torch` now fails
    result = runner.invoke(app, ["export", "--pretrained", "--out", str(tmp_path / "b")])
    assert result.exit_code == 2
    assert "pip install '.[train]'" in error_line(result.stderr) and "missing: torch" in result.stderr


@pytest.mark.slow
def test_int8_recipe_that_cannot_run_counts_as_a_failed_try(tmp_path: Path, sample_photos: Path) -> None:
    """Calibrated on one flat grey picture, ONNX Runtime's INT8 pooling refuses its Percentile scales at run
    time (QLinearGlobalAveragePool 'out of computation range'): that recipe is recorded as failing to run,
    the search goes on, and the export ends in exit 1 with a runnable best INT8 (it used to crash)."""
    import shutil

    import cv2
    import numpy as np

    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "0-grey.png"), np.full((240, 320, 3), 128, np.uint8))  # sorts first
    for image in sorted(sample_photos.rglob("*.webp"))[::15]:
        shutil.copy(image, photos / image.name)
    out = tmp_path / "bundle"
    result = runner.invoke(app, ["export", "--pretrained", "--out", str(out), "--format", "onnx", "--int8",
                                 "--calibration", str(photos), "--calibration-size", "1"])
    assert result.exit_code == 1, result.output
    tries = json.loads((out / "report.json").read_text())["calibration"]["recipes"]["onnxruntime"]
    cannot_run = [t for t in tries if "fails to run" in t["problem"]]
    assert cannot_run and not any(t["kept"] for t in cannot_run)
    assert "out of computation range" in cannot_run[0]["problem"]
