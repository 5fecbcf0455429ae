"""`predict`, `eval`, `bench`, `info` through Typer's CliRunner: output, JSON and exit code 2 on mistakes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from edgecnn.runtime import load
from typer.testing import CliRunner

from edgecnn.cli import app

runner = CliRunner()


def run(*args: str) -> object:
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory: pytest.TempPathFactory, chelsea: np.ndarray, coffee: np.ndarray) -> Path:
    """chelsea and coffee as files in odd formats, plus files that are not images."""
    import cv2

    folder = tmp_path_factory.mktemp("photos")
    cv2.imwrite(str(folder / "cat.jpg"), chelsea[:, :, ::-1])
    cv2.imwrite(str(folder / "cat_gray.png"), cv2.cvtColor(chelsea, cv2.COLOR_RGB2GRAY))
    cv2.imwrite(str(folder / "coffee16.png"), coffee[:, :, ::-1].astype(np.uint16) * 257)
    rgba = cv2.cvtColor(coffee, cv2.COLOR_RGB2BGRA)
    cv2.imwrite(str(folder / "coffee_rgba.png"), rgba)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.png").write_text("not an image")
    (folder / "cut.jpg").write_bytes((folder / "cat.jpg").read_bytes()[:3000])
    return folder


def test_predict_folder_skips_bad_files(imagenet_bundle: Path, photo_dir: Path) -> None:
    result = run("predict", imagenet_bundle, photo_dir, "--json", "--top-k", "3", "--device", "cpu")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    top = {Path(r["file"]).name: r["predictions"][0]["label"] for r in rows}
    assert set(top) == {"cat.jpg", "cat_gray.png", "coffee16.png", "coffee_rgba.png"}
    assert top["cat.jpg"] in {"tabby", "tiger cat", "Egyptian cat"}
    assert top["coffee16.png"] in {"cup", "espresso", "coffee mug"}
    assert all(len(r["predictions"]) == 3 for r in rows)


def test_predict_table(imagenet_bundle: Path, photo_dir: Path) -> None:
    result = run("predict", imagenet_bundle, photo_dir / "cat.jpg", "--backend", "onnxruntime",
                 "--top-k", "2")
    assert result.exit_code == 0, result.output
    assert "cat.jpg" in result.stdout and "onnxruntime" in result.output
    assert result.output.count("model.int8.onnx") + result.output.count("model.onnx (") == 1  # said once


@pytest.mark.parametrize("args, message", [
    (["{photos}/empty.jpg"], "empty"),
    (["{photos}/notes.png"], "not a readable image"),
    (["{photos}/cut.jpg"], "truncated"),
    (["{photos}/missing.jpg"], "does not exist"),
    (["{photos}", "--top-k", "1001"], "out of range"),
    (["{photos}", "--device", "npu"], "available: "),
    (["{photos}", "--precision", "int4"], "unknown precision"),
])
def test_predict_mistakes_exit_2(imagenet_bundle: Path, photo_dir: Path, args: list[str],
                                 message: str) -> None:
    result = run("predict", imagenet_bundle, *[a.format(photos=photo_dir) for a in args])
    assert result.exit_code == 2, result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and message in error_lines[0], result.output
    assert "Traceback" not in result.output


def test_bad_model_exits_2(tmp_path: Path, photo_dir: Path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_text("nope")
    result = run("predict", bad, photo_dir / "cat.jpg")
    assert result.exit_code == 2 and "not a loadable ONNX model" in result.output


def test_eval_matches_a_hand_count(tiny_bundle: Path, tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    result = run("eval", tiny_bundle, tiny_data, "--out", out, "--json", "--split", "all")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["split"] == "all"
    engine = load(tiny_bundle)
    from edgecnn.runtime.core.images import iter_image_files, read_image

    truths, predicted = [], []
    for index, label in enumerate(engine.labels):
        for file in iter_image_files(tiny_data / label):
            truths.append(index)
            predicted.append(engine.classify(read_image(file), top_k=1)[0][0].index)
    truths_a, predicted_a = np.array(truths), np.array(predicted)
    assert report["images"] == len(truths)
    assert report["top1"] == pytest.approx(float(np.mean(truths_a == predicted_a)))
    for row, label in enumerate(report["classes"]):
        index = engine.labels.index(label)
        hits = int(np.sum((truths_a == index) & (predicted_a == index)))
        assert report["confusion"][row][row] == hits
        assert report["support"][row] == int(np.sum(truths_a == index))
        assert report["recall"][row] == pytest.approx(hits / np.sum(truths_a == index))
        called = int(np.sum(predicted_a == index))
        assert report["precision"][row] == pytest.approx(hits / called if called else 0.0)
    assert (out / "confusion_matrix.png").stat().st_size > 1000
    missed = (out / "misclassified.txt").read_text().splitlines()
    assert len(missed) == int(np.sum(truths_a != predicted_a)) == len(report["misclassified"])


def eval_json(*args: object) -> dict:
    result = run("eval", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_eval_on_the_runs_data_scores_its_validation_split(tiny_bundle: Path, tiny_data: Path,
                                                           tmp_path: Path) -> None:
    """The bundle records the run's split: by default only the images the model never trained on count."""
    split = json.loads((tiny_bundle / "report.json").read_text())["split"]
    assert Path(split["data_root"]) == tiny_data.resolve() and split["val"] and split["train"]
    scored = {}
    for name in ("auto", "val", "train", "all"):
        report = eval_json(tiny_bundle, tiny_data, "--out", tmp_path / name, "--split", name)
        scored[name] = report
        assert report["split"] == ("val" if name == "auto" else name) and report["split_missing"] == 0
    assert scored["auto"]["images"] == scored["val"]["images"] == len(split["val"])
    assert scored["train"]["images"] == len(split["train"])
    assert scored["all"]["images"] == len(split["val"]) + len(split["train"])  # nothing was unreadable
    val_files = {str(Path(rel)) for rel in split["val"]}
    missed = {m["file"] for m in scored["val"]["misclassified"]}
    assert missed <= val_files  # the files scored are the run's validation images
    table = run("eval", tiny_bundle, tiny_data, "--out", tmp_path / "table")
    assert f"{len(split['val'])} images of the run's validation split" in " ".join(table.stdout.split())


