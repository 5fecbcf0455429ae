"""SIGHUP on a real `edgecnn run` whose box file names another model: a broken one is refused in one line and
the old one goes on answering; a good one is loaded beside the old and swapped in between two frames, the
JSONL's `model` field saying which model gave each frame."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from edgecnn.runtime import load

from tests.reliability.conftest import LABELS, colour_onnx
from tests.runtime.box_files import colour_bundle
from tests.runtime.test_box_run import CUP, edgecnn


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return colour_bundle(tmp_path_factory)


def box_text(model: Path) -> str:
    """One camera looping a clip at its own pace, its JSONL on stdout (a file shows at the end)."""
    return (f'model = "{model}"\ndevice = "cpu"\nheadless = true\nrealtime = true\nloop = true\n'
            f'jsonl = "-"\n[[camera]]\nsource = "{CUP}"\nname = "door"\n')


class Lines:
    """A stream of the run, read on a thread so the test can wait for a line while the run goes on."""

    def __init__(self, stream: object) -> None:
        self.lines: list[str] = []
        self.thread = threading.Thread(target=lambda: self.lines.extend(stream), daemon=True)
        self.thread.start()

    def wait_for(self, wanted: Callable[[str], bool], seconds: float = 60) -> str:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = [line for line in list(self.lines) if wanted(line)]
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f"no such line in: {''.join(self.lines)}")


def models_in(out: Lines) -> list[str]:
    """The `model` of every JSONL record the run wrote so far."""
    return [json.loads(line)["model"] for line in list(out.lines) if line.startswith("{")]


def wait_until(check: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def new_bundles(tmp_path: Path) -> tuple[Path, Path]:
    """A good new bundle (other labels: another version) and a broken one (a truncated model file)."""
    new, broken = tmp_path / "new", tmp_path / "broken"
    colour_onnx(new / "model.onnx", labels=tuple(reversed(LABELS)))
    broken.mkdir()
    (broken / "model.onnx").write_bytes((new / "model.onnx").read_bytes()[:40])
    return new, broken


def test_sighup_swaps_in_a_changed_model_and_refuses_a_broken_one(bundle: Path, tmp_path: Path) -> None:
    new, broken = new_bundles(tmp_path)
    old_version, new_version = (load(b, device="cpu").meta.version for b in (bundle, new))
    assert old_version != new_version
    box = tmp_path / "box.toml"
    box.write_text(box_text(bundle))
    process = edgecnn("run", str(box))
    try:
        out, err = Lines(process.stdout), Lines(process.stderr)
        wait_until(lambda: len(models_in(out)) >= 5)
        box.write_text(box_text(broken))
        process.send_signal(signal.SIGHUP)
        refused = err.wait_for(lambda line: line.startswith("new model refused"))
        seen = len(models_in(out))
        wait_until(lambda: len(models_in(out)) >= seen + 5)  # the old model goes on answering
        box.write_text(box_text(new))
        process.send_signal(signal.SIGHUP)
        wait_until(lambda: models_in(out)[-5:] == [new_version] * 5)
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 130
        out.thread.join(10)
        err.thread.join(10)
    finally:
        if process.poll() is None:
            process.kill()
    text = "".join(err.lines)
    assert "Traceback" not in text, text
    assert refused.startswith("new model refused, the old one goes on: ") and str(broken) in refused
    assert f"model {broken}: loading beside the running one" in text  # the reload said what it started
    assert f"model {new_version} is live" in text
    models = models_in(out)
    swapped = models.index(new_version)
    assert swapped >= seen + 5 and models == [old_version] * swapped + [new_version] * (len(models) - swapped)
