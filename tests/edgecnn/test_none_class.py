"""The none class end to end: `capture --label none` on an empty scene, a tiny real fine-tune, export, then
the camera and predict say "none" for that scene (never a detection) and still name the real classes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from edgecnn.runtime.core.engine import load
from edgecnn.runtime.core.metadata import ModelMeta, none_class_of
from edgecnn.runtime.live.events import NONE_STATE
from edgecnn.runtime.live.overlay import shown_label
from typer.testing import CliRunner

from edgecnn.cli import app

runner = CliRunner()


def empty_scene(path: Path, frames: int = 40) -> Path:
    """A clip of an empty table: one smooth texture, shifted a pixel or two and with sensor noise."""
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(90, 170, (260, 340, 3), dtype=np.uint8), (0, 0), 6)
    texture[..., 0] = texture[..., 0] // 2 + 40  # a warm, wood-like colour (BGR)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (320, 240))
    for index in range(frames):
        dx, dy = index % 7, (index // 7) % 5
        frame = texture[dy : dy + 240, dx : dx + 320].astype(np.int16) + rng.integers(-6, 7, (240, 320, 3))
        writer.write(np.clip(frame, 0, 255).astype(np.uint8))
    writer.release()
    return path


@pytest.fixture(scope="module")
def none_bundle(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(bundle, the empty scene's clip): fishes and tools from tiny_data plus a none class captured from
    the clip, fine-tuned with the smallest settings the finetune tests use, exported FP32."""
    root = tmp_path_factory.mktemp("none_class")
    data, clip = root / "data", empty_scene(root / "empty.mp4")
    for name in ("fishes", "tools"):
        shutil.copytree(tiny_data / name, data / name)
    captured = runner.invoke(app, ["capture", str(clip), "--out", str(data), "--label", "none",
                                   "--count", "8", "--min-change", "0"])
    assert captured.exit_code == 0, captured.output
    assert len(list((data / "none").glob("*.jpg"))) == 8
    trained = runner.invoke(app, ["finetune", str(data), "--out", str(root / "run"), "--head-epochs", "4",
                                  "--batch-size", "8", "--workers", "0"])
    assert trained.exit_code == 0, trained.output
    exported = runner.invoke(app, ["export", str(root / "run" / "best.pt"), "--out", str(root / "bundle"),
                                    "--format", "onnx"])
    assert exported.exit_code == 0, exported.output
    return root / "bundle", clip


def test_export_names_the_none_class_in_the_metadata(none_bundle: tuple[Path, Path]) -> None:
    bundle, _ = none_bundle
    meta = ModelMeta.read(bundle / "model.onnx")
    assert meta is not None and meta.none_class == "none" and "none" in meta.labels
    with load(bundle) as engine:
        assert engine.none_class == "none"
        assert engine.is_none("none") and not engine.is_none("fishes")


def test_camera_on_the_empty_scene_says_none(none_bundle: tuple[Path, Path], tmp_path: Path) -> None:
    bundle, clip = none_bundle
    jsonl = tmp_path / "frames.jsonl"
    result = runner.invoke(app, ["camera", str(bundle), "--source", str(clip), "--headless", "--jsonl",
                                 str(jsonl), "--max-frames", "20"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(records) == 20
    shown = [record["label"] for record in records]
    assert shown.count(NONE_STATE) >= 18, shown  # the none class, not a detection
    assert not {"fishes", "tools"} & set(shown)
    assert all(record["top"][0]["label"] == "none" for record in records if record["label"] == NONE_STATE)


def test_predict_says_none_for_the_scene_and_names_a_fish(none_bundle: tuple[Path, Path], tmp_path: Path,
                                                           sample_photos: Path) -> None:
    bundle, clip = none_bundle
    capture = cv2.VideoCapture(str(clip))
    ok, frame = capture.read()
    capture.release()
    assert ok
    cv2.imwrite(str(tmp_path / "scene.png"), frame)
    fish = sorted((sample_photos / "fishes").iterdir())[-1]  # not among tiny_data's first 8
    result = runner.invoke(app, ["predict", str(bundle), str(tmp_path / "scene.png"), str(fish), "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    scene, fish_row = rows
    assert scene["none"] and scene["predictions"][0]["label"] == "none"
    assert not fish_row["none"] and fish_row["predictions"][0]["label"] == "fishes"


@pytest.mark.parametrize(("labels", "expected"), [
    (("cup", "none", "box"), "none"), (("Background", "cup"), "Background"), (("cup", "box"), ""),
    (("nonentity", "cup"), ""),
])
def test_the_none_class_is_named_none_or_background(labels: tuple[str, ...], expected: str) -> None:
    assert none_class_of(labels) == expected


def test_a_background_class_is_shown_as_none_below_unknown_and_uncertain() -> None:
    from edgecnn.runtime.core.engine import Prediction

    top = [Prediction(0, "background", 0.9, none=True), Prediction(1, "cup", 0.1)]
    assert shown_label(top, 0.2) == NONE_STATE
    assert shown_label(top, 0.2, unknown=True) == "unknown"
    assert shown_label(top, 0.95) == "uncertain"
    assert shown_label([Prediction(1, "cup", 0.9)], 0.2) == "cup"
