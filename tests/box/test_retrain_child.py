"""A retrain's child process that hangs ends the job with one line naming its kept log, which holds the
child's stacks (faulthandler on SIGABRT); one that fails keeps its log too. Real child processes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from edgecnn.runtime.box import retrain
from edgecnn.runtime.core.errors import EdgecnnError

HANG = "import time\ndef waiting_for_nothing():\n    time.sleep(60)\nwaiting_for_nothing()\n"


def work_folder(tmp_path: Path) -> Path:
    work = tmp_path / ".live.retrain-abc123"  # as `retrain` names it: beside the live bundle
    work.mkdir()
    return work


def test_a_hung_child_is_stopped_and_its_stacks_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retrain, "CHILD_TIMEOUT_S", 2.0)
    monkeypatch.setattr(retrain, "child_command", lambda args: [sys.executable, "-c", HANG])
    with pytest.raises(EdgecnnError) as caught:
        retrain._child(["finetune"], work_folder(tmp_path) / "finetune.log", "fine-tune")
    kept = tmp_path / ".live.retrain-finetune.log"
    assert str(caught.value) == (f"the retrain's fine-tune gave no result in 2 s and was stopped; its output "
                                 f"and stacks: {kept}; the live bundle is untouched")
    stacks = kept.read_text()
    assert "Fatal Python error: Aborted" in stacks and "waiting_for_nothing" in stacks, stacks


def test_a_failed_child_names_its_last_error_line_and_keeps_its_log(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    script = "print('loading'); print('error: no such class folder'); raise SystemExit(2)"
    monkeypatch.setattr(retrain, "child_command", lambda args: [sys.executable, "-c", script])
    with pytest.raises(EdgecnnError, match=r"the retrain's export failed \(exit 2\): error: no such class "
                                           r"folder; its output: .*\.live\.retrain-export\.log;"):
        retrain._child(["export"], work_folder(tmp_path) / "export.log", "export")
    assert (tmp_path / ".live.retrain-export.log").read_text().splitlines() == [
        "loading", "error: no such class folder"]
