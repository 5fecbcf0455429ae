"""Wrong answers without an error, and interrupts at awkward moments (second pass). Every input is made
here; interrupts are real signals to real `python -m edgecnn` processes."""

from __future__ import annotations

import json
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from edgecnn.runtime.core.metadata import ModelMeta, Preprocess

from tests.reliability.conftest import (
    LABELS,
    assert_user_error,
    colour_onnx,
    left_behind,
    python_cli,
    run_cli,
)
from tests.reliability.test_interruptions import THREADS, _finish, _wait_for


def _red(tmp: Path) -> Path:
    cv2.imwrite(str(tmp / "red.png"), np.full((16, 16, 3), (0, 0, 255), np.uint8))
    return tmp / "red.png"


def _labels(tmp: Path, *names: str) -> Path:
    (tmp / "labels.txt").write_text("\n".join(names) + "\n")
    return tmp / "labels.txt"


def _float_model(tmp: Path) -> Path:
    from onnx import TensorProto

    return colour_onnx(tmp / "float.onnx", labels=(), input_type=TensorProto.FLOAT)


def _meta_model(tmp: Path, **pre: object) -> Path:
    meta = ModelMeta(labels=LABELS, preprocess=Preprocess(input_size=(32, 32), **pre), arch="c")
    return colour_onnx(tmp / "m.onnx", meta=meta.to_json())


Case = Callable[[Path], list[object]]
ANSWERS: dict[str, tuple[Case, tuple[str, ...]]] = {
    "--labels file with a duplicate": (
        lambda t: [
            "predict",
            colour_onnx(t / "m.onnx", labels=()),
            _red(t),
            "--labels",
            _labels(t, "red", "green", "red", "gray"),
        ],
        ("lists 'red' twice (positions 0 and 2)", "every class needs its own label"),
    ),
    "normalize_in_graph false on a uint8 model": (
        lambda t: ["predict", _meta_model(t, normalize_in_graph=False), _red(t)],
        ("takes uint8 pixels but its metadata says normalize_in_graph: false", "wrong probabilities"),
    ),
    "--mean nan for a float model": (
        lambda t: [
            "predict",
            _float_model(t),
            _red(t),
            "--labels",
            _labels(t, *LABELS),
            "--mean",
            "nan,0,0",
            "--std",
            "1,1,1",
        ],
        ("--mean 'nan,0,0' would make every probability NaN",),
    ),
    "--std 0 for a float model": (
        lambda t: [
            "predict",
            _float_model(t),
            _red(t),
            "--labels",
            _labels(t, *LABELS),
            "--mean",
            "0,0,0",
            "--std",
            "0,0,0",
        ],
        ("--std '0,0,0' would make every probability NaN", "three numbers above 0"),
    ),
    "--std inf for a float model": (
        lambda t: [
            "predict",
            _float_model(t),
            _red(t),
            "--labels",
            _labels(t, *LABELS),
            "--mean",
            "0,0,0",
            "--std",
            "inf,1,1",
        ],
        ("--std 'inf,1,1'",),
    ),
}


@pytest.mark.parametrize("name", list(ANSWERS))
def test_wrong_answer_becomes_one_line(name: str, tmp_path: Path) -> None:
    make, words = ANSWERS[name]
    assert_user_error(run_cli(*make(tmp_path), "--device", "cpu"), *words)


def test_class_folder_with_a_newline_is_refused_before_training(two_class_data: Path, tmp_path: Path) -> None:
    """It used to train and write a bundle whose labels.txt then had more lines than classes."""
    data = tmp_path / "data"
    shutil.copytree(two_class_data, data)
    (data / "fishes").rename(data / "fish\nes")
    result = run_cli("finetune", data, "--out", tmp_path / "run", "--head-epochs", "1", "--workers", "0")
    assert_user_error(result, "'fish\\nes' holds a line break", "rename the class folder")
    assert not (tmp_path / "run").exists()


def test_eval_counts_duplicate_labels_never(tmp_path: Path) -> None:
    """With labels red, red, blue, gray a correct 'red' could count as wrong: such a model is refused."""
    model = colour_onnx(tmp_path / "m.onnx", labels=())
    (tmp_path / "data" / "red").mkdir(parents=True)
    _red(tmp_path / "data" / "red")
    result = run_cli(
        "eval",
        model,
        tmp_path / "data",
        "--labels",
        _labels(tmp_path, "red", "red", "blue", "gray"),
        "--out",
        tmp_path / "eval",
        "--device",
        "cpu",
    )
    assert_user_error(result, "lists 'red' twice")
    assert not (tmp_path / "eval").exists()


