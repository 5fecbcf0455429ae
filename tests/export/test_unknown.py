"""The unknown detector end to end: fitted by finetune into best.pt, traced into every exported model as
`unknown_score`, described in ModelMeta and the report; checkpoints without one still export."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from edgecnn.runtime.core.metadata import ModelMeta

MODELS = ("model.onnx", "model.int8.onnx", "openvino/model.xml", "openvino/model.int8.xml")


def outputs(path: Path, frames: np.ndarray) -> dict[str, np.ndarray]:
    """Every output of an .onnx (ONNX Runtime) or .xml (OpenVINO) file, by name."""
    if path.suffix == ".onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(None, {"images": frames}), strict=True))
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled(frames)
    from edgecnn.runtime.core.backends.openvino import output_name

    return {output_name(o, i): result[o] for i, o in enumerate(compiled.outputs)}


@pytest.fixture(scope="module")
def frames(tiny_bundle: Path, sample_photos: Path) -> np.ndarray:
    """Two photos of none of the classes (a cat, a coffee cup), then one photo of each class."""
    from edgecnn.runtime.core.images import read_image
    from edgecnn.runtime.core.preprocess import fit_frame
    from skimage import data

    meta = ModelMeta.read(tiny_bundle / "model.onnx")
    photos = [read_image(sorted(folder.iterdir())[0]) for folder in sorted(sample_photos.iterdir())]
    images = [data.chelsea(), data.coffee(), *photos]
    return np.stack([fit_frame(image, meta.preprocess) for image in images])


def test_finetune_stores_a_calibrated_detector(tiny_run: Path) -> None:
    from edgecnn.checkpoint import load_checkpoint
    from edgecnn.unknown import DEFAULT_RULE

    detector = load_checkpoint(tiny_run / "best.pt").unknown
    assert detector is not None and detector.rule == DEFAULT_RULE
    assert np.isfinite(detector.threshold) and detector.accept_rate == 0.95
    # 8 validation images are too few to calibrate on: the fallback says so
    assert "training images" in detector.calibration and "8 validation images" in detector.calibration


@pytest.mark.parametrize("model", MODELS)
def test_every_model_scores_unknown_images_above_its_threshold(tiny_bundle: Path, frames: np.ndarray,
                                                               model: str) -> None:
    meta = ModelMeta.read(tiny_bundle / model)
    assert meta.unknown is not None and meta.unknown.output == "unknown_score"
    got = outputs(tiny_bundle / model, frames)
    assert list(got) == ["probabilities", "unknown_score"]
    scores = got["unknown_score"]
    assert scores.shape == (len(frames),)
    assert scores[:2].min() > np.median(scores[2:]), scores  # the cat and the cup above the known photos
    if meta.precision == "fp32":  # INT8 decisions near the threshold may differ (measured in the report)
        from edgecnn.runtime import load

        with load(tiny_bundle / model, device="cpu") as engine:  # the one unknown verdict: the engine's
            assert engine.unknown_verdicts(scores[:2]).all(), (scores, meta.unknown.threshold)


def test_fp32_score_matches_pytorch(tiny_run: Path, tiny_bundle: Path, frames: np.ndarray) -> None:
    import torch
    from edgecnn.export.onnx import deployable

    from edgecnn.checkpoint import load_checkpoint
    from edgecnn.unknown import score_module

    checkpoint = load_checkpoint(tiny_run / "best.pt")
    detector = checkpoint.unknown
    wrapped = deployable(checkpoint.build_model(), ModelMeta.read(tiny_bundle / "model.onnx").preprocess,
                         score_module(detector.rule, detector.tensors))
    with torch.inference_mode():
        _, expected = wrapped(torch.from_numpy(frames))
    np.testing.assert_allclose(outputs(tiny_bundle / "model.onnx", frames)["unknown_score"], expected.numpy(),
                               atol=1e-4)


def test_report_gives_int8_decision_agreement(tiny_bundle: Path) -> None:
    from edgecnn.runtime.core.bundle import Bundle

    unknown = Bundle(tiny_bundle).report.unknown
    assert unknown is not None and unknown.rule == ModelMeta.read(tiny_bundle / "model.onnx").unknown.rule
    report = Bundle(tiny_bundle).report
    for name in ("onnx int8", "openvino int8"):
        assert 0.0 <= unknown.models[name]["decision_agreement_fp32"] <= 100.0
        gate = next(m for m in report.models if m.name == name).gate  # the gate judged the decisions too
        assert gate.unknown_disagreements is not None and gate.unknown_agreement >= 98.0, gate
        path = next(m.path for m in report.models if m.name == name)
        assert ModelMeta.read(tiny_bundle / path).unknown.threshold == pytest.approx(gate.unknown_threshold)
        assert unknown.models[name]["threshold"] == pytest.approx(gate.unknown_threshold)
    text = (tiny_bundle / "report.md").read_text()
    assert "Unknown detector" in text and "unknown decisions agree on" in text


def test_checkpoint_without_detector_exports_with_detection_off(tiny_run: Path, tmp_path: Path) -> None:
    from edgecnn.export.bundle import ExportConfig, export_bundle

    from edgecnn.checkpoint import load_checkpoint, save_checkpoint

    old = save_checkpoint(replace(load_checkpoint(tiny_run / "best.pt"), unknown=None), tmp_path / "old.pt")
    report = export_bundle(ExportConfig(checkpoint=old, out=tmp_path / "bundle", formats=("onnx",),
                                        progress=False))
    assert report.unknown is None
    assert any("Unknown detection is off" in note for note in report.notes)
    assert ModelMeta.read(tmp_path / "bundle" / "model.onnx").unknown is None
    import onnxruntime as ort

    model = tmp_path / "bundle" / "model.onnx"
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["probabilities"]


@pytest.mark.parametrize("rate", ["0.5", "1", "1.2", "nan"])
def test_accept_rate_outside_half_to_one_is_one_line_error(tiny_data: Path, tmp_path: Path,
                                                           rate: str) -> None:
    from typer.testing import CliRunner

    from edgecnn.cli import app

    result = CliRunner().invoke(app, ["finetune", str(tiny_data), "--out", str(tmp_path / "run"),
                                      "--accept-rate", rate])
    assert result.exit_code == 2
    assert "--accept-rate" in result.output and "Traceback" not in result.output


def test_checkpoint_with_an_older_knn_detector_exports_it(tiny_run: Path, tmp_path: Path) -> None:
    """Checkpoints from before knn+imagenet was the default carry rule knn: exported as they are."""
    import torch
    from edgecnn.export.bundle import ExportConfig, export_bundle

    from edgecnn.checkpoint import load_checkpoint, save_checkpoint
    from edgecnn.features import image_features
    from edgecnn.unknown import fit_detector

    checkpoint = load_checkpoint(tiny_run / "best.pt")
    model, split = checkpoint.build_model(), checkpoint.split
    assert split is not None and split.train_labels is not None and split.val_labels is not None
    root = Path(split.data_root)
    parts = ((split.train, split.train_labels), (split.val, split.val_labels))
    train, val = ((image_features(model, checkpoint.preprocess, [root / p for p in paths]),
                   torch.tensor(labels)) for paths, labels in parts)
    detector = fit_detector("knn", train, val, model.get_classifier(), len(checkpoint.labels))
    old = save_checkpoint(replace(checkpoint, unknown=detector), tmp_path / "old.pt")
    report = export_bundle(ExportConfig(checkpoint=old, out=tmp_path / "bundle", formats=("onnx",),
                                        progress=False))
    assert report.unknown is not None and report.unknown.rule == "knn"
    meta = ModelMeta.read(tmp_path / "bundle" / "model.onnx")
    assert meta.unknown is not None and meta.unknown.rule == "knn"
    reloaded = load_checkpoint(old).unknown
    assert reloaded is not None and reloaded.rule == "knn"


def test_openvino_int8_keeps_the_whole_detector_in_float(tiny_bundle: Path) -> None:
    """The detector's last op is named after the output (unknown_score), not /unknown_detector/...: NNCF
    quantised its inputs to 256 levels until it was named in the ignored scope (98.3 % agreement)."""
    import openvino as ov

    model = ov.Core().read_model(str(tiny_bundle / "openvino" / "model.int8.xml"))
    score = next(o for o in model.outputs if "unknown_score" in o.get_names())
    todo, seen = [score.get_node().input_value(0).get_node()], set()
    while todo:  # every op from the score back to the pooled features (/global_pool/...)
        op = todo.pop()
        assert op.get_type_name() != "FakeQuantize", f"{op.get_friendly_name()} quantises the detector"
        seen.add(op.get_friendly_name())
        inputs = [op.input_value(i).get_node() for i in range(op.get_input_size())]
        todo += [n for n in inputs if n.get_friendly_name() not in seen
                 and not n.get_friendly_name().startswith("/global_pool/")]
    assert len(seen) > 10  # the walk went through the detector's ops
