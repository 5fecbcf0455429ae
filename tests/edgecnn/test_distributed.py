"""Distributed fine-tuning on CPU: two gloo processes on a few sample photos against one process.

Every job runs in a subprocess with OMP_NUM_THREADS=1 per rank (the test machine has 2 shared cores) and
a wall-clock limit, so a hang fails the test instead of freezing the suite.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgecnn.checkpoint import load_checkpoint
from edgecnn.cli import app
from edgecnn.finetune import OUTPUTS, FinetuneConfig, finetune

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
# 6 photos per class, a third held out: 16 training and 8 validation images
SETTINGS = {"head_epochs": 2, "epochs": 1, "batch_size": 4, "val_split": 0.34, "workers": 0}
LIMIT_S = 240  # per job; a healthy two-process run takes ~15 s here


@pytest.fixture(scope="module")
def six_per_class(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("six_per_class")
    for class_dir in sorted(tiny_data.iterdir()):
        (root / class_dir.name).mkdir()
        for image in sorted(class_dir.iterdir())[:6]:
            shutil.copy(image, root / class_dir.name / image.name)
    return root


def _cli_args(data: Path, out: Path) -> list[str]:
    args = ["finetune", str(data), "--out", str(out), "--dist-timeout", "60"]
    for name, value in SETTINGS.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    return args


def _job(command: list[str], fault: str = "") -> tuple[subprocess.CompletedProcess, float]:
    """One job in a subprocess: exit code, output, and how long it took. With `fault`, the command runs
    through tests/edgecnn/faulty_edgecnn.py, which makes a rank fail at a point ("1:raise:features")."""
    if fault:
        command = [part if part != "edgecnn" else "tests.edgecnn.faulty_edgecnn" for part in command]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EDGECNN_TEST_FAULT": fault}
    began = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=LIMIT_S)
    return done, time.perf_counter() - began


def _edgecnn(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgecnn", *args]


def _metrics(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv") as file:
        return list(csv.DictReader(file))


@pytest.fixture(scope="module")
def one_process_run(six_per_class: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One process without the feature cache: the cache seeds each image's augmented views by its content,
    several processes (which skip the cache) by its index, and this compares the sharding alone."""
    import edgecnn.feature_cache

    out = tmp_path_factory.mktemp("one") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(edgecnn.feature_cache, "open_stores", lambda *args: None)
        finetune(FinetuneConfig(data=six_per_class, out=out, aug_views=2, progress=False, **SETTINGS))
    return out


@pytest.fixture(scope="module")
def two_process_run(six_per_class: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`edgecnn finetune --nproc 2`: two gloo processes through torch's elastic launcher."""
    out = tmp_path_factory.mktemp("two") / "run"
    done, _ = _job(_edgecnn(*_cli_args(six_per_class, out), "--nproc", "2"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("best val top-1") == 1  # rank 0 alone prints the summary
    return out


def test_two_processes_write_one_set_of_outputs(two_process_run: Path) -> None:
    assert sorted(p.name for p in two_process_run.iterdir()) == sorted(OUTPUTS)  # one set, no temp files
    last = load_checkpoint(two_process_run / "last.pt")
    assert last.training_state["world_size"] == 2 and last.epoch == 3
    assert [(row["phase"], row["epoch"]) for row in _metrics(two_process_run)] == [
        ("head", "1"), ("head", "2"), ("full", "3")]


def test_two_processes_match_one(two_process_run: Path, one_process_run: Path) -> None:
    """Head epochs: the same figures (features are sharded and gathered in order, each image's augmented
    views seeded by its index, every rank trains the same head): tolerance 1e-4 on the loss, top-1
    identical. After the full epoch (DDP: per-rank batch 2 and per-rank BatchNorm statistics, a different
    shuffle) validation top-1 within one image of the 8 (0.125) and loss within 0.25."""
    two, one = _metrics(two_process_run), _metrics(one_process_run)
    for row_two, row_one in zip(two[:2], one[:2], strict=True):
        assert float(row_two["val_loss"]) == pytest.approx(float(row_one["val_loss"]), abs=1e-4)
        assert row_two["val_top1"] == row_one["val_top1"]
    assert abs(float(two[2]["val_top1"]) - float(one[2]["val_top1"])) <= 1 / 8 + 1e-9
    assert abs(float(two[2]["val_loss"]) - float(one[2]["val_loss"])) <= 0.25
    assert float(two[2]["val_top1"]) > 0.5  # and it learned: chance is 0.25


def test_failed_process_ends_the_job_with_its_error(six_per_class: Path, tmp_path: Path) -> None:
    """Rank 1 raises while rank 0 waits for its features: the launcher stops rank 0 and reports rank 1."""
    done, seconds = _job(_edgecnn(*_cli_args(six_per_class, tmp_path / "run"), "--nproc", "2"),
                         fault="1:raise:features")
    assert done.returncode == 2, done.stderr[-3000:]
    assert "process 1 of the training job failed" in done.stderr
    assert "rank 1 failed on purpose at features" in done.stderr
    assert seconds < 120


def test_hung_process_times_out_under_torchrun(six_per_class: Path, tmp_path: Path) -> None:
    """Rank 1 hangs; rank 0's gather gives up after --dist-timeout (10 s) and torchrun ends the job."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "edgecnn", *_cli_args(six_per_class, tmp_path / "run"), "--dist-timeout", "10"]
    done, seconds = _job(command, fault="1:hang:features")
    assert done.returncode != 0
    assert "Timed out waiting" in done.stdout + done.stderr, done.stderr[-3000:]
    assert seconds < 120


@pytest.mark.slow
def test_resume_of_a_two_process_run(two_process_run: Path, six_per_class: Path, tmp_path: Path) -> None:
    """Every rank fails as the full phase starts (after the head epochs were saved); `--resume --nproc 2`
    finishes the run with the uninterrupted run's figures (tolerance 1e-5: same processes, same order)."""
    out = tmp_path / "run"
    done, _ = _job(_edgecnn(*_cli_args(six_per_class, out), "--nproc", "2"), fault="*:raise:full")
    assert done.returncode == 2 and load_checkpoint(out / "last.pt").epoch == 2, done.stderr[-3000:]
    done, _ = _job(_edgecnn("finetune", "--resume", str(out), "--nproc", "2"))
    assert done.returncode == 0, done.stderr[-3000:]
    for resumed, reference in zip(_metrics(out), _metrics(two_process_run), strict=True):
        assert float(resumed["val_loss"]) == pytest.approx(float(reference["val_loss"]), abs=1e-5)
        assert resumed["val_top1"] == reference["val_top1"]


@pytest.mark.parametrize(("args", "message"), [
    (["--devices", "0"], "no GPU 0 here"),
    (["--devices", "zero"], "not a list of GPU numbers"),
    (["--nproc", "2", "--batch-size", "5"], "does not split over 2 processes"),
    (["--nproc", "3", "--devices", "0,1"], "one process per GPU"),
])
def test_cli_rejects_bad_launch_options(args: list[str], message: str, six_per_class: Path,
                                        tmp_path: Path) -> None:
    result = runner.invoke(app, ["finetune", str(six_per_class), "--out", str(tmp_path / "run"), *args])
    assert result.exit_code == 2 and message in result.output, result.output
    assert result.output.strip().count("\n") == 0
