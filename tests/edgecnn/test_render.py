"""The CLI's tables (edgecnn/cli/render.py) at 80 columns and piped (Rich's width then): no line wider,
no label, figure or `openvino fp32` split over two rows, one source's summary not printed twice."""

from __future__ import annotations

import io

import pytest
from edgecnn.runtime.core.engine import Prediction
from edgecnn.runtime.live.camera_report import CameraSummary, SourceSummary
from edgecnn.runtime.measure.bench import BenchReport
from edgecnn.runtime.measure.evaluate import EvalReport
from edgecnn.runtime.measure.predict import FilePrediction
from rich.console import Console

from edgecnn.cli.render import bench_table, eval_table, info_table, predictions_table, summary_table


def render(table: object, width: int | None = 80) -> list[str]:
    """What a terminal of `width` columns shows; None: piped (a file, not a terminal)."""
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(table)
    return out.getvalue().splitlines()


def assert_whole(lines: list[str], *cells: str) -> None:
    """Each cell's text on one line, and no line wider than the terminal."""
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    for cell in cells:
        assert any(cell in line for line in lines), (cell, "\n".join(lines))


def labelled(*pairs: tuple[str, float]) -> tuple[Prediction, ...]:
    return tuple(Prediction(i, label, probability) for i, (label, probability) in enumerate(pairs))


ROWS = [
    FilePrediction("samples/photos/renewable_energy/solarPanelsOnARoof.webp",
                   labelled(("solar dish", 0.41), ("Egyptian cat", 0.2), ("tiger cat", 0.1)),
                   0.421, False),
    FilePrediction("samples/photos/fishes/fish1.webp",
                   labelled(("tiger shark", 0.31), ("coffee mug", 0.2), ("espresso maker", 0.1)), 0.934,
                   True),
]


@pytest.mark.parametrize("width", [80, None])
def test_predictions_keep_labels_and_figures_whole(width: int | None) -> None:
    lines = render(predictions_table(ROWS), width)
    assert_whole(lines, "solar dish", "tiger shark", "0.410", "UNKNOWN", "0.934", "Egyptian cat 0.20,",
                 "coffee mug 0.20,", "espresso maker 0.10", "fish1.webp", "renewable_energy/")


def test_a_long_imagenet_label_stays_whole_at_80() -> None:
    rows = [FilePrediction("samples/photos/tools/hammer1.webp",
                           labelled(("Chesapeake Bay retriever", 0.5), ("tiger cat", 0.3), ("cup", 0.1)),
                           0.5, True)]
    assert_whole(render(predictions_table(rows)), "Chesapeake Bay retriever", "tiger cat 0.30,",
                 "hammer1.webp")


def test_a_phrase_wider_than_the_terminal_wraps_losing_nothing() -> None:
    rows = [FilePrediction("a.jpg", labelled(("Chesapeake Bay retriever", 0.5), ("x" * 90, 0.1))),
            FilePrediction("b.jpg", labelled(("American Staffordshire terrier", 0.9), ("cup", 0.1)))]
    lines = render(predictions_table(rows))
    assert all(len(line) <= 80 for line in lines)
    text = "".join(line.replace("│", "").replace(" ", "") for line in lines)
    assert "x" * 90 + "0.10" in text  # folded, nothing cut
    labels = [line.split("│")[2].strip() for line in lines if line.startswith("│")]
    assert {"American Staffordshire", "terrier"} <= set(labels)  # wrapped at a space, not mid-word


BENCH = BenchReport(
    model="/tmp/p15bundle/openvino/model.int8.xml", backend="openvino", device="CPU", precision="int8",
    batch=1, threads=None, load_seconds=0.31, compile_seconds=0.2, first_inference_ms=5.1,
    latency_ms={"median": 3.21, "p90": 3.5, "p99": 4.1, "min": 3.0, "max": 9.3, "mean": 3.3},
    throughput_fps=523.4, picked="auto picked openvino / fp32 on cpu (the only model that passed its check)",
    cold_start={"seconds": 0.91, "process_seconds": 1.21, "peak_rss_mb": 180}, streams=1, requests=4)


