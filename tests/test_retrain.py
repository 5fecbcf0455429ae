"""The retrain job end to end (`edgecnn review DIR --labels FILE --data DATA --retrain --bundle BUNDLE`):
a real head-only run on two sample classes, exported to FP32 ONNX, a real ReviewQueue of photos of a third
class; labelled right the new model replaces the live bundle, labelled wrong the gate refuses it and the
live bundle stays byte for byte."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import cv2
import pytest
from edgecnn.runtime.core.bundle import Bundle
from edgecnn.runtime.live.frames import FrameRecord, LiveUpdate, Shown
from edgecnn.runtime.live.review import ReviewConfig, ReviewQueue
from typer.testing import CliRunner

from edgecnn.cli import app
from tests.conftest import SAMPLE_PHOTOS

OLD = ("fishes", "tools")
NEW = "monuments"
runner = CliRunner()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(DATA, BUNDLE): 8 photos of each OLD class, a head-only run on them, exported to FP32 ONNX."""
    from edgecnn.export.bundle import ExportConfig, export_bundle
    from edgecnn.finetune import FinetuneConfig, finetune

    root = tmp_path_factory.mktemp("retrain")
    for label in OLD:
        (root / "data" / label).mkdir(parents=True)
        for image in sorted((SAMPLE_PHOTOS / label).iterdir())[:8]:
            shutil.copy(image, root / "data" / label / image.name)
    finetune(FinetuneConfig(data=root / "data", out=root / "run", head_epochs=10, epochs=0, batch_size=8,
                            workers=0, progress=False))
    export_bundle(ExportConfig(checkpoint=root / "run" / "best.pt", out=root / "live", formats=("onnx",),
                               progress=False))
    return root / "data", root / "live"


def queue(folder: Path, photos: list[Path]) -> list[str]:
    """The photos queued by a real ReviewQueue as camera `desk` frames the model called `fishes`; their ids."""
    with ReviewQueue(ReviewConfig(folder, interval=0.0, min_change=0.0, sample=0.0)) as review:
        for index, photo in enumerate(photos):
            image = cv2.imread(str(photo))
            record = FrameRecord(source="desk", frame=index, timestamp=float(index), label="fishes",
                                 top=(Shown("fishes", 0.4),), unknown_score=None, unknown=False,
                                 inference_ms=1.0, latency_ms=1.0, camera="desk")
            review.publish(LiveUpdate(record, {}, lambda image=image: image, image))
    done = runner.invoke(app, ["review", str(folder), "--json"])
    return [json.loads(line)["id"] for line in done.output.splitlines()]


def retrain(tmp_path: Path, data: Path, bundle: Path, labels: list[tuple[str, str]]) -> tuple[int, str]:
    (tmp_path / "labels.csv").write_text("".join(f"{id_},{label}\n" for id_, label in labels))
    done = runner.invoke(app, ["review", str(tmp_path / "review"), "--labels", str(tmp_path / "labels.csv"),
                               "--data", str(data), "--retrain", "--bundle", str(bundle), "--json"])
    return done.exit_code, done.output


def digests(bundle: Path) -> dict[str, str]:
    return {str(path.relative_to(bundle)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(bundle.rglob("*")) if path.is_file()}


def work_copy(live: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """The data folder and the bundle copied for one test (the job changes both)."""
    data, bundle = live
    shutil.copytree(data, tmp_path / "data")
    shutil.copytree(bundle, tmp_path / "live")
    return tmp_path / "data", tmp_path / "live"


def test_frames_of_a_new_class_labelled_right_replace_the_live_bundle(live: tuple[Path, Path],
                                                                     tmp_path: Path) -> None:
    data, bundle = work_copy(live, tmp_path)
    ids = queue(tmp_path / "review", sorted((SAMPLE_PHOTOS / NEW).iterdir())[:12])
    code, out = retrain(tmp_path, data, bundle, [(id_, NEW) for id_ in ids])
    summary = json.loads(out.splitlines()[-1])
    assert code == 0 and summary["accepted"], out
    assert summary["reason"].startswith("accepted") and summary["trained_frames"] == 9
    assert set(summary["seconds"]) == {"features", "training", "export", "gate", "total"}
    assert summary["labelled"][1]["right"] == 3 and summary["labelled"][0]["right"] == 0
    assert Bundle(bundle).labels_file().read_text().split() == [OLD[0], NEW, OLD[1]]  # the bundle path holds the new model
    assert not list(bundle.parent.glob(".live.*"))  # no work folder left beside it


def test_frames_labelled_wrong_are_refused_and_the_live_bundle_is_untouched(live: tuple[Path, Path],
                                                                          tmp_path: Path) -> None:
    data, bundle = work_copy(live, tmp_path)
    before = digests(bundle)
    ids = queue(tmp_path / "review", sorted((SAMPLE_PHOTOS / NEW).iterdir())[:12])
    code, out = retrain(tmp_path, data, bundle, [(id_, OLD[i % 2]) for i, id_ in enumerate(ids)])
    summary = json.loads(out.splitlines()[-1])
    assert code == 1 and not summary["accepted"] and summary["reason"].startswith("refused"), out
    assert "\n" not in summary["reason"]
    assert digests(bundle) == before
    assert not list(bundle.parent.glob(".live.*"))
