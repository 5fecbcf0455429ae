"""--clips end to end: a real colour model on a slideshow that changes state, real H.264 MP4s from PyAV,
decoded back with PyAV; a full disk (RLIMIT_FSIZE in a child process) drops the clips, the camera ends 0."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.box.test_events import run_slideshow

av = pytest.importorskip("av")

PRE_ROLL = 0.5  # the slideshow runs at 10 fps: 5 frames before the change


def decoded(path: Path) -> tuple[str, float, int]:
    """(codec, seconds from first to last frame, frames) of a clip, read by PyAV."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        times = [float(frame.pts * frame.time_base) for frame in container.decode(stream)]
        return stream.codec_context.name, max(times) - min(times), len(times)


def test_each_event_has_an_h264_clip_that_covers_the_pre_roll(tmp_path: Path) -> None:
    from edgecnn.runtime.box.wiring import EventOptions

    events, clips = tmp_path / "events.jsonl", tmp_path / "clips"
    options = EventOptions(events=events, clips=clips, pre_roll=PRE_ROLL, post_roll=0.5)
    options.check()
    wiring, _ = run_slideshow(tmp_path, options)
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert [e["state"] for e in lines] == ["red", "green", "unknown"]
    names = [e["clip"] for e in lines]
    assert len(set(names)) == 3 and all(name.startswith("shelf-") for name in names)
    assert sorted(p.name for p in clips.iterdir()) == sorted(names)  # no temporary file left
    codec, seconds, frames = decoded(clips / lines[1]["clip"])  # green began at frame 12 (1.2 s)
    assert codec == "h264" and seconds >= PRE_ROLL and frames >= 6
    assert wiring.counts()["clips_written"] == 3 and wiring.counts()["clips_dropped"] == 0
    assert "clips_missing" not in wiring.counts()


# a child camera on a disk that takes 400 bytes a file; `options`: more EventOptions (test_clip_notices.py)
CHILD = """
import resource, signal, sys
from pathlib import Path
sys.path.insert(0, {root!r})
import tests.box.test_events as show
tmp = Path({tmp!r})
model, pictures = show.unknown_colour_onnx(tmp / "bundle" / "model.onnx"), show.slideshow(tmp / "show")
show.unknown_colour_onnx, show.slideshow = (lambda path: model), (lambda path: pictures)  # inputs made first
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (400, 400))
from edgecnn.runtime.box.wiring import EventOptions
wiring, _ = show.run_slideshow(tmp, EventOptions(clips=tmp / "clips", pre_roll=0.5{options}))
print(wiring.counts())
"""


def test_a_full_disk_drops_the_clips_and_the_camera_finishes(tmp_path: Path) -> None:
    root = str(Path(__file__).resolve().parents[2])
    child = subprocess.run([sys.executable, "-c", CHILD.format(root=root, tmp=str(tmp_path), options="")],
                           capture_output=True, text=True, timeout=120, cwd=root)
    assert child.returncode == 0, child.stderr[-2000:]
    counts = eval(child.stdout.strip().splitlines()[-1])  # noqa: S307 - our own child's dict
    assert counts["events"] == 3 and counts["clips_dropped"] == 3 and counts["clips_written"] == 0
    missing = counts["clips_missing"]  # the names the events gave, none of which exists
    assert len(set(missing)) == 3 and all(name.startswith("shelf-") for name in missing), missing
    assert list((tmp_path / "clips").iterdir()) == []  # no temporary or half file left behind


def test_a_clip_waits_for_a_lagging_worker_to_reach_its_change(tmp_path: Path, monkeypatch: Any) -> None:
    """The worker may lag the loop by up to FRAME_QUEUE frames (a loaded machine): a clip begun before the
    worker has buffered its change frame still gets its pre-roll (CI once wrote 0.3 s of a 0.5 s one)."""
    import threading
    from types import SimpleNamespace

    import numpy as np
    from edgecnn.runtime.box.clips import ClipSink
    from edgecnn.runtime.live.events import Event

    gate, taken = threading.Event(), ClipSink._take

    def held_take(self: ClipSink, *args: Any) -> None:
        gate.wait(30)  # the worker stops at the first frame until every frame and the begin are queued
        taken(self, *args)

    monkeypatch.setattr(ClipSink, "_take", held_take)
    sink = ClipSink(tmp_path / "clips", pre_roll=PRE_ROLL, post_roll=0.3)
    image = np.zeros((48, 64, 3), np.uint8)
    for frame in range(30):  # 10 fps; the state changes at frame 20 (2.0 s)
        image[:] = frame * 8
        record = SimpleNamespace(camera="shelf", frame=frame, timestamp=frame / 10)
        sink.publish(SimpleNamespace(image=image.copy(), record=record))
    name = sink.begin(Event("shelf", "green", "red", 0.9, None, "2026-12-07T13:00:00+00:00", 20))
    gate.set()
    sink.close()
    codec, seconds, frames = decoded(tmp_path / "clips" / str(name))
    assert codec == "h264" and seconds >= PRE_ROLL + 0.3 - 1e-6 and frames == 9  # frames 15..23
    assert sink.counts() == {"clips_written": 1, "clips_dropped": 0, "clip_frames_dropped": 0}


