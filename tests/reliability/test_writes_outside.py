"""Writes outside where asked (issue 31, item 2): real commands run with an empty HOME leave it empty.

Each command runs as a user runs it, in its own process, with HOME a fresh empty folder and every
XDG_* variable unset except XDG_CACHE_HOME, which points to a second fresh folder beside it: edgecnn's
own cache (`edgecnn/`, compiled models) may appear there and nothing else may, in either folder.
ONNX Runtime's telemetry wrote `Microsoft/DeveloperTools/.onnxruntime/{deviceid, onnxruntime.db}` into
that cache on every import, even for `info`; OpenVINO's would write `~/intel`, matplotlib (eval's
confusion matrix, finetune's curves) `~/.config/matplotlib` and its font list.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import SAMPLE_PHOTOS, SAMPLE_VIDEOS
from tests.reliability.conftest import LABELS, ROOT, colour_onnx

# Outside CI, as a user runs it: OpenVINO's and NNCF's telemetry stay quiet under CI on their own.
CI_NAMES = ("CI", "NNCF_CI", "TF_BUILD", "JENKINS_URL", "GITHUB_ACTIONS")
OWN_CACHE = {"edgecnn"}  # what edgecnn itself keeps in XDG_CACHE_HOME


def _colour_bundle(tmp: Path) -> Path:
    bundle = tmp / "bundle"
    colour_onnx(bundle / "model.onnx")
    (bundle / "labels.txt").write_text("\n".join(LABELS) + "\n")
    return bundle


def _openvino_bundle(tmp: Path) -> Path:
    import openvino as ov

    bundle = _colour_bundle(tmp)
    (bundle / "openvino").mkdir()
    ov.save_model(ov.convert_model(str(bundle / "model.onnx")), str(bundle / "openvino" / "model.xml"))
    return bundle


def _colour_data(tmp: Path) -> Path:
    import cv2
    import numpy as np

    for index, label in enumerate(LABELS):  # one flat image per class, in its own colour
        (tmp / "data" / label).mkdir(parents=True)
        colour = np.full((32, 32, 3), 60, np.uint8)
        colour[:, :, 2 - min(index, 2)] = 200
        cv2.imwrite(str(tmp / "data" / label / "a.png"), colour)
    return tmp / "data"


Args = Callable[[Path, Path], list[object]]  # (tmp, a fine-tune run folder or None) -> command line
COMMANDS: dict[str, Args] = {
    "info": lambda t, run: ["info"],
    "predict, ONNX Runtime": lambda t, run: ["predict", _colour_bundle(t), SAMPLE_PHOTOS / "tools",
                                             "--backend", "onnxruntime"],
    "predict, OpenVINO": lambda t, run: ["predict", _openvino_bundle(t), SAMPLE_PHOTOS / "tools",
                                         "--backend", "openvino"],
    "camera --max-frames": lambda t, run: ["camera", _colour_bundle(t), "--source", SAMPLE_VIDEOS / "cup.mp4",
                                           "--max-frames", "5", "--jsonl", t / "out.jsonl"],
    "eval (matplotlib's confusion matrix)": lambda t, run: ["eval", _colour_bundle(t), _colour_data(t),
                                                            "--out", t / "eval"],
    # ONNX + OpenVINO (~35 s, most of it the fine-tune fixture's model); with --int8 (NNCF, ORT's
    # quantizer) it was checked by hand once: 64 s, nothing written either.
    "export": lambda t, run: ["export", run / "best.pt", "--out", t / "exported"],
}

WRITTEN = {  # what the command was asked to write, so the path that writes the plot or bundle surely ran
    "camera --max-frames": "out.jsonl", "eval (matplotlib's confusion matrix)": "eval/confusion_matrix.png",
    "export": "exported/report.json",
}


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("name", COMMANDS)
def test_an_empty_home_stays_empty(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    run = request.getfixturevalue("tiny_run") if name == "export" else None
    home, cache, work = tmp_path / "home", tmp_path / "cache", tmp_path / "work"
    for folder in (home, cache, work):
        folder.mkdir()
    args = COMMANDS[name](work, run)
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_") and k not in CI_NAMES}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(cache), OMP_NUM_THREADS="2")
    done = subprocess.run([sys.executable, "-m", "edgecnn", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert name not in WRITTEN or (work / WRITTEN[name]).is_file(), _tree(work)
    assert _tree(home) == [], f"{name} wrote into an empty HOME"
    foreign = [p for p in _tree(cache) if p.split(os.sep)[0] not in OWN_CACHE]
    assert foreign == [], f"{name} wrote into XDG_CACHE_HOME beside edgecnn's own cache"