def test_training_to_nan_stops_in_one_line(two_class_data: Path, tmp_path: Path) -> None:
    """Weights holding NaN (a corrupted state dict) give a NaN loss at once: one line that says so and
    that no best.pt exists, instead of a summary pointing at a best.pt that was never written."""
    import torch

    from edgecnn.models import lite0_imagenet_state_dict

    state = lite0_imagenet_state_dict()  # what --weights takes: the whole ImageNet network
    first = next(k for k, v in state.items() if v.is_floating_point() and v.ndim == 4)
    state[first] = torch.full_like(state[first], float("nan"))
    torch.save(state, tmp_path / "nan.pt")
    result = run_cli(
        "finetune",
        two_class_data,
        "--out",
        tmp_path / "run",
        "--weights",
        tmp_path / "nan.pt",
        "--head-epochs",
        "1",
        "--workers",
        "0",
        "--batch-size",
        "8",
    )
    assert_user_error(
        result, "training diverged in head epoch", "loss nan", "no best.pt was written", "lower --lr"
    )
    assert not (tmp_path / "run" / "best.pt").exists()


# -- interrupts at awkward moments ------------------------------------------------------------------
@pytest.mark.parametrize("gap", [0.02, 0.2])
def test_second_sigterm_during_export_cleanup_exits_130_quietly(
    gap: float, tiny_run: Path, tmp_path: Path
) -> None:
    """docker stop sends SIGTERM; impatient tooling sends another while the clean-up runs."""
    bundle = tmp_path / "bundle"
    process = python_cli("export", tiny_run / "best.pt", "--out", bundle, "--format", "onnx", env=THREADS)
    _wait_for(lambda: any(tmp_path.glob(".bundle.partial-*")), process)
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    for _ in range(3):
        time.sleep(gap)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    code, _, err = _finish(process)
    assert code == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert err.strip().splitlines()[-1] == "interrupted"
    assert not bundle.exists() and not left_behind(tmp_path) and not list(tmp_path.glob(".bundle*"))


def test_sigterm_during_eval_leaves_no_partial_output(
    tiny_bundle: Path, tiny_data: Path, tmp_path: Path
) -> None:
    """Signals at several moments of an eval: never a half-written PNG/JSON or an empty --out."""
    for delay in (1.0, 3.0, 6.0):
        out = tmp_path / f"eval{delay}"
        process = python_cli("eval", tiny_bundle, tiny_data, "--out", out, "--device", "cpu", env=THREADS)
        time.sleep(delay)
        process.send_signal(signal.SIGTERM)
        code, _, err = _finish(process)
        assert code in (0, 130) and "Traceback" not in err, err
        assert not left_behind(tmp_path), left_behind(tmp_path)
        if out.exists():  # finished (or interrupted after writing): every output whole
            assert code == 0 or any(out.iterdir()), "empty --out left behind"
            if (out / "eval.json").exists():
                json.loads((out / "eval.json").read_text())


@pytest.mark.parametrize("delay", [1.0, 3.0])
def test_early_sigterm_in_finetune_says_what_was_kept(
    delay: float, two_class_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    process = python_cli(
        "finetune",
        two_class_data,
        "--out",
        out,
        "--head-epochs",
        "3",
        "--epochs",
        "1",
        "--workers",
        "0",
        env=THREADS,
    )
    time.sleep(delay)
    process.send_signal(signal.SIGTERM)
    code, _, err = _finish(process)
    assert code in (0, 130) and "Traceback" not in err, err
    if code == 0:
        return  # finished before the signal (a fast machine): nothing to check
    last = err.strip().splitlines()[-1]
    if (out / "last.pt").exists():  # training had begun: last.pt says how to go on
        assert last.startswith(f"interrupted: {out / 'last.pt'} holds the ") and "--resume" in last, err
    else:  # still scanning or building: no empty run folder, and the message says nothing was saved
        assert not out.exists() or any(out.iterdir()), "empty run folder left behind"
        assert last in (
            "interrupted",
            "interrupted: before training began, nothing was saved; run the command again",
        ), err
