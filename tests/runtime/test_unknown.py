"""The unknown detector at run time: classify, predict (table and --json), eval --unknown with its PNG,
and models without a detector working as before."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from edgecnn.runtime import load
from typer.testing import CliRunner

from edgecnn.cli import app
from tests.runtime.conftest import mean_colour_onnx

runner = CliRunner()


@pytest.fixture(scope="module")
def others(tmp_path_factory: pytest.TempPathFactory, chelsea: np.ndarray, coffee: np.ndarray) -> Path:
    """Photos of none of the sample classes: a cat, a coffee cup, an astronaut."""
    import cv2
    from skimage import data

    folder = tmp_path_factory.mktemp("others")
    for name, image in (("cat", chelsea), ("coffee", coffee), ("astronaut", data.astronaut())):
        cv2.imwrite(str(folder / f"{name}.png"), image[:, :, ::-1])
    return folder


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_classify_calls_a_cat_unknown(tiny_bundle: Path, chelsea: np.ndarray, sample_photos: Path,
                                      backend: str) -> None:
    from edgecnn.runtime.core.images import read_image

    with load(tiny_bundle, backend=backend, precision="fp32") as engine:
        known = read_image(sorted((sample_photos / "fishes").iterdir())[0])
        cat, fish = engine.classify([chelsea, known], top_k=2)
    assert cat.unknown and cat.unknown_score > engine.unknown_threshold
    assert fish.unknown_score < cat.unknown_score
    assert len(cat) == 2 and cat[0].label in engine.labels  # still the top-k, as a sequence


def test_predict_json_and_table_carry_the_verdict(tiny_bundle: Path, others: Path) -> None:
    result = runner.invoke(app, ["predict", str(tiny_bundle), str(others), "--json", "--precision", "fp32"])
    assert result.exit_code == 0, result.output
    rows = {Path(r["file"]).stem: r for r in map(json.loads, result.stdout.splitlines())}
    assert rows["cat"]["unknown"] is True and isinstance(rows["cat"]["unknown_score"], float)
    table = runner.invoke(app, ["predict", str(tiny_bundle), str(others / "cat.png"), "--precision", "fp32"])
    assert table.exit_code == 0 and "unknown" in table.stdout and "UNKNOWN" in table.stdout


def test_eval_unknown_writes_figures_and_a_readable_plot(tiny_bundle: Path, sample_photos: Path, others: Path,
                                                        tmp_path: Path) -> None:
    import cv2

    out = tmp_path / "eval"
    result = runner.invoke(app, ["eval", str(tiny_bundle), str(sample_photos), "--unknown", str(others),
                                 "--out", str(out), "--precision", "fp32", "--backend", "onnxruntime"])
    assert result.exit_code == 0, result.output
    assert "AUROC" in result.stdout and "accepted" in result.stdout
    unknown = json.loads((out / "eval.json").read_text())["unknown"]
    assert unknown["unknown_images"] == 3 and 0.5 < unknown["auroc"] <= 1.0
    assert 0.0 <= unknown["unknown_accepted"] < 0.5 and unknown["known_accepted"] > 0.5
    picture = cv2.imread(str(out / "unknown.png"))
    assert picture is not None and picture.shape[1] > 2 * picture.shape[0]  # two panels side by side
    # matplotlib's tab:blue and tab:orange bars at alpha 0.6 on white, in BGR: both histograms are drawn
    for colour in (0.6 * np.array([180, 119, 31]) + 102, 0.6 * np.array([14, 127, 255]) + 102):
        assert (np.abs(picture.astype(int) - colour).sum(axis=2) < 90).sum() > 50


def test_foreign_model_has_no_verdict_and_eval_unknown_refuses(tmp_path: Path) -> None:
    labels = tmp_path / "colours.txt"
    labels.write_text("red\ngreen\nblue\n")
    model = mean_colour_onnx(tmp_path / "colour.onnx", np.eye(3))
    with load(model, labels=labels, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)) as engine:
        (result,) = engine.classify(np.full((40, 60, 3), (250, 10, 10), np.uint8), top_k=1)
        assert (result[0].label, result.unknown_score, result.unknown) == ("red", None, False)
        assert engine.unknown_threshold is None
    data = tmp_path / "data" / "red"
    data.mkdir(parents=True)
    import cv2

    cv2.imwrite(str(data / "red.png"), np.full((40, 60, 3), (10, 10, 250), np.uint8))
    result = runner.invoke(app, ["eval", str(model), str(tmp_path / "data"), "--labels", str(labels),
                                 "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25", "--unknown", str(data),
                                 "--out", str(tmp_path / "eval")])
    assert result.exit_code == 2 and "no unknown detector" in result.output


def test_overlay_draws_the_unknown_state_distinctly() -> None:
    from edgecnn.runtime.core.engine import Prediction
    from edgecnn.runtime.live.overlay import draw_overlay

    frame = np.full((480, 640, 3), 200, np.uint8)
    top = [Prediction(3, "tools", 0.55), Prediction(2, "renewable_energy", 0.2)]
    stats = {"fps": 20.0, "inference_ms": 30.0, "latency_ms": 40.0}
    known, unknown = draw_overlay(frame, top, 0.2, stats), draw_overlay(frame, top, 0.2, stats, unknown=True)
    orange = np.array([0, 140, 255])
    assert (np.abs(unknown[470:, 300:340].astype(int) - orange).sum(axis=2) < 30).any()  # the border
    assert not (np.abs(known.astype(int) - orange).sum(axis=2) < 30).any()
    assert (np.abs(unknown[:40, :200].astype(int) - orange).sum(axis=2) < 60).sum() > 20  # the title
    green = np.array([80, 200, 80])
    assert (known == green).all(axis=2).sum() > 100 and not (unknown == green).all(axis=2).any()  # bars


def test_camera_jsonl_carries_the_score_smoothed_like_the_probabilities(tiny_bundle: Path,
                                                                      tmp_path: Path) -> None:
    from edgecnn.runtime.live.camera import CameraConfig, run_camera

    from tests.conftest import SAMPLE_VIDEOS

    runs = {}
    with load(tiny_bundle, precision="fp32", backend="onnxruntime") as engine:
        for smooth in (0.0, 0.6):
            jsonl = tmp_path / f"cup-{smooth}.jsonl"
            run_camera(engine, CameraConfig(source=SAMPLE_VIDEOS / "cup.mp4", headless=True, max_frames=6,
                                            jsonl=jsonl, smooth=smooth), say=lambda _: None)
            runs[smooth] = [json.loads(line) for line in jsonl.read_text().splitlines()]
        threshold = engine.unknown_threshold
    for record in runs[0.0] + runs[0.6]:
        assert record["unknown"] == (record["unknown_score"] > threshold)
        assert (record["label"] == "unknown") == record["unknown"]
    raw = np.array([r["unknown_score"] for r in runs[0.0]])
    expected = [raw[0]]
    for value in raw[1:]:
        expected.append(0.6 * expected[-1] + 0.4 * value)
    np.testing.assert_allclose([r["unknown_score"] for r in runs[0.6]], expected, atol=1e-4)