def test_the_buffer_cap_keeps_the_newest_frames_and_the_clip_plays_them(tmp_path: Path, monkeypatch: Any
                                                                        ) -> None:
    """--clips-buffer-mb: a cap of 6 I420 frames (64x48: 4608 bytes each) keeps frames 15..20 of a 1 s
    pre-roll before the change at frame 20 (10 fps); the clip starts there, at full colour (I420 kept)."""
    import threading
    from types import SimpleNamespace

    import numpy as np
    from edgecnn.runtime.box.clips import ClipSink
    from edgecnn.runtime.live.events import Event

    gate, taken = threading.Event(), ClipSink._take
    monkeypatch.setattr(ClipSink, "_take", lambda self, *args: (gate.wait(30), taken(self, *args)))
    sink = ClipSink(tmp_path / "clips", pre_roll=1.0, post_roll=0.3, buffer_mb=6 * 4608 / 2**20)
    image = np.zeros((48, 64, 3), np.uint8)
    for frame in range(30):
        image[:] = (0, frame * 8, 255 - frame * 8)  # BGR: red fading to green
        record = SimpleNamespace(camera="shelf", frame=frame, timestamp=frame / 10)
        sink.publish(SimpleNamespace(image=image.copy(), record=record))
    name = sink.begin(Event("shelf", "green", "red", 0.9, None, "2026-12-07T13:00:00+00:00", 20))
    gate.set()
    sink.close()
    with av.open(str(tmp_path / "clips" / str(name))) as container:
        pictures = [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]
    assert len(pictures) == 9  # frames 15..23: the cap dropped 10..14
    first = pictures[0].reshape(-1, 3).mean(axis=0)
    assert np.abs(first - (0, 15 * 8, 255 - 15 * 8)).max() < 6, first  # frame 15's colour, not 10's
    assert len(sink._buffers["shelf"]) <= 6 and sink.counts()["clips_written"] == 1


@pytest.mark.parametrize("height, width", [(480, 640), (482, 640), (481, 641), (1080, 1920), (2, 2),
                                           (50, 3000)])
