"""Shared fixtures: small real data and the models built from it, made once per test session."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_PHOTOS = ROOT / "samples" / "photos"
SAMPLE_VIDEOS = ROOT / "samples" / "videos"


@pytest.fixture(scope="session", autouse=True)
def _cache_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Exported backbones and compiled models (XDG_CACHE_HOME/edgecnn) go to the session's own cache,
    also for the subprocesses tests start, instead of the user's."""
    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if saved is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = saved


@pytest.fixture(autouse=True)
def _signal_handlers_kept() -> Iterator[None]:
    """A test that leaves its own Ctrl-C/SIGTERM handler behind changes what a signal does in every later
    test (the camera's Ctrl-C test once failed only in the full suite that way): the handlers are put
    back, and the test that left one fails here, by name."""
    watched = (signal.SIGINT, signal.SIGTERM)
    before = {signum: signal.getsignal(signum) for signum in watched}
    yield
    left = [signal.Signals(n).name for n in watched if signal.getsignal(n) is not before[n]]
    for signum, handler in before.items():
        signal.signal(signum, handler)
    assert not left, f"this test left its own {' and '.join(left)} handler installed"


@pytest.fixture(scope="session")
def sample_photos() -> Path:
    return SAMPLE_PHOTOS


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the sample photos with 8 images per class: enough to train a head, fast."""
    root = tmp_path_factory.mktemp("tiny_data")
    for class_dir in sorted(p for p in SAMPLE_PHOTOS.iterdir() if p.is_dir()):
        (root / class_dir.name).mkdir()
        for image in sorted(class_dir.iterdir())[:8]:
            shutil.copy(image, root / class_dir.name / image.name)
    return root


@pytest.fixture(scope="session")
def tiny_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real fine-tune run on `tiny_data`: a few head epochs plus one full epoch."""
    from edgecnn.finetune import FinetuneConfig, finetune

    out = tmp_path_factory.mktemp("runs") / "tiny"
    finetune(FinetuneConfig(data=tiny_data, out=out, head_epochs=5, epochs=1, batch_size=8, workers=0,
                            progress=False))
    return out


@pytest.fixture(scope="session")
def tiny_bundle(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny run exported to FP32 + INT8, ONNX + OpenVINO, through the default INT8 gate."""
    from edgecnn.export.bundle import ExportConfig, export_bundle

    out = tmp_path_factory.mktemp("bundles") / "tiny"
    export_bundle(ExportConfig(checkpoint=tiny_run / "best.pt", out=out, int8=True, calibration_size=16,
                               progress=False))  # the default INT8 gate: it must pass
    return out


@pytest.fixture(scope="session")
def imagenet_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ImageNet-1k EfficientNet-Lite0 itself, FP32 + INT8, calibrated on the sample photos; the
    default INT8 gate holds (an INT8 model that lost too much fails the fixture, as it fails an export)."""
    from edgecnn.export.bundle import ExportConfig, export_bundle

    out = tmp_path_factory.mktemp("bundles") / "imagenet"
    export_bundle(ExportConfig(pretrained=True, out=out, int8=True, calibration=SAMPLE_PHOTOS,
                               calibration_size=32, progress=False))  # the default INT8 gate: it must pass
    return out
