"""`camera --save`: browser-playable H.264 through PyAV; OpenCV's writer (mp4v, one note) without `av`."""

from __future__ import annotations

import functools
import resource
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SAMPLE_VIDEOS
from tests.reliability.conftest import left_behind, python_cli, run_cli
from tests.runtime.test_camera import video_codec
from tests.runtime.test_video import decoded_frames


def save(bundle: Path, video: Path) -> object:
    return run_cli("camera", bundle, "--source", SAMPLE_VIDEOS / "cup.mp4", "--headless", "--device", "cpu",
                   "--max-frames", "6", "--save", video)


def test_camera_save_is_h264_through_pyav(hand_bundle: Path, tmp_path: Path) -> None:
    av = pytest.importorskip("av")
    video = tmp_path / "cup.mp4"
    result = save(hand_bundle, video)
    assert result.exit_code == 0, result.output
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
        assert len(list(container.decode(stream))) == 6
    assert "may not play" not in result.output and left_behind(tmp_path) == []


def test_camera_save_without_pyav_falls_back_to_opencv_with_one_note(
        hand_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgecnn.runtime.live.recording import h264_fourcc

    monkeypatch.setitem(sys.modules, "av", None)  # as without the package: `import av` fails
    video = tmp_path / "cup.mp4"
    result = save(hand_bundle, video)
    assert result.exit_code == 0, result.output
    assert decoded_frames(video) == 6
    if h264_fourcc() is None:  # pip's OpenCV: mp4v, said in one line
        said = " ".join(result.output.split())  # the runner's 80 columns may wrap the note
        assert video_codec(video) in ("mp4v", "fmp4") and said.count("pip install av") == 1


def file_limit(limit: int) -> None:
    """In the child: writes past `limit` bytes fail with EFBIG, as on a full disk (SIGXFSZ ignored)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.parametrize(("limit", "frames"), [
    (60_000, 40),  # the frames fit, the index written on close does not
    (200_000, 217),  # a frame's write fails mid-run (the JSONL of every frame, ~71 KB, fits)
])
def test_camera_save_on_a_full_disk_is_one_error_and_no_half_video(hand_bundle: Path, tmp_path: Path,
                                                                    limit: int, frames: int) -> None:
    """ulimit -f during --save: `error: ...`, exit 2, no unplayable .mp4 renamed into place, no temp file
    left, the JSONL of the frames processed kept (issue 31 item 3)."""
    video, jsonl = tmp_path / "cup.mp4", tmp_path / "cup.jsonl"
    process = python_cli("camera", hand_bundle, "--source", SAMPLE_VIDEOS / "cup.mp4", "--headless",
                         "--device", "cpu", "--max-frames", frames, "--save", video, "--jsonl", jsonl,
                         preexec_fn=functools.partial(file_limit, limit))
    out, err = process.communicate(timeout=120)
    errors = [line for line in (out + err).splitlines() if line.startswith("error:")]
    assert process.returncode == 2, out + err
    assert len(errors) == 1 and "--save" in errors[0] and "Traceback" not in out + err, out + err
    assert not video.exists() and left_behind(tmp_path) == []
    assert jsonl.exists() and len(jsonl.read_text().splitlines()) >= 1


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.runtime.test_page import CHROMEDRIVER, CHROMIUM, FLAGS

    if not (Path(CHROMIUM).exists() and CHROMEDRIVER):
        pytest.skip("headless Chromium is not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
                 "--allow-file-access-from-files", "--autoplay-policy=no-user-gesture-required"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def played(browser: Any, video: Path) -> dict[str, Any]:
    """`video` in a <video> element of a file:// page: its readyState, videoWidth and error code."""
    page = video.with_name("play.html")
    page.write_text(f'<video id="v" src="{video.name}" muted autoplay preload="auto"></video>')
    browser.get(page.as_uri())
    state: dict[str, Any] = {}
    for _ in range(100):  # up to 10 s for the decoder; a video it cannot play (mp4v) gets error 4
        state = browser.execute_script(
            "const v = document.getElementById('v');"
            "return {ready: v.readyState, width: v.videoWidth, error: v.error && v.error.code};")
        if state["ready"] >= 2 or state["error"]:
            break
        time.sleep(0.1)
    return state


def test_a_save_recording_plays_in_chromium(hand_bundle: Path, browser: Any, tmp_path: Path) -> None:
    """The --save file in a <video> element: Chromium decodes a frame (readyState >= 2, a width)."""
    pytest.importorskip("av")
    video = tmp_path / "cup.mp4"
    assert save(hand_bundle, video).exit_code == 0
    state = played(browser, video)
    assert state["ready"] >= 2 and state["width"] == 640 and not state["error"], state


def test_a_clips_clip_plays_in_chromium(browser: Any, tmp_path: Path) -> None:
    """An event clip of --clips (the box's slideshow run) plays in Chromium like the --save file."""
    pytest.importorskip("av")
    from edgecnn.runtime.box.wiring import EventOptions

    from tests.box.test_events import run_slideshow

    wiring, _ = run_slideshow(tmp_path, EventOptions(clips=tmp_path / "clips", pre_roll=0.5))
    clips = sorted((tmp_path / "clips").glob("*.mp4"))
    assert clips and wiring.counts()["clips_written"] == len(clips)
    state = played(browser, clips[0])
    assert state["ready"] >= 2 and state["width"] > 0 and not state["error"], state
