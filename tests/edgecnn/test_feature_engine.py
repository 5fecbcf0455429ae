"""The frozen backbone on OpenVINO / ONNX Runtime: same features as PyTorch, the export cached, PyTorch
taking over when an engine disagrees, and a head run with the same figures on every engine."""

from __future__ import annotations

import csv
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from edgecnn.runtime.core.images import iter_image_files

from edgecnn.data import ImageDataset, TrainTransform, ValTransform, make_loader, scan_folder
from edgecnn.feature_engine import TorchFeatures, cache_folder, export_backbone, open_engine, verified
from edgecnn.features import image_features, pooled_features
from edgecnn.finetune import FinetuneConfig, finetune
from edgecnn.models import build_model

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def built():
    torch.manual_seed(0)
    return build_model(num_classes=4)


@pytest.mark.parametrize("name", ["openvino", "onnxruntime"])
def test_engine_features_equal_pytorch(name: str, built, tiny_data: Path) -> None:
    """Plain and two augmented views of 5 real photos: 15 views, so 4 chunks of 4 with one padded row
    (a padding or ordering bug shows)."""
    split = scan_folder(tiny_data)
    views = [ValTransform(built.preprocess)] + [TrainTransform(built.preprocess)] * 2
    loader = make_loader(ImageDataset(split.root, split.train[:5], views, seed=0), 5, False, 0)
    reference, labels = pooled_features(built.model, loader, CPU, lambda n: None)
    engine = open_engine(name, built.model, built.preprocess.input_size, CPU, threads=2)
    try:
        assert engine.name == name
        ours, same_labels = pooled_features(built.model, loader, CPU, lambda n: None, engine)
    finally:
        engine.close()
    assert ours.shape == reference.shape == (5, 3, 1280) and torch.equal(labels, same_labels)
    torch.testing.assert_close(ours, reference, atol=1e-4, rtol=1e-4)
    assert reference.abs().max() > 1  # real activations, not zeros


def test_export_is_cached_per_weights(tmp_path: Path) -> None:
    model = build_model(num_classes=4).model
    first = export_backbone(model, (224, 224), tmp_path)
    written = first.stat().st_mtime_ns
    model.reset_classifier(7)  # the classifier does not change the features: the same file, reused
    assert export_backbone(model, (224, 224), tmp_path) == first and first.stat().st_mtime_ns == written
    other = build_model(num_classes=4, pretrained=False).model  # other backbone weights: another file
    second = export_backbone(other, (224, 224), tmp_path)
    assert second != first and sorted(tmp_path.iterdir()) == sorted([first, second])  # no temp files left


def test_cache_folder_follows_xdg_and_survives_a_read_only_one(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_folder() == tmp_path / "xdg" / "edgecnn"
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    with caplog.at_level(logging.WARNING, logger="edgecnn"):
        assert cache_folder() is None
    assert "not writable" in caplog.text and "XDG_CACHE_HOME" in caplog.text


def test_engine_works_without_a_writable_cache(built, tiny_data: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    images = sorted(iter_image_files(tiny_data))[:3]
    features = image_features(built.model, built.preprocess, images, engine="openvino")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    reference = image_features(built.model, built.preprocess, images, engine="torch")
    assert features.shape == (3, 1280)
    torch.testing.assert_close(features, reference, atol=1e-4, rtol=1e-4)
    assert not list(Path(tempfile.gettempdir()).glob("edgecnn-backbone-*"))  # the run's export removed


def test_disagreeing_engine_hands_over_to_pytorch(built, tiny_data: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """An engine compiled from other weights than the model's (a stale export, say) is caught by the
    parity check on real pixels and PyTorch computes the features instead, with a note."""
    other = build_model(num_classes=4, pretrained=False).model
    engine = open_engine("openvino", other, built.preprocess.input_size, CPU, threads=2)
    split = scan_folder(tiny_data)
    pixels = torch.stack([ImageDataset(split.root, split.train[:4], [ValTransform(built.preprocess)])[i][0]
                          for i in range(4)])
    with caplog.at_level(logging.WARNING, logger="edgecnn"):
        chosen = verified(engine, built.model, CPU, pixels)
    assert isinstance(chosen, TorchFeatures)
    assert "feature engine openvino not used" in caplog.text
    assert "computing features with PyTorch" in caplog.text
    good = open_engine("openvino", built.model, built.preprocess.input_size, CPU, threads=2)
    assert verified(good, built.model, CPU, pixels) is good
    good.close()


def test_bad_engine_name_is_refused(built) -> None:
    from edgecnn.errors import EdgecnnError

    with pytest.raises(EdgecnnError, match="unknown feature engine 'tensorrt'; available: auto"):
        open_engine("tensorrt", built.model, (224, 224), CPU)
    with pytest.raises(EdgecnnError, match="unknown feature engine"):
        FinetuneConfig(data=Path(), out=Path(), feature_engine="tensorrt").check()


def _metrics(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv") as file:
        return list(csv.DictReader(file))


def test_head_run_has_the_same_figures_on_openvino_and_pytorch(tiny_data: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Every head epoch's validation loss within 1e-4 and top-1 identical: the engine changes speed only.
    Each run has its own empty cache, so each engine computes every feature."""
    runs = {}
    for name in ("openvino", "torch"):
        runs[name] = tmp_path / name
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / f"cache-{name}"))
        finetune(FinetuneConfig(data=tiny_data, out=runs[name], head_epochs=3, batch_size=8, workers=0,
                                feature_engine=name, progress=False))
    for ov, pt in zip(_metrics(runs["openvino"]), _metrics(runs["torch"]), strict=True):
        assert float(ov["val_loss"]) == pytest.approx(float(pt["val_loss"]), abs=1e-4)
        assert ov["val_top1"] == pt["val_top1"] and float(ov["val_top1"]) > 0.5


def test_worker_processes_with_the_engine_and_a_full_epoch(tiny_data: Path, tmp_path: Path) -> None:
    """`--workers 2`: decoding processes forked while OpenVINO's threads run, for the features and again
    for the full phase; the run must finish (a fork-unsafe call in a worker hangs it: time-limited)."""
    command = [sys.executable, "-m", "edgecnn", "finetune", str(tiny_data), "--out", str(tmp_path / "run"),
               "--head-epochs", "2", "--epochs", "1", "--batch-size", "8", "--workers", "2"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=400,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert [row["phase"] for row in _metrics(tmp_path / "run")] == ["head", "head", "full"]
