"""Issue 26 item 5: near-duplicates (frames of one clip) never straddle train and val, and a folder that
is mostly near-duplicates is said to be, on real frames of samples/videos and real sample photos."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

VIDEOS = Path(__file__).resolve().parents[2] / "samples" / "videos"


def frames(clip: Path, starts: list[int], count: int) -> list[list]:
    """`count` consecutive frames from each start frame of `clip`, small."""
    import cv2

    capture = cv2.VideoCapture(str(clip))
    runs = []
    for start in starts:
        capture.set(cv2.CAP_PROP_POS_FRAMES, start)
        runs.append([cv2.resize(capture.read()[1], (160, 120)) for _ in range(count)])
    capture.release()
    return runs


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory: pytest.TempPathFactory, sample_photos: Path) -> Path:
    """cup/: three capture sessions (capture's LABEL-SESSION-FRAME names) of 4 frames; box/: 8 consecutive
    frames with plain names (only their content says they are one clip); fishes/: 6 distinct photos."""
    import cv2

    root = tmp_path_factory.mktemp("clips")
    for folder in ("cup", "box", "fishes"):
        (root / folder).mkdir()
    for session, run in enumerate(frames(VIDEOS / "cup.mp4", [0, 60, 120], 4)):
        for index, frame in enumerate(run):
            cv2.imwrite(str(root / "cup" / f"cup-20261207-12000{session}-{index:06d}.jpg"), frame)
    for index, frame in enumerate(frames(VIDEOS / "box.mp4", [30], 8)[0]):
        cv2.imwrite(str(root / "box" / f"frame{index}.jpg"), frame)
    for photo in sorted((sample_photos / "fishes").iterdir())[:6]:
        shutil.copy(photo, root / "fishes" / photo.name)
    return root


def test_no_group_straddles_train_and_val(clip_folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    from edgecnn.data import scan_folder

    with caplog.at_level(logging.WARNING, logger="edgecnn"):
        split = scan_folder(clip_folder, 0.2, seed=0)
    val = {path for path, _ in split.val}
    sessions = {f"cup-20261207-12000{n}": [p for p, _ in split.train + split.val if f"12000{n}-" in p]
                for n in range(3)}
    for name, members in sessions.items():
        assert len(members) == 4 and len({p in val for p in members}) == 1, (name, members)
    assert sum(all(p in val for p in members) for members in sessions.values()) == 1  # one session held out
    assert not any(p.startswith("box/") for p in val)  # one clip: all in train
    assert 1 <= sum(p.startswith("fishes/") for p in val) <= 2
    assert split.groups == 3 + 1 + 6
    said = [record.getMessage() for record in caplog.records]
    assert any("77% of the images of" in s and "are near-duplicates" in s for s in said), said
    assert any("class box of" in s and "is one group of near-duplicates" in s for s in said), said


def test_distinct_photos_are_split_as_before(sample_photos: Path, caplog: pytest.LogCaptureFixture) -> None:
    """No two sample photos are near-duplicates: every image its own group, the seeded split unchanged."""
    from edgecnn.data import _class_images, scan_folder, stratified_split

    with caplog.at_level(logging.WARNING, logger="edgecnn"):
        split = scan_folder(sample_photos, 0.2, seed=0)
    assert split.groups == len(split.train) + len(split.val) == 121
    scanned = _class_images(sample_photos, sample_photos)[1]
    assert (split.train, split.val) == stratified_split(scanned, 0.2, 0)
    assert not [r for r in caplog.records if "near-duplicates" in r.getMessage()]