@pytest.mark.parametrize("width", [80, None])
def test_bench_keeps_measures_and_values_whole(width: int | None) -> None:
    lines = render(bench_table(BENCH), width)
    assert_whole(lines, "cold start (import + load + 1st result)", "0.91 s", "(1.21 s with interpreter)",
                 "3.21 / 3.50 / 4.10 ms", "523.4 images/s", "(1 stream, 4 requests in flight)",
                 "openvino / fp32", "model.int8.xml", "(int8, batch 1,")


def test_eval_keeps_classes_and_the_detector_figures_whole() -> None:
    report = EvalReport(images=121, top1=0.893, top5=1.0, classes=("fishes", "renewable_energy"),
                        precision=(0.9, 0.8), recall=(0.95, 0.7), support=(28, 30), confusion=((1,),),
                        misclassified=(), skipped=(), outputs={},
                        unknown={"rule": "knn", "threshold": 0.43217, "known_accepted": 0.95,
                                 "top1_accepted": 0.912, "auroc": 0.871, "unknown_images": 3,
                                 "unknown_accepted": 0.333})
    assert_whole(render(eval_table(report)), "renewable_energy",
                 "121 images (all of DATA): top-1 0.893, top-5 1.000",
                 "unknown detector (knn, threshold 0.4322): accepts 95.0% of the known images,",
                 "top-1 on those 0.912", "3 unknown images: AUROC 0.871, 33.3% accepted as known")


def test_info_keeps_model_names_and_facts_whole() -> None:
    data = {"machine": {"backends": {
        "onnxruntime": {"version": "1.22.0", "providers_usable": ["CPUExecutionProvider"],
                        "providers_unusable": {"CUDAExecutionProvider": "no CUDA driver (libcuda.so.1)",
                                               "TensorrtExecutionProvider": "no CUDA driver (libcuda.so.1)"}},
        "openvino": {"version": "2025.3.0-19807", "devices": {
            "CPU": "Intel(R) Xeon(R) Platinum 8480+", "GPU": "Intel(R) Data Center GPU Flex 170 (dGPU)"}}}},
        "model": {"models": {"openvino/model.int8.xml": {"size_mb": 5.18, "accuracy_check_passed": True,
                                                         "metadata": {
            "arch": "efficientnet_lite0", "precision": "int8", "labels": ["a"] * 1000,
            "preprocess": {"input_size": [224, 224]}, "accuracy": {"top1_agreement": 0.926},
            "unknown": {"rule": "msp", "threshold": 0.6123}}}}}}
    assert_whole(render(info_table(data)), "openvino/model.int8.xml", "efficientnet_lite0 int8,",
                 "accuracy check passed,", "unknown if msp score > 0.6123", "GPU: Intel(R) Data Center GPU",
                 "CUDA, Tensorrt: no CUDA driver (libcuda.so.1)", "onnxruntime 1.22.0")


def camera(*sources: SourceSummary) -> CameraSummary:
    return CameraSummary(
        source=sources[0].source if len(sources) == 1 else f"{len(sources)} sources",
        frames_read=sum(s.frames_read for s in sources),
        frames_processed=sum(s.frames_processed for s in sources), frames_dropped=0, mean_fps=25.3,
        inference_ms_median=20.1, inference_ms_p95=22.2, latency_ms_median=41.2, latency_ms_p95=55.1,
        backend="openvino", device="CPU", recognised=(("coffee mug", 0.63), ("cup", 0.2)), sources=sources)


def test_one_camera_source_fits_on_one_row_once() -> None:
    cup = SourceSummary("samples/videos/cup.mp4", 300, 300, 0, 25.3, 41.2, 55.1,
                        recognised=(("coffee mug", 0.63),))
    lines = render(summary_table(camera(cup)))
    assert_whole(lines, "300 / 300 / 0", "41.2 / 55.1", "coffee mug 63%",
                 "inference 20.1 / 22.2 ms (median / p95) per batch of 1.0, 1 at once;")
    assert sum("300 / 300 / 0" in line for line in lines) == 1  # no total row repeating it
    assert "reconnects" not in "".join(lines)  # no column of zeros


def test_several_camera_sources_get_a_total() -> None:
    streams = [SourceSummary(f"rtsp://cam{i}/live", 200, 190, 10, 12.5, 61.0, 80.2, reconnects=i)
               for i in (1, 2)]
    lines = render(summary_table(camera(*streams)))
    assert_whole(lines, "200 / 190 / 10", "400 / 380 / 0", "rtsp://cam2/", "61.0 / 80.2")
