"""SIGHUP on a real `edgecnn camera` (issue 28 item 4, issue 31 item 6: the service's reload): the model is
loaded again from its path, so an export that replaced the bundle folder is swapped in between two frames and
the run goes on; a broken new bundle is refused in one line and the old model keeps answering. Every other
command keeps SIGHUP = Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from edgecnn.runtime import load

from tests.reliability.conftest import colour_onnx
from tests.runtime.test_box_model_reload import Lines, models_in, new_bundles, wait_until
from tests.runtime.test_box_run import CUP, edgecnn


def hangup_heeded(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`edgecnn ARGS` with SIGHUP at its default, also when the tests run under nohup (the child would
    inherit the ignored SIGHUP and keep it ignored)."""
    ignored = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        return edgecnn(*args, env=env)
    finally:
        signal.signal(signal.SIGHUP, ignored)


def replace_folder(live: Path, new: Path, aside: Path) -> None:
    """What `export --force` does to the live path: the old folder moved away, the new one renamed in."""
    live.rename(aside)
    new.rename(live)


def interrupted(process: subprocess.Popen, out: Lines, err: Lines) -> int:
    """Ctrl-C to the run; its status once both streams are read to the end."""
    process.send_signal(signal.SIGINT)
    code = process.wait(30)
    out.thread.join(10)
    err.thread.join(10)
    return code


def swap_index(out: Lines, old: str, new: str) -> int:
    """Where the run's models went from `old` to `new`; asserts it went once and never back."""
    models = models_in(out)
    swapped = models.index(new)
    assert models == [old] * swapped + [new] * (len(models) - swapped), models
    return swapped


def test_sighup_reloads_the_camera_model_and_a_broken_one_is_refused(tmp_path: Path) -> None:
    live = tmp_path / "bundle"
    colour_onnx(live / "model.onnx")
    new, broken = new_bundles(tmp_path)
    old_version, new_version = (load(b, device="cpu").meta.version for b in (live, new))
    assert old_version != new_version
    process = hangup_heeded("camera", str(live), "--source", str(CUP), "--loop", "--realtime", "--headless",
                            "--device", "cpu", "--jsonl", "-")
    try:
        out, err = Lines(process.stdout), Lines(process.stderr)
        wait_until(lambda: len(models_in(out)) >= 5)
        replace_folder(live, broken, tmp_path / "aside1")
        process.send_signal(signal.SIGHUP)
        refused = err.wait_for(lambda line: line.startswith("new model refused"))
        seen = len(models_in(out))
        wait_until(lambda: len(models_in(out)) >= seen + 5)  # the old model goes on answering
        assert process.poll() is None
        replace_folder(live, new, tmp_path / "aside2")
        process.send_signal(signal.SIGHUP)
        wait_until(lambda: models_in(out)[-5:] == [new_version] * 5)
        assert process.poll() is None  # the run goes on
        assert interrupted(process, out, err) == 130
    finally:
        if process.poll() is None:
            process.kill()
    text = "".join(err.lines)
    assert "Traceback" not in text, text
    assert refused.startswith("new model refused, the old one goes on: ") and "\n" not in refused.rstrip()
    assert str(live) in refused, refused
    assert text.count(f"SIGHUP: loading model {live} again, beside the running one") == 2, text
    assert f"model {new_version} is live" in text
    assert swap_index(out, old_version, new_version) >= seen + 5


def catches_sighup(pid: int) -> bool:
    """Whether the process has a handler on SIGHUP (bit 0 of SigCgt in /proc/PID/status): Python has none
    of its own, so it is the one `edgecnn` puts there once the command started."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught, 16) & 1 << (signal.SIGHUP - 1))


def test_sighup_still_interrupts_other_commands(tmp_path: Path) -> None:
    # bench runs for --seconds: SIGHUP (the terminal closed) ends it as Ctrl-C does, exit 130
    bundle = tmp_path / "bundle"
    colour_onnx(bundle / "model.onnx")
    process = hangup_heeded("bench", str(bundle), "--device", "cpu", "--seconds", "120")
    try:
        out, err = Lines(process.stdout), Lines(process.stderr)
        wait_until(lambda: process.poll() is not None or catches_sighup(process.pid))
        process.send_signal(signal.SIGHUP)
        assert process.wait(60) == 130
        out.thread.join(10)
        err.thread.join(10)
    finally:
        if process.poll() is None:
            process.kill()
    text = "".join(err.lines)
    assert "interrupted" in text and "Traceback" not in text, text


def test_a_reload_asked_before_the_run_started_happens_once_it_does(tmp_path: Path) -> None:
    # a SIGHUP between the model's load and the loop's start: queued, not lost
    import numpy as np
    from edgecnn.runtime.live.camera import CameraConfig, run_camera
    from edgecnn.runtime.live.frames import read_jsonl
    from edgecnn.runtime.live.model_swap import ModelSwapper

    from tests.runtime.conftest import mean_colour_onnx
    from tests.runtime.test_model_swap import FRAMES, NEW_LABELS, OLD_LABELS, watched

    old = watched(mean_colour_onnx(tmp_path / "old.onnx", np.eye(3)), OLD_LABELS, 0.03)
    good = mean_colour_onnx(tmp_path / "new.onnx", np.ones((3, 4)))
    messages: list[str] = []
    swapper = ModelSwapper(lambda: watched(good, NEW_LABELS, 0.0), 3, messages.append)
    swapper.request_reload("asked early")
    jsonl = tmp_path / "cup.jsonl"
    run_camera(old, CameraConfig(source=CUP, headless=True, max_frames=FRAMES, jsonl=jsonl, top_k=3),
               say=messages.append, sinks=[swapper])
    models = [r.model for r in read_jsonl(jsonl)]
    new = models[-1]  # the swap may come before the first frame: the reload starts as the loop does
    assert new != old.meta.version and set(models) == {new} | set(models[:1]), models
    assert messages.count("asked early") == 1, messages
