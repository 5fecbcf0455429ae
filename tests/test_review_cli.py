"""`edgecnn review DIR` on a real queue written by ReviewQueue from real frames of the sample clip: the
counts, --list, labelling from a CSV or JSON-lines file into a data folder, and the one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from edgecnn.runtime.core.images import read_image
from edgecnn.runtime.live.frames import FrameRecord, LiveUpdate, Shown
from edgecnn.runtime.live.review import ReviewConfig, ReviewQueue
from typer.testing import CliRunner

from edgecnn.cli import app
from tests.conftest import SAMPLE_VIDEOS

CUP = SAMPLE_VIDEOS / "cup.mp4"
runner = CliRunner()


def update(image: np.ndarray, frame: int, camera: str, label: str, probability: float) -> LiveUpdate:
    record = FrameRecord(source=str(CUP), frame=frame, timestamp=float(frame), label=label,
                         top=(Shown(label, probability),), unknown_score=None, unknown=False,
                         inference_ms=1.0, latency_ms=1.0, camera=camera)
    return LiveUpdate(record, {}, lambda: image, image)


@pytest.fixture
def queue(tmp_path: Path) -> Path:
    """A queue of 6 real frames: 4 of camera `desk` (3 answered `bowl`, 1 `mug`), 2 of `door` (`bowl`)."""
    video = cv2.VideoCapture(str(CUP))
    images = [video.read()[1] for _ in range(120)][::20]
    video.release()
    folder = tmp_path / "review"
    answers = [("desk", "bowl"), ("desk", "bowl"), ("desk", "mug"), ("desk", "bowl"), ("door", "bowl"),
               ("door", "bowl")]
    with ReviewQueue(ReviewConfig(folder, interval=0.0, min_change=0.0, sample=0.0)) as review:
        for index, (camera, answer) in enumerate(answers):
            review.publish(update(images[index], index, camera, answer, 0.3 + 0.05 * index))
    return folder


def invoke(*args: object) -> tuple[int, str]:
    done = runner.invoke(app, [str(arg) for arg in args])
    return done.exit_code, done.output


def ids(folder: Path) -> list[str]:
    return [json.loads(line)["id"] for line in invoke("review", folder, "--json")[1].splitlines()]


def test_review_counts_frames_per_camera_and_answer_and_lists_them(queue: Path) -> None:
    code, out = invoke("review", queue)
    assert code == 0 and "6 frames" in " ".join(out.split())  # the title wraps with a long tmp path
    rows = [line.replace("│", " ").split() for line in out.splitlines()]
    rows = [row for row in rows if row[:1] in (["desk"], ["door"])]
    assert [row[:3] for row in rows] == [["desk", "bowl", "3"], ["desk", "mug", "1"], ["door", "bowl", "2"]]
    code, out = invoke("review", queue, "--list")
    lines = [line.split() for line in out.splitlines()]
    assert code == 0 and len(lines) == 6 and all(len(line) == 4 for line in lines)
    assert {line[3] for line in lines} == {"uncertain"} and {line[1] for line in lines} == {"bowl", "mug"}
    assert sorted(float(line[2]) for line in lines) == pytest.approx([0.3, 0.35, 0.4, 0.45, 0.5, 0.55])
    listed = [json.loads(line) for line in invoke("review", queue, "--json")[1].splitlines()]
    assert [item["id"] for item in listed] == [line[0] for line in lines]
    assert all(Path(item["image"]).parent.name == item["answer"] for item in listed)


@pytest.mark.parametrize("form", ["csv", "jsonl"])
def test_labels_file_moves_the_frames_into_class_folders(queue: Path, tmp_path: Path, form: str) -> None:
    data, names = tmp_path / "data", ids(queue)
    (data / "cup").mkdir(parents=True)
    (data / "cup" / f"{names[0]}.jpg").write_bytes(b"taken")  # a name already there is never replaced
    chosen = [(names[0], "cup"), (names[1], "cup"), (names[4], "big mug")]
    text = ("id,label\n# comment\n" + "".join(f"{i},{label}\n" for i, label in chosen) if form == "csv" else
            "".join(json.dumps({"id": i, "label": label}) + "\n" for i, label in chosen))
    (tmp_path / "labels").write_text(text)
    before = {i: read_image(next(queue.rglob(f"{i}.jpg"))) for i, _ in chosen}
    code, out = invoke("review", queue, "--labels", tmp_path / "labels", "--data", data)
    assert code == 0 and f"moved 3 frames into {data}" in out
    assert (data / "cup" / f"{names[0]}.jpg").read_bytes() == b"taken"
    assert sorted(p.name for p in (data / "cup").glob("*.jpg")) == sorted(
        [f"{names[0]}.jpg", f"{names[0]}-1.jpg", f"{names[1]}.jpg"])
    assert [p.name for p in (data / "big mug").glob("*.jpg")] == [f"{names[4]}.jpg"]
    assert np.array_equal(read_image(data / "cup" / f"{names[0]}-1.jpg"), before[names[0]])
    assert (data / "big mug" / f"{names[4]}.json").is_file()  # the sidecar goes with its frame
    assert sorted(ids(queue)) == sorted(set(names) - {i for i, _ in chosen})  # gone from the queue
    assert not list(tmp_path.rglob(".*tmp*"))


@pytest.mark.parametrize(("line", "message"), [
    ("nosuchframe,cup", "frame 'nosuchframe' is not in the review queue"),
    ("{ID},cats/kittens", "holds a slash"),
    ("{ID},../cats", "starts with a dot"),
    ("{ID},.hidden", "starts with a dot"),
    ("{ID},a\x1bb", "control character"),
    ("{ID}", "write `id,label`"),
    ("{ID},cup\n{ID},mug", "is labelled twice"),
    ('{{"id": "{ID}"}}', "write `id,label`"),
])
def test_bad_labels_are_refused_in_one_line_and_nothing_moves(queue: Path, tmp_path: Path, line: str,
                                                              message: str) -> None:
    names = ids(queue)
    labels = tmp_path / "labels.csv"
    labels.write_text(f"{names[1]},cup\n" + line.replace("{ID}", names[0]).replace("{{", "{").replace(
        "}}", "}") + "\n")
    code, out = invoke("review", queue, "--labels", labels, "--data", tmp_path / "data")
    assert code == 2 and message in out and out.startswith("error:") and len(out.strip().splitlines()) == 1
    assert sorted(ids(queue)) == sorted(names) and not (tmp_path / "data").exists()


def test_labels_need_a_data_folder(queue: Path, tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("x,cup\n")
    code, out = invoke("review", queue, "--labels", tmp_path / "labels.csv")
    assert code == 2 and "give --data DATA" in out
