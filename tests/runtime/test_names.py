"""Camera names: derived from each source without its credentials, unique in a run, or given per source
and checked (they name MQTT topics, Home Assistant ids, files and metrics)."""

from __future__ import annotations

import pytest
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.live.names import camera_names


def test_names_come_from_the_sources_without_credentials_and_never_repeat(tmp_path) -> None:
    (tmp_path / "Shelf Left").mkdir()
    sources = ["videos/cup.mp4", "rtsp://admin:s3cret@cam2:554/live?token=abc", "0",
               str(tmp_path / "Shelf Left"), "other/cup.mp4"]
    names = camera_names(sources)
    assert names == ("cup", "cam2-live", "camera0", "shelf-left", "cup-2")
    assert not any("s3cret" in name or "abc" in name for name in names)


def test_given_names_are_checked_one_per_source() -> None:
    assert camera_names(["a.mp4", "b.mp4"], ["door", "shelf_2"]) == ("door", "shelf_2")
    for given, words in ((["door"], "given 1 times for 2 sources"), (["door", "door"], "given twice"),
                         (["door", "Shelf/1"], "is not a camera name")):
        with pytest.raises(EdgecnnError, match=words):
            camera_names(["a.mp4", "b.mp4"], given)