def test_eval_on_a_copy_of_the_runs_data_still_scores_its_validation_split(
        tiny_bundle: Path, tiny_data: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_data, copy)
    split = json.loads((tiny_bundle / "report.json").read_text())["split"]
    assert eval_json(tiny_bundle, copy, "--out", tmp_path / "eval")["images"] == len(split["val"])
    (copy / split["val"][0]).unlink()  # one validation image gone: the others still count, it is said
    report = eval_json(tiny_bundle, copy, "--out", tmp_path / "eval")
    assert report["split"] == "val" and report["images"] == len(split["val"]) - 1
    assert report["split_missing"] == 1
    table = run("eval", tiny_bundle, copy, "--out", tmp_path / "eval")
    assert "1 of the split not in DATA" in " ".join(table.stdout.split())


def test_eval_on_a_test_set_of_its_own_scores_all_of_it(tiny_bundle: Path, tiny_data: Path,
                                                        sample_photos: Path, tmp_path: Path) -> None:
    """Photos the run never saw (sample photos past the 8 per class tiny_data took) are scored whole."""
    test_set = tmp_path / "test"
    for class_dir in sorted(p for p in tiny_data.iterdir() if p.is_dir()):
        (test_set / class_dir.name).mkdir(parents=True)
        for image in sorted((sample_photos / class_dir.name).iterdir())[8:10]:
            shutil.copy(image, test_set / class_dir.name / image.name)
    report = eval_json(tiny_bundle, test_set, "--out", tmp_path / "eval")
    assert report["split"] == "all" and report["images"] == 2 * len(report["classes"])
    result = run("eval", tiny_bundle, test_set, "--out", tmp_path / "eval", "--split", "val")
    assert result.exit_code == 2 and "holds none of the run's" in result.output
    assert "--split all" in result.output and "Traceback" not in result.output


