"""The camera's --jsonl lines read back as typed records: what the real loop writes on the sample clip,
key for key, and a damaged line named by its number and field."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from edgecnn.runtime import load
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.live.frames import FrameRecord, read_jsonl

from tests.conftest import SAMPLE_VIDEOS
from tests.runtime.conftest import mean_colour_onnx


@pytest.fixture(scope="module")
def jsonl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgecnn.runtime.live.camera import CameraConfig, run_camera

    folder = tmp_path_factory.mktemp("frames")
    model = mean_colour_onnx(folder / "colour.onnx", np.eye(3))
    path = folder / "cup.jsonl"
    with load(model, labels=["red", "green", "blue"], mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)) as engine:
        run_camera(engine, CameraConfig(source=SAMPLE_VIDEOS / "cup.mp4", headless=True, max_frames=5,
                                        jsonl=path, smooth=0.0), say=lambda _: None)
    return path


def test_what_the_camera_writes_reads_back_key_for_key(jsonl: Path) -> None:
    records = read_jsonl(jsonl)
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(records) == len(lines) == 5 and [r.frame for r in records] == list(range(5))
    assert [r.to_json() for r in records] == lines
    assert all(isinstance(r, FrameRecord) and r.top[0].label in ("red", "green", "blue") for r in records)


@pytest.mark.parametrize(("edit", "words"), [
    (lambda r: r.update(frame=-1), "line 2 is not a frame record: frame is -1"),
    (lambda r: r["top"][0].update(probability=2), "line 2 is not a frame record: top[0].probability is 2"),
    (lambda r: r.pop("label"), "label is missing"),
])
def test_a_damaged_line_is_named_by_number_and_field(jsonl: Path, tmp_path: Path, edit, words: str) -> None:
    lines = jsonl.read_text().splitlines()
    second = json.loads(lines[1])
    edit(second)
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_text("\n".join([lines[0], json.dumps(second), *lines[2:]]) + "\n")
    with pytest.raises(EdgecnnError, match=words.replace("[", r"\[")):
        read_jsonl(damaged)
