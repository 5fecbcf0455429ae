"""`camera --collect` and `camera --start` on the real sample clip with the real ImageNet INT8 bundle."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import pytest
from edgecnn.runtime.core.images import read_image
from edgecnn.runtime.live.collect import reason
from typer.testing import CliRunner

from edgecnn.cli import app

ROOT = Path(__file__).resolve().parents[2]
CUP = ROOT / "samples" / "videos" / "cup.mp4"
runner = CliRunner()


def camera(bundle: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["camera", str(bundle), "--source", str(CUP), "--headless",
                                 "--precision", "int8", *args])
    return result.exit_code, result.output


def test_collect_keeps_uncertain_and_unknown_frames_with_predictions(imagenet_bundle: Path,
                                                                     tmp_path: Path) -> None:
    jsonl = tmp_path / "cup.jsonl"
    code, output = camera(imagenet_bundle, "--collect", str(tmp_path / "look"), "--collect-max", "3",
                          "--jsonl", str(jsonl), "--smooth", "0")
    assert code == 0, output
    records = {r["frame"]: r for r in map(json.loads, jsonl.read_text().splitlines())}
    # the review queue's layout: CAMERA/ANSWER/NAME.jpg + NAME.json, so finetune reads look/cup
    sidecars = sorted((tmp_path / "look").glob("cup/*/*.json"))
    assert len(sidecars) == 3 and len(list((tmp_path / "look").glob("cup/*/*.jpg"))) == 3
    times = []
    for sidecar in sidecars:
        kept = json.loads(sidecar.read_text())
        record = records[kept["frame"]["frame"]]
        assert kept["why"] == record["label"] == ("unknown" if record["unknown"] else "uncertain")
        assert kept["frame"] == record
        assert sidecar.parent.name == ("unknown" if record["unknown"] else record["top"][0]["label"])
        assert read_image(sidecar.with_suffix(".jpg")).shape[:2] == (480, 640)  # the whole frame
        times.append(record["timestamp"])
    gaps = [b - a for a, b in zip(sorted(times), sorted(times)[1:], strict=False)]
    assert min(gaps) >= 1.0  # one a second at most
    assert "collected 3 uncertain or unknown frames" in output


def test_with_min_prob_0_only_unknown_frames_are_collected(imagenet_bundle: Path, tmp_path: Path) -> None:
    jsonl = tmp_path / "cup.jsonl"
    code, output = camera(imagenet_bundle, "--collect", str(tmp_path / "look"), "--min-prob", "0", "--json",
                          "--jsonl", str(jsonl))
    assert code == 0, output
    records = {r["frame"]: r for r in map(json.loads, jsonl.read_text().splitlines())}
    sidecars = [json.loads(p.read_text()) for p in (tmp_path / "look").glob("*/*/*.json")]
    assert json.loads(output.strip().splitlines()[-1])["collected"] == len(sidecars)
    assert all(kept["why"] == "unknown" and records[kept["frame"]["frame"]]["unknown"] for kept in sidecars)
    assert len(sidecars) >= min(1, sum(r["unknown"] for r in records.values()))


@pytest.mark.parametrize(("record", "expected"), [
    ({"label": "uncertain"}, "uncertain"),
    ({"label": "cup"}, None),
    ({"label": "cup", "unknown": True}, "unknown"),
    ({"label": "uncertain", "unknown": False}, "uncertain"),
])
def test_reason(record: dict, expected: str | None) -> None:
    from edgecnn.runtime.live.frames import FrameRecord

    fields = {"source": "cam", "frame": 1, "timestamp": 0.0, "top": (), "unknown_score": None,
              "unknown": False, "inference_ms": 1.0, "latency_ms": 1.0}
    assert reason(FrameRecord(**{**fields, **record})) == expected


def test_start_skips_that_much_of_the_video(imagenet_bundle: Path) -> None:
    fps = cv2.VideoCapture(str(CUP)).get(cv2.CAP_PROP_FPS)
    code, output = camera(imagenet_bundle, "--start", "5", "--json")
    assert code == 0, output
    summary = json.loads(output.strip().splitlines()[-1])
    assert summary["frames_read"] == 217 - math.ceil(5 * fps)  # frame i starts at i / fps


@pytest.mark.parametrize(("args", "message"), [
    (["--start", "60"], "past the end"),
    (["--collect", "/proc/edgecnn-collect"], "cannot write --collect"),
    (["--collect-max", "0"], "--collect-max"),
])
def test_bad_start_and_collect_are_one_line_errors(imagenet_bundle: Path, args: list[str],
                                                   message: str) -> None:
    code, output = camera(imagenet_bundle, *args)
    assert code == 2 and message in output, output
    assert "Traceback" not in output


def test_start_refuses_a_folder(imagenet_bundle: Path) -> None:
    result = runner.invoke(app, ["camera", str(imagenet_bundle), "--source", str(ROOT / "samples" / "photos"),
                                 "--headless", "--start", "1"])
    assert result.exit_code == 2 and "--start applies to video files" in result.output