def test_eval_refuses_a_recorded_split_that_leads_outside_data(tiny_bundle: Path, tiny_data: Path,
                                                                tmp_path: Path) -> None:
    """A tampered report.json cannot make eval read files outside DATA."""
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    report = json.loads((bundle / "report.json").read_text())
    report["split"]["val"] = ["../../../etc/passwd"]
    (bundle / "report.json").write_text(json.dumps(report))
    result = run("eval", bundle, tiny_data, "--split", "val", "--out", tmp_path / "eval")
    assert result.exit_code == 2 and "'../../../etc/passwd', not a path inside a data folder" in result.output


def test_eval_split_needs_a_recorded_split(tiny_bundle: Path, tiny_data: Path, tmp_path: Path) -> None:
    """A bundle exported before the split was recorded: auto scores all of DATA, --split val is refused in
    one line; --split nonsense too."""
    bundle = tmp_path / "older"
    shutil.copytree(tiny_bundle, bundle)
    report = json.loads((bundle / "report.json").read_text())
    del report["split"]
    (bundle / "report.json").write_text(json.dumps(report))
    assert eval_json(bundle, tiny_data, "--out", tmp_path / "eval")["split"] == "all"
    result = run("eval", bundle, tiny_data, "--split", "val", "--out", tmp_path / "eval")
    assert result.exit_code == 2 and "records no validation split" in result.output, result.output
    result = run("eval", bundle, tiny_data, "--split", "test", "--out", tmp_path / "eval")
    assert result.exit_code == 2 and "choose auto, val, train, all" in result.output


