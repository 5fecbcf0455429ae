"""The review queue: a real `edgecnn camera --review` subprocess on the sample clip with the real ImageNet
INT8 bundle, and the queue's choices (short states, near-identical frames, bounds) on real decoded frames."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from edgecnn.runtime.core.images import read_image
from edgecnn.runtime.live.capture import change, thumbnail
from edgecnn.runtime.live.frames import FrameRecord, LiveUpdate, Shown
from edgecnn.runtime.live.review import ReviewConfig, ReviewQueue

from tests.conftest import SAMPLE_VIDEOS

CUP = SAMPLE_VIDEOS / "cup.mp4"
WHYS = {"unknown", "uncertain", "short", "sample"}


def queued(folder: Path) -> list[tuple[Path, dict]]:
    """Every queued frame under folder (CAMERA/ANSWER/NAME.jpg) with its sidecar."""
    return [(path, json.loads(path.with_suffix(".json").read_text()))
            for path in sorted(folder.glob("*/*/*.jpg"))]


def test_camera_review_queues_frames_worth_a_look_in_class_folders(imagenet_bundle: Path,
                                                                   tmp_path: Path) -> None:
    review, jsonl = tmp_path / "review", tmp_path / "cup.jsonl"
    done = subprocess.run([sys.executable, "-m", "edgecnn", "camera", str(imagenet_bundle), "--source",
                           str(CUP), "--headless", "--precision", "int8", "--smooth", "0",
                           "--review", str(review), "--jsonl", str(jsonl)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    records = {r["frame"]: r for r in map(json.loads, jsonl.read_text().splitlines())}
    items = queued(review)
    assert len(items) >= 3 and [p.name for p in review.iterdir()] == ["cup"]  # one folder per camera
    assert sorted(p.name for p in review.rglob("*")) == sorted(  # nothing but JPEG + sidecar pairs
        [p.name for p, _ in items] + [p.with_suffix(".json").name for p, _ in items] +
        list({p.parent.name for p, _ in items}) + ["cup"])
    for path, sidecar in items:
        record = records[sidecar["frame"]["frame"]]
        assert sidecar["frame"] == record and sidecar["camera"] == "cup" and sidecar["why"] in WHYS
        answer = "unknown" if record["unknown"] else record["top"][0]["label"]
        assert path.parent.name == sidecar["answer"] == answer.replace("/", "_")
        assert sidecar["score"] == record["top"][0]["probability"]
        if sidecar["why"] == "uncertain":
            assert record["label"] == "uncertain" or sidecar["score"] < 0.6
        assert read_image(path).shape[:2] == (480, 640)  # the whole frame
    times = sorted(sidecar["frame"]["timestamp"] for _, sidecar in items)
    assert min(b - a for a, b in itertools.pairwise(times)) >= 1.0  # one a second at most
    thumbs = [thumbnail(read_image(path)[:, :, ::-1]) for path, _ in items]
    assert min(change(a, b) for a, b in itertools.combinations(thumbs, 2)) >= 0.015  # JPEG moves it a bit
    assert f"queued {len(items)} frames worth a look into {review}" in done.stdout + done.stderr


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    video = cv2.VideoCapture(str(CUP))
    images = [video.read()[1] for _ in range(60)]
    video.release()
    return images[::10]  # 6 real frames, a third of a second apart


def update(image: np.ndarray, frame: int, label: str, probability: float = 0.9) -> LiveUpdate:
    """A result as the loop hands it on; `label` "uncertain": top-1 "cup" at `probability`."""
    top = (Shown("cup" if label == "uncertain" else label, probability),)
    record = FrameRecord(source=str(CUP), frame=frame, timestamp=float(frame), label=label, top=top,
                         unknown_score=None, unknown=False, inference_ms=1.0, latency_ms=1.0, camera="cup")
    return LiveUpdate(record, {}, lambda: image, image)


def run_queue(config: ReviewConfig, updates: list[LiveUpdate]) -> ReviewQueue:
    with ReviewQueue(config) as queue:
        for one in updates:
            queue.publish(one)
    return queue


def test_a_state_shorter_than_the_window_queues_its_first_frame(frames: list[np.ndarray],
                                                                 tmp_path: Path) -> None:
    labels = ["cup"] * 6 + ["bowl"] * 2 + ["cup"] * 6 + ["mug"] * 5 + ["cup"]
    updates = [update(frames[i % len(frames)], i, label) for i, label in enumerate(labels)]
    run_queue(ReviewConfig(tmp_path, margin=0.0, window=5, sample=0.0, interval=0.0), updates)
    items = queued(tmp_path)
    assert [(s["why"], s["answer"], s["frame"]["frame"]) for _, s in items] == [("short", "bowl", 6)]


def test_near_identical_frames_count_once_and_the_bounds_hold(frames: list[np.ndarray],
                                                              tmp_path: Path) -> None:
    same = [update(frames[0], i, "uncertain", 0.2) for i in range(5)]
    queue = run_queue(ReviewConfig(tmp_path / "a", interval=0.0), same)
    assert queue.saved == 1 and len(queued(tmp_path / "a")) == 1
    distinct = [update(np.full_like(frames[0], 40 * i), i, "uncertain", 0.2) for i in range(6)]
    queue = run_queue(ReviewConfig(tmp_path / "b", interval=0.0, limit=3), distinct)
    assert queue.saved == 3 and len(queued(tmp_path / "b")) == 3
    assert {p.parent.name for p, _ in queued(tmp_path / "b")} == {"cup"}  # the top-1 class, not "uncertain"
    queue = run_queue(ReviewConfig(tmp_path / "b", interval=0.0, limit=4), distinct[3:])  # a restart
    assert queue.saved == 1 and len(queued(tmp_path / "b")) == 4  # what the folder held counts
    one = max(path.stat().st_size for path, _ in queued(tmp_path / "b"))
    queue = run_queue(ReviewConfig(tmp_path / "c", interval=0.0, max_bytes=2 * one), distinct)
    assert queue.saved == 2  # stops once 2 JPEGs' worth is held


def test_a_sample_of_confident_frames_is_queued(frames: list[np.ndarray], tmp_path: Path) -> None:
    confident = [update(np.full_like(frames[0], 2 * i), i, "cup", 0.99) for i in range(100)]
    run_queue(ReviewConfig(tmp_path, interval=0.0, sample=0.1, min_change=0.0), confident)
    whys = [s["why"] for _, s in queued(tmp_path)]
    assert 2 <= len(whys) <= 25 and set(whys) == {"sample"}
