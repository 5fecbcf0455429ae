"""Ctrl-C and SIGTERM in real processes, unwritable outputs, and two processes sharing a bundle and cache.

- finetune: SIGINT mid-run keeps the last finished epoch; `--resume` ends with the same weights as an
  uninterrupted run with the same seed (CPU, same thread count; compared with a 1e-6 tolerance, and in
  practice bit for bit: the test reports which).
- export: SIGINT or SIGTERM mid-export leaves no bundle and no partial folder; an existing bundle stays.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.reliability.conftest import left_behind, python_cli

THREADS = {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}  # same arithmetic in every run
TRAIN = ("--head-epochs", "1", "--epochs", "4", "--batch-size", "4", "--workers", "0", "--seed", "0")


def _finish(process, timeout: float = 300) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def _wait_for(condition, process, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def _epoch(path: Path) -> int:
    from edgecnn.checkpoint import load_checkpoint

    try:
        return load_checkpoint(path).epoch
    except Exception:  # noqa: BLE001 - not written yet
        return -1


@pytest.fixture(scope="module")
def reference_run(two_class_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run, in its own process like the interrupted one."""
    out = tmp_path_factory.mktemp("reference") / "run"
    code, _, err = _finish(python_cli("finetune", two_class_data, "--out", out, *TRAIN, env=THREADS))
    assert code == 0, err
    return out


def test_sigint_during_finetune_then_resume_gives_the_same_weights(
    reference_run: Path, two_class_data: Path, tmp_path: Path
) -> None:
    import torch

    from edgecnn.checkpoint import load_checkpoint

    out = tmp_path / "run"
    process = python_cli("finetune", two_class_data, "--out", out, *TRAIN, env=THREADS)
    _wait_for(lambda: _epoch(out / "last.pt") >= 2, process)  # the head and one full epoch are done
    process.send_signal(signal.SIGINT)
    code, _, err = _finish(process)
    last = err.strip().splitlines()[-1]
    assert code == 130 and last.startswith("interrupted: ") and "Traceback" not in err, err
    assert last.endswith(f"holds the last finished epoch; continue with: edgecnn finetune --resume {out}")
    saved = load_checkpoint(out / "last.pt").epoch
    assert 2 <= saved < 5 and not left_behind(out)  # the last finished epoch, no temporary files
    code, _, err = _finish(python_cli("finetune", "--resume", out, env=THREADS))
    assert code == 0, err
    for name in ("best.pt", "last.pt"):
        resumed, reference = load_checkpoint(out / name), load_checkpoint(reference_run / name)
        assert resumed.epoch == reference.epoch
        worst = max(
            (resumed.state_dict[k].float() - v.float()).abs().max().item()
            for k, v in reference.state_dict.items()
        )
        assert worst <= 1e-6, f"{name}: weights differ by up to {worst}"
        exact = all(torch.equal(resumed.state_dict[k], v) for k, v in reference.state_dict.items())
        print(
            f"{name}: interrupted after epoch {saved}; resumed weights {'bit-identical' if exact else worst}"
        )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("existing", [False, True])
def test_signal_during_export_leaves_no_partial_bundle(
    signum: int, existing: bool, tiny_run: Path, tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle"
    if existing:  # a previous bundle, replaced with --force: it must survive the interrupted export
        bundle.mkdir()
        (bundle / "report.md").write_text("the previous bundle")
    args = ["export", tiny_run / "best.pt", "--out", bundle, "--format", "onnx"] + (["--force"] * existing)
    process = python_cli(*args, env=THREADS)
    _wait_for(lambda: any(tmp_path.glob(".bundle.partial-*")), process)
    time.sleep(0.5)  # inside the export proper
    process.send_signal(signum)
    code, _, err = _finish(process)
    assert code == 130 and "Traceback" not in err, err
    assert not left_behind(tmp_path) and not list(tmp_path.glob(".bundle*")), list(tmp_path.iterdir())
    if existing:
        assert [p.name for p in bundle.iterdir()] == ["report.md"]
        assert (bundle / "report.md").read_text() == "the previous bundle"
    else:
        assert not bundle.exists()


def test_two_predict_processes_share_a_bundle_and_cache(hand_bundle: Path, tmp_path: Path) -> None:
    """Both compile into the same (empty) OpenVINO cache folder at once; both succeed with the same answer."""
    import cv2
    import numpy as np

    image = tmp_path / "red.png"
    cv2.imwrite(str(image), np.full((40, 40, 3), (0, 0, 255), np.uint8))
    # the default cache, ~/.cache/edgecnn/openvino (the suite's own XDG_CACHE_HOME pointed there too)
    env = {**THREADS, "HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "home" / ".cache")}
    for _ in range(2):  # first with an empty cache (both compile and write), then both reading it
        runs = [
            python_cli(
                "predict", hand_bundle, image, "--backend", "openvino", "--device", "cpu", "--json", env=env
            )
            for _ in range(2)
        ]
        results = [_finish(run, timeout=120) for run in runs]
        assert [code for code, _, _ in results] == [0, 0], [err for _, _, err in results]
        assert results[0][1] == results[1][1] and '"label": "red"' in results[0][1]
    assert any((tmp_path / "home" / ".cache" / "edgecnn" / "openvino").glob("*.blob"))