def test_eval_val_subfolder_and_unknown_class(tiny_bundle: Path, tiny_data: Path, tmp_path: Path) -> None:
    shutil.copytree(tiny_data, tmp_path / "data" / "val")
    result = run("eval", tiny_bundle, tmp_path / "data", "--out", tmp_path / "eval")
    assert result.exit_code == 0, result.output
    assert "top-1" in result.stdout
    first_class = sorted(p for p in (tmp_path / "data" / "val").iterdir())[0]
    (first_class / "broken.jpg").write_bytes(b"")
    result = run("eval", tiny_bundle, tmp_path / "data", "--out", tmp_path / "eval", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(report["skipped"]) == 1 and "broken.jpg" in report["skipped"][0]
    (tmp_path / "data" / "val" / "zebras").mkdir()
    result = run("eval", tiny_bundle, tmp_path / "data", "--out", tmp_path / "eval")
    assert result.exit_code == 2 and "zebras" in result.output


def test_bench_json_has_the_fields(imagenet_bundle: Path) -> None:
    result = run("bench", imagenet_bundle, "--seconds", "1", "--threads", "2", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"median", "p90", "p99", "min", "max"} <= set(report["latency_ms"])
    assert report["throughput_fps"] > 0 and report["first_inference_ms"] > 0
    assert report["load_seconds"] >= report["compile_seconds"] > 0
    cold = report["cold_start"]
    assert cold["seconds"] > 0 and cold["peak_rss_mb"] > 10 and cold["torch_imported"] is False
    assert report["latency_ms"]["min"] <= report["latency_ms"]["median"] <= report["latency_ms"]["max"]


def test_bench_against_benchmark_app(imagenet_bundle: Path) -> None:
    result = run("bench", imagenet_bundle, "--backend", "openvino", "--seconds", "2", "--threads", "2",
                 "--no-cold-start", "--baseline", "benchmark_app", "--json")
    assert result.exit_code == 0, result.output
    baseline = json.loads(result.stdout.strip().splitlines()[-1])["baseline"]
    assert baseline["name"] == "benchmark_app" and baseline["throughput_fps"] > 0
    assert baseline["throughput_ratio"] > 0 and "-nthreads 2" in baseline["command"]


def test_bench_against_torch_eager(tiny_bundle: Path) -> None:
    """The training side's PyTorch baseline, in its own process: same architecture and classes."""
    result = run("bench", tiny_bundle, "--seconds", "1", "--threads", "2", "--no-cold-start",
                 "--baseline", "torch", "--json")
    assert result.exit_code == 0, result.output
    baseline = json.loads(result.stdout.strip().splitlines()[-1])["baseline"]
    assert baseline["name"] == "torch" and baseline["latency_ms"]["runs"] >= 10
    assert baseline["latency_ratio"] > 0
    assert baseline["command"] == "PyTorch eager FP32 efficientnet_lite0, 2 threads"


def test_bench_baseline_mistakes(imagenet_bundle: Path) -> None:
    result = run("bench", imagenet_bundle, "--backend", "onnxruntime", "--seconds", "1", "--no-cold-start",
                 "--baseline", "benchmark_app")
    assert result.exit_code == 2 and "needs an OpenVINO model" in result.output
    result = run("bench", imagenet_bundle, "--baseline", "tensorflow")
    assert result.exit_code == 2 and "unknown baseline" in result.output


def test_info(imagenet_bundle: Path) -> None:
    result = run("info", imagenet_bundle, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    ort = data["machine"]["backends"]["onnxruntime"]
    assert "CPUExecutionProvider" in ort["providers_usable"]
    # every listed provider is either usable or said to be unusable, with the reason
    said = ort["providers_usable"] + list(ort["providers_unusable"])
    assert sorted(ort["providers_listed"]) == sorted(said)
    if "CUDAExecutionProvider" in ort["providers_unusable"]:  # onnxruntime-gpu on a machine without CUDA
        assert "CUDA" in run("info").stdout.split("cannot run here")[1]
    assert "CPU" in data["machine"]["backends"]["openvino"]["devices"]
    models = data["model"]["models"]
    assert models["openvino/model.int8.xml"]["metadata"]["precision"] == "int8"
    assert len(models["model.onnx"]["metadata"]["labels"]) == 1000
    table = run("info", imagenet_bundle)
    assert table.exit_code == 0 and "efficientnet_lite0" in table.stdout
    assert run("info", imagenet_bundle / "nothing.onnx").exit_code == 2


def test_predict_foreign_model_needs_labels_and_normalisation(tmp_path: Path, photo_dir: Path) -> None:
    from tests.runtime.conftest import mean_colour_onnx

    model = mean_colour_onnx(tmp_path / "colour.onnx", np.eye(3))
    labels = tmp_path / "colours.txt"
    labels.write_text("red\ngreen\nblue\n")
    result = run("predict", model, photo_dir / "cat.jpg")
    assert result.exit_code == 2 and "no edgecnn metadata; pass --labels FILE" in result.output
    result = run("predict", model, photo_dir / "cat.jpg", "--labels", labels, "--mean", "0.5,0.5,0.5",
                 "--std", "0.5,0.5,0.5", "--top-k", "3", "--json")
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout.strip().splitlines()[-1])
    assert sorted(p["label"] for p in row["predictions"]) == ["blue", "green", "red"]
    result = run("predict", model, photo_dir / "cat.jpg", "--labels", labels, "--mean", "half",
                 "--std", "1,1,1")
    assert result.exit_code == 2 and "--mean takes three numbers" in result.output


def test_bench_nstreams_and_nireq_like_benchmark_app(imagenet_bundle: Path) -> None:
    result = run("bench", imagenet_bundle, "--backend", "openvino", "--device", "cpu", "--seconds", "0.5",
                 "--nstreams", "2", "--nireq", "3", "--no-cold-start", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["streams"] == 2 and report["requests"] == 3 and report["throughput_fps"] > 0
    assert run("bench", imagenet_bundle, "--nireq", "0").exit_code == 2  # at least 1