def test_the_pre_roll_i420_in_strips_is_opencvs_whole_frame_conversion(height: int, width: int) -> None:
    """to_i420 converts in strips (each under OpenCV's thread-pool size): byte for byte OpenCV's one call on
    the frame, an odd row or column cropped; strip ends at rows not a multiple of 4 included."""
    import cv2
    import numpy as np
    from edgecnn.runtime.live.h264 import to_i420

    image = np.random.default_rng(height + width).integers(0, 256, (height, width, 3), np.uint8)
    even = np.ascontiguousarray(image[:height // 2 * 2, :width // 2 * 2])
    assert np.array_equal(to_i420(image), cv2.cvtColor(even, cv2.COLOR_BGR2YUV_I420))


def test_a_clips_buffer_out_of_range_is_one_line(tmp_path: Path) -> None:
    from edgecnn.runtime.box.wiring import EventOptions
    from edgecnn.runtime.core.errors import EdgecnnError

    with pytest.raises(EdgecnnError, match=r"--clips-buffer-mb 0.5 is out of range; give 1 to 4096"):
        EventOptions(clips=tmp_path / "clips", clips_buffer_mb=0.5).check()


def test_a_clip_no_frame_reached_is_dropped_and_named_in_the_summary(tmp_path: Path) -> None:
    """An event of a camera whose frames never reached the worker: its clip is counted dropped and its
    name listed, not silently missing (written + dropped = events that named a clip)."""
    from edgecnn.runtime.box.clips import ClipSink
    from edgecnn.runtime.live.events import Event

    sink = ClipSink(tmp_path / "clips", pre_roll=PRE_ROLL, post_roll=0.3)
    name = sink.begin(Event("door", "green", None, 0.9, None, "2026-12-07T13:00:00+00:00", 20))
    sink.close()
    assert list((tmp_path / "clips").iterdir()) == []
    assert sink.counts() == {"clips_written": 0, "clips_dropped": 1, "clip_frames_dropped": 0,
                             "clips_missing": [name]}



FPS, PRE, POST, LAG = 30, 0.5, 0.2, 9  # 15 frames before the change, 6 after; the event comes 9 frames late


def caught_up(sink: Any, frame: int) -> bool:
    buffer = sink._buffers.get("shelf")
    return bool(buffer) and buffer[-1].frame >= frame


def clip_of_change(sink: Any, change: int, lag: int, gate: Any) -> Path:
    """Frames from 20 before `change` to 15 after it into `sink`, its event begun `lag` frames after the
    change; with `gate` set the worker has caught up with them first, else it waits until the begin."""
    import time
    from types import SimpleNamespace

    import numpy as np
    from edgecnn.runtime.live.events import Event

    image = np.zeros((48, 64, 3), np.uint8)

    def publish(frame: int) -> None:
        image[:] = frame % 256
        sink.publish(SimpleNamespace(image=image.copy(), record=SimpleNamespace(
            camera="shelf", frame=frame, timestamp=frame / FPS)))
        if gate.is_set():  # caught up: the worker takes each frame before the next (the queue never fills)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not caught_up(sink, frame):
                time.sleep(0.002)

    for frame in range(change - 20, change + lag + 1):  # the tracker knows the change at change + lag
        publish(frame)
    name = sink.begin(Event("shelf", "green", "red", 0.9, None, "2026-12-07T13:00:00+00:00", change))
    gate.set()
    for frame in range(change + lag + 1, change + max(lag, 15) + 1):
        publish(frame)
    sink.close()
    return sink.folder / str(name)


@pytest.mark.parametrize("worker", ["caught up", "lagging"])
@pytest.mark.parametrize("change", [40, 70, 118])  # at 1/30 s a frame, each lands a roll's end on a float tie
def test_the_same_rolls_give_the_same_clip_length(tmp_path: Path, monkeypatch: Any, worker: str,
                                                  change: int) -> None:
    """A clip holds change - pre-roll to change + post-roll, whether the worker had caught up with the loop
    when the event came (it already held frames past the post-roll) or lagged behind it; media times at
    30 fps put boundary frames at float ties (they were in or out by 1e-16 s: 8-11 frames, issue 27)."""
    import threading

    from edgecnn.runtime.box.clips import ClipSink

    gate, taken = threading.Event(), ClipSink._take
    monkeypatch.setattr(ClipSink, "_take", lambda self, *args: (gate.wait(30), taken(self, *args)))
    if worker == "caught up":
        gate.set()
    sink = ClipSink(tmp_path / "clips", pre_roll=PRE, post_roll=POST)
    _, seconds, frames = decoded(clip_of_change(sink, change, LAG, gate))
    assert frames == 15 + 1 + 6 and seconds == pytest.approx(PRE + POST, abs=0.002)
    assert sink.counts()["clip_frames_dropped"] == 0


def test_a_long_min_duration_keeps_the_change_buffered(tmp_path: Path) -> None:
    """--min-duration 3: the event comes 3 s (90 frames) after its change, beyond the 2 s CONSENSUS_LAG;
    the wiring's buffer keeps the change and its pre-roll all the same."""
    import threading

    from edgecnn.runtime.box.states import Consensus
    from edgecnn.runtime.box.wiring import EventOptions, event_sinks

    options = EventOptions(clips=tmp_path / "clips", pre_roll=PRE, post_roll=POST,
                           consensus=Consensus(3, 5, 3.0))
    wiring = event_sinks(options, ["shelf"], ["red", "green"])
    gate = threading.Event()
    gate.set()
    _, seconds, frames = decoded(clip_of_change(wiring.clips, 40, 3 * FPS + 2, gate))
    assert frames == 15 + 1 + 6 and seconds == pytest.approx(PRE + POST, abs=0.002)
