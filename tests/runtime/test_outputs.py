"""check_writable: an output place is probed before the work, and replacing a file is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.outputs import check_writable


@pytest.mark.parametrize("make", [
    lambda tmp: tmp / "new.mp4",  # a new file
    lambda tmp: tmp / "a" / "b" / "run",  # folders still to be made
    lambda tmp: (tmp / "old.mp4").write_bytes(b"x") and tmp / "old.mp4",  # a file to replace
    lambda tmp: tmp,  # an existing folder
])
def test_writable_places_pass(make, tmp_path: Path) -> None:
    check_writable(make(tmp_path), "--save")


@pytest.mark.parametrize("make", [
    lambda tmp: (tmp / "plain.txt").write_text("x") and tmp / "plain.txt" / "out.mp4",  # under a file
    lambda tmp: Path("/proc/edgecnn-out.mp4"),  # a folder nobody can write, even root
])
def test_unwritable_places_are_refused(make, tmp_path: Path) -> None:
    with pytest.raises(EdgecnnError, match="cannot write --save"):
        check_writable(make(tmp_path), "--save")


def test_next_free_folder_numbers_like_ultralytics(tmp_path: Path) -> None:
    from edgecnn.runtime.core.outputs import next_free_folder

    assert next_free_folder(tmp_path, "finetune") == tmp_path / "finetune"
    (tmp_path / "finetune").mkdir()  # empty: still free
    assert next_free_folder(tmp_path, "finetune") == tmp_path / "finetune"
    (tmp_path / "finetune" / "best.pt").write_bytes(b"x")
    assert next_free_folder(tmp_path, "finetune") == tmp_path / "finetune2"
    (tmp_path / "finetune2").mkdir()
    (tmp_path / "finetune2" / "best.pt").write_bytes(b"x")
    (tmp_path / "finetune3").write_text("a file, not a folder")
    assert next_free_folder(tmp_path, "finetune") == tmp_path / "finetune4"
    assert next_free_folder(tmp_path, "finetune", exist_ok=True) == tmp_path / "finetune"


@pytest.mark.parametrize("name", ["", "a/b", "..", "."])
def test_next_free_folder_takes_plain_names_only(name: str, tmp_path: Path) -> None:
    from edgecnn.runtime.core.outputs import next_free_folder

    with pytest.raises(EdgecnnError, match="plain folder name"):
        next_free_folder(tmp_path, name)
