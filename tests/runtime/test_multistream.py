"""Several sources in one camera loop: batched inference, one source failing while the others go on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from edgecnn.runtime.live.camera import CameraConfig, run_camera
from edgecnn.runtime.live.overlay import tile
from edgecnn.runtime.live.video import VideoOptions
from typer.testing import CliRunner

from edgecnn.cli import app
from tests.runtime.test_video import mjpeg_server

ROOT = Path(__file__).resolve().parents[2]
CUP, BOX = ROOT / "samples" / "videos" / "cup.mp4", ROOT / "samples" / "videos" / "box.mp4"


@pytest.fixture(scope="module")
def engine(imagenet_bundle: Path) -> Any:
    from edgecnn.runtime import load

    with load(imagenet_bundle, device="cpu", precision="int8", streams=2, threads=2) as engine:
        yield engine


@pytest.fixture(scope="module")
def short_clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The first 24 frames of cup, box and cup played backwards: three short, different sources."""
    folder = tmp_path_factory.mktemp("clips")
    clips = []
    for name, clip, backwards in (("cup", CUP, False), ("box", BOX, False), ("pucp", CUP, True)):
        capture = cv2.VideoCapture(str(clip))
        frames = [capture.read()[1] for _ in range(24)]
        capture.release()
        out = folder / f"{name}.mp4"
        writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (640, 480))
        for frame in reversed(frames) if backwards else frames:
            writer.write(frame)
        writer.release()
        clips.append(out)
    return clips


def records_by_source(path: Path) -> dict[str, list[dict[str, Any]]]:
    records: dict[str, list[dict[str, Any]]] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        records.setdefault(record["source"], []).append(record)
    return records


def test_one_unreachable_and_one_dropping_source_do_not_stop_the_third(engine: Any, tmp_path: Path) -> None:
    jsonl, messages = tmp_path / "three.jsonl", []
    refused = "http://viewer:secret@127.0.0.1:9/down.mjpg"
    with mjpeg_server(frames_per_connection=12, connections=1) as dropping:
        config = CameraConfig(sources=(CUP, refused, dropping), headless=True, jsonl=jsonl,
                              video=VideoOptions(reconnect_timeout=2.0, open_timeout=1.0, read_timeout=1.0))
        summary = run_camera(engine, config, say=messages.append)
    cup, down, dropped = summary.sources
    records = records_by_source(jsonl)
    assert cup.frames_read == cup.frames_processed == len(records[str(CUP)]) == 217 and not cup.error
    assert [r["frame"] for r in records[str(CUP)]] == list(range(217))  # frame by frame, in order
    assert down.frames_read == down.frames_processed == 0 and "cannot open stream" in down.error
    assert 1 <= dropped.frames_processed <= 12 and "could not reconnect" in dropped.error
    assert dropped.frames_read == dropped.frames_processed + dropped.frames_dropped
    assert len(records[dropped.source]) == dropped.frames_processed and down.source not in records
    assert summary.frames_processed == sum(s.frames_processed for s in summary.sources)
    assert summary.jsonl_written == summary.frames_processed and summary.jsonl_dropped == 0
    assert summary.frames_read == sum(s.frames_read for s in summary.sources)
    shown = " ".join(messages) + jsonl.read_text() + json.dumps([s.source + s.error for s in summary.sources])
    assert "secret" not in shown and "***@127.0.0.1" in shown
    assert any("the other sources go on" in m for m in messages)


def test_batching_gives_the_labels_of_one_stream_at_a_time(engine: Any, short_clips: list[Path],
                                                           tmp_path: Path) -> None:
    together = run_camera(engine, CameraConfig(sources=tuple(short_clips), headless=True, smooth=0.0,
                                               jsonl=tmp_path / "together.jsonl"))
    assert together.batch_mean > 1.5 and together.frames_processed == 72
    batched = records_by_source(tmp_path / "together.jsonl")
    for clip in short_clips:
        alone = tmp_path / f"{clip.stem}.jsonl"
        run_camera(engine, CameraConfig(source=clip, headless=True, smooth=0.0, jsonl=alone))
        single = records_by_source(alone)[str(clip)]
        assert [r["frame"] for r in batched[str(clip)]] == [r["frame"] for r in single] == list(range(24))
        assert [r["label"] for r in batched[str(clip)]] == [r["label"] for r in single]
        for a, b in zip(batched[str(clip)], single, strict=True):
            assert a["top"][0]["label"] == b["top"][0]["label"]
            assert abs(a["top"][0]["probability"] - b["top"][0]["probability"]) < 0.02


def test_cli_several_sources_json_and_sources_file(imagenet_bundle: Path, short_clips: list[Path],
                                                   tmp_path: Path) -> None:
    listing = tmp_path / "list.streams"
    listing.write_text(f"# cameras\n{short_clips[1]}\n\n{short_clips[2]}\n")
    result = CliRunner().invoke(app, ["camera", str(imagenet_bundle), "--source", str(short_clips[0]),
                                      "--sources", str(listing), "--headless", "--device", "cpu", "--json",
                                      "--save", str(tmp_path / "grid.mp4")])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert [row["source"] for row in summary["sources"]] == [str(c) for c in short_clips]
    assert summary["frames_processed"] == 72 and summary["mean_fps"] > 0 and summary["streams"] == 2
    for i, row in enumerate(summary["sources"], start=1):
        video = cv2.VideoCapture(str(tmp_path / f"grid-{i}.mp4"))
        assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == row["recorded"] == 24 - row["recording_dropped"]


def test_cli_a_missing_path_among_sources_is_one_line_before_anything(imagenet_bundle: Path,
                                                                      tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["camera", str(imagenet_bundle), "--source", str(CUP), "--source",
                                      str(tmp_path / "typo.mp4"), "--headless", "--jsonl",
                                      str(tmp_path / "out.jsonl")])
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and len(errors) == 1 and "typo.mp4 does not exist" in errors[0]
    assert list(tmp_path.iterdir()) == []


def test_grid_tiles_the_sources_and_marks_a_lost_one(tmp_path: Path) -> None:
    red = np.zeros((480, 640, 3), np.uint8)
    red[..., 2] = 255
    blue = np.zeros((240, 320, 3), np.uint8)
    blue[..., 0] = 255
    grid = tile([("cam 1", red, ""), ("cam 2", blue, ""), ("rtsp://***@cam3/live", None, "lost")], width=800)
    cv2.imwrite(str(tmp_path / "grid.png"), grid)
    assert grid.shape == (600, 800, 3)  # 2 x 2 cells of 400 x 300
    assert tuple(grid[100, 200]) == (0, 0, 255) and tuple(grid[100, 600]) == (255, 0, 0)
    assert grid[350:500, 100:300].max() < 80  # the lost camera's cell: no picture
    caption = grid[560:600, 0:400]
    assert (caption[..., 2].astype(int) - caption[..., 0] > 100).any()  # its caption is drawn in red
