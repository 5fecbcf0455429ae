"""Video sources on real clips and a real (loopback) MJPEG stream: order, drops, reconnects, errors."""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.live import recording
from edgecnn.runtime.live.recording import AtomicVideoWriter
from edgecnn.runtime.live.video import VideoOptions, VideoSource, mask_url, parse_source

ROOT = Path(__file__).resolve().parents[2]
CUP = ROOT / "samples" / "videos" / "cup.mp4"


@pytest.mark.parametrize(("text", "masked"), [
    ("rtsp://user:pass@10.0.0.2:554/live", "rtsp://***@10.0.0.2:554/live"),
    ("http://admin@cam.local/video.mjpg", "http://***@cam.local/video.mjpg"),
    ("error opening rtsp://a:b@h/x and https://c:d@e/f", "error opening rtsp://***@h/x and https://***@e/f"),
    ("http://cam.local/video?user=a", "http://cam.local/video?user=a"),
])
def test_mask_url_hides_credentials(text: str, masked: str) -> None:
    assert mask_url(text) == masked


@pytest.mark.parametrize(("source", "kind", "live"), [
    ("0", "camera", True), (2, "camera", True), ("rtsp://u:p@h/s", "stream", True),
    (str(CUP), "file", False), (str(CUP.parent), "folder", False),
])
def test_parse_source_kinds(source: object, kind: str, live: bool) -> None:
    spec = parse_source(source)
    assert (spec.kind, spec.live) == (kind, live)
    assert "p@" not in spec.name


@pytest.mark.parametrize(("source", "message"), [
    ("missing/clip.mp4", "does not exist"),
    ("ftp://user:secret@host/clip.mp4", "unsupported URL scheme"),
    ("99", "camera 99 cannot be opened"),
    ("http://user:secret@127.0.0.1:9/stream.mjpg", "cannot open stream http://***@127.0.0.1:9"),
])
def test_bad_sources_fail_fast_with_one_line(source: str, message: str) -> None:
    started = time.perf_counter()
    with pytest.raises(EdgecnnError) as error:
        VideoSource(source).start()
    assert message in str(error.value) and "\n" not in str(error.value) and "secret" not in str(error.value)
    assert time.perf_counter() - started < 5.0


def test_file_is_read_frame_by_frame_in_order() -> None:
    with VideoSource(CUP) as source:
        frames = list(iter(source.get, None))
    assert len(frames) == 217 == source.frames_read and source.frames_dropped == 0
    assert [f.index for f in frames] == list(range(217))
    assert frames[0].image.shape == (480, 640, 3)
    assert np.all(np.diff([f.timestamp for f in frames]) > 0)


def test_prepare_runs_on_the_capture_thread_for_files() -> None:
    with VideoSource(CUP, prepare=lambda image: image[::8, ::8].copy()) as source:
        frame = source.get()
    assert frame.prepared is not None and frame.prepared.shape == (60, 80, 3)


def test_realtime_file_drops_stale_frames_for_a_slow_consumer() -> None:
    """At 27 FPS with a consumer taking 150 ms a frame, most frames must be dropped, never queued."""
    interval = 1 / 26.777
    with VideoSource(CUP, VideoOptions(realtime=True)) as source:
        frames, ages = [], []
        for _ in range(8):
            frame = source.get()
            ages.append(time.perf_counter() - frame.captured)
            frames.append(frame)
            time.sleep(0.15)
    indices = [f.index for f in frames]
    assert source.frames_dropped >= 20 and all(b - a >= 3 for a, b in zip(indices, indices[1:], strict=False))
    assert max(ages) < interval + 0.05  # the frame handed out is the newest one, not a queued one


def test_folder_is_a_slideshow_that_skips_broken_images(tmp_path: Path) -> None:
    capture = cv2.VideoCapture(str(CUP))
    for name in ("a.png", "c.jpg"):
        cv2.imwrite(str(tmp_path / name), capture.read()[1])
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg")
    messages: list[str] = []
    with VideoSource(tmp_path, VideoOptions(fps=2.0), say=messages.append) as source:
        frames = list(iter(source.get, None))
    assert [f.timestamp for f in frames] == [0.0, 1.0] and frames[0].image.shape == (480, 640, 3)
    assert any("b.jpg" in m for m in messages)


def test_atomic_writer_renames_a_playable_video(tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    writer = AtomicVideoWriter(out, fps=25.0)
    for i in range(12):
        writer.write(np.full((120, 160, 3), i * 20, np.uint8))
    assert not out.exists() and writer.temp.exists()
    writer.close()
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 12 and capture.get(cv2.CAP_PROP_FPS) == 25.0
    assert not writer.temp.exists()


def decoded_frames(path: Path) -> int:
    """Frames OpenCV decodes back from a video file, counted one by one (not the container's claim)."""
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


@pytest.fixture
def no_pyav(monkeypatch: pytest.MonkeyPatch) -> None:
    """PyAV not installed: `import av` raises ImportError, as it does without the package."""
    monkeypatch.setitem(sys.modules, "av", None)


@pytest.fixture
def no_h264(no_pyav: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No PyAV and an OpenCV build without an H.264 encoder: the probe tries a fourcc no build has."""
    monkeypatch.setattr(recording, "H264_FOURCCS", ("abcd",))
    recording.h264_fourcc.cache_clear()
    yield
    recording.h264_fourcc.cache_clear()  # the next test probes the real build again


def write_clip(writer: AtomicVideoWriter, frames: int = 12) -> None:
    for i in range(frames):
        writer.write(np.full((120, 160, 3), i * 20, np.uint8))
    writer.close()


def test_without_h264_the_video_is_mp4v_with_a_note_and_plays(no_h264: None, tmp_path: Path) -> None:
    notes: list[str] = []
    writer = AtomicVideoWriter(tmp_path / "clip.mp4", fps=25.0, say=notes.append)
    write_clip(writer)
    assert writer.fourcc == "mp4v" and decoded_frames(tmp_path / "clip.mp4") == 12
    assert len(notes) == 1 and "cannot write H.264" in notes[0] and "may not play in a browser" in notes[0]
    assert str(tmp_path / "clip.mp4") in notes[0]


def test_an_h264_encoder_refusing_the_video_falls_back_to_mp4v(no_pyav: None, monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path, capfd: Any) -> None:
    """The probe said yes but this video's writer does not open: mp4v, the note, no FFmpeg noise."""
    monkeypatch.setattr(recording, "h264_fourcc", lambda: "abcd")
    notes: list[str] = []
    writer = AtomicVideoWriter(tmp_path / "clip.mp4", fps=25.0, say=notes.append)
    write_clip(writer, frames=5)
    assert writer.fourcc == "mp4v" and decoded_frames(tmp_path / "clip.mp4") == 5 and len(notes) == 1
    assert capfd.readouterr().err == ""


def test_without_pyav_the_video_is_h264_when_this_opencv_can_write_it(no_pyav: None, tmp_path: Path) -> None:
    fourcc = recording.h264_fourcc()
    if fourcc is None:
        pytest.skip("this OpenCV build has no H.264 encoder (pip's opencv-python wheels bring none)")
    notes: list[str] = []
    writer = AtomicVideoWriter(tmp_path / "clip.mp4", fps=25.0, say=notes.append)
    write_clip(writer)
    capture = cv2.VideoCapture(str(tmp_path / "clip.mp4"))
    codec = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode("ascii", "replace").lower()
    assert writer.fourcc == fourcc and notes == [] and codec in ("avc1", "h264")
    assert decoded_frames(tmp_path / "clip.mp4") == 12


def test_with_pyav_the_video_is_browser_playable_h264_renamed_when_complete(tmp_path: Path) -> None:
    """PyAV's libx264: codec h264 in yuv420p (odd sides cropped even), the index first (+faststart),
    every frame at 1/fps, under a temporary name until close; no note."""
    av = pytest.importorskip("av")
    out, notes = tmp_path / "clip.mp4", []
    writer = AtomicVideoWriter(out, fps=25.0, say=notes.append)
    for i in range(12):
        writer.write(np.full((121, 161, 3), i * 20, np.uint8))
    assert not out.exists() and writer.temp is not None and writer.temp.exists()
    writer.close()
    assert not writer.temp.exists() and notes == [] and writer.fourcc == "avc1"
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
        assert (stream.width, stream.height, len(frames)) == (160, 120, 12)
        assert [round(float(f.time), 3) for f in frames] == [i / 25 for i in range(12)]
    data = out.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # +faststart: a browser plays while it loads


def test_the_codec_probe_prints_nothing(capfd: Any) -> None:
    """Trying an encoder this build lacks makes FFmpeg print to stderr itself; the probe hides that."""
    recording.h264_fourcc.cache_clear()
    recording.h264_fourcc()
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


def test_vid_stride_hands_over_every_nth_frame_with_the_files_numbers() -> None:
    with VideoSource(CUP, VideoOptions(vid_stride=3)) as source:
        frames = list(iter(source.get, None))
    assert [f.index for f in frames] == list(range(0, 217, 3)) and len(frames) == math.ceil(217 / 3)
    assert source.frames_read == 217 and source.frames_skipped == 217 - 73 and source.frames_dropped == 0
    steps = np.diff([f.timestamp for f in frames])
    assert np.allclose(steps, 3 / source.fps, atol=0.002)  # media time of the source's own frames


def test_vid_stride_on_a_folder_skips_files_unread(tmp_path: Path) -> None:
    capture = cv2.VideoCapture(str(CUP))
    for i in range(7):
        cv2.imwrite(str(tmp_path / f"{i}.png"), capture.read()[1])
    with VideoSource(tmp_path, VideoOptions(vid_stride=3)) as source:
        frames = list(iter(source.get, None))
    assert [f.index for f in frames] == [0, 3, 6] and [f.timestamp for f in frames] == [0.0, 3.0, 6.0]


def test_vid_stride_is_ignored_for_a_live_source_with_a_note() -> None:
    messages: list[str] = []
    with (mjpeg_server(frames_per_connection=40, connections=1) as url,
          VideoSource(url, VideoOptions(vid_stride=4), say=messages.append) as source):
        frames = [source.get() for _ in range(5)]
    assert source.frames_skipped == 0 and np.all(np.diff([f.index for f in frames]) > 0)
    assert any("--vid-stride 4 applies to files and folders" in m and "live" in m for m in messages)
    assert not any("secret" in m for m in messages)


@contextmanager
def mjpeg_server(frames_per_connection: int, connections: int) -> Iterator[str]:
    """A loopback MJPEG stream that drops the connection after some frames (a flaky IP camera)."""
    jpegs = [cv2.imencode(".jpg", np.full((96, 128, 3), 40 * i, np.uint8))[1].tobytes() for i in range(6)]
    served = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's name
            served.append(1)
            if len(served) > connections:
                self.send_error(503)
                return
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            for i in range(frames_per_connection):
                jpeg = jpegs[i % len(jpegs)]
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n"
                                 % (len(jpeg), jpeg))
                time.sleep(0.02)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://viewer:secret@127.0.0.1:{server.server_address[1]}/stream.mjpg"
    finally:
        server.shutdown()
        server.server_close()


def test_stream_that_drops_is_reconnected() -> None:
    messages: list[str] = []
    with (mjpeg_server(frames_per_connection=15, connections=3) as url,
          VideoSource(url, VideoOptions(reconnect_timeout=3.0), say=messages.append) as source):
        frames = [source.get() for _ in range(25)]  # more than one connection gives
    assert source.reconnects >= 1 and all(f.image.shape == (96, 128, 3) for f in frames)
    assert any("reconnected" in m for m in messages) and not any("secret" in m for m in messages)


def test_stream_that_stays_down_gives_up_in_time() -> None:
    with mjpeg_server(frames_per_connection=5, connections=1) as url:
        source = VideoSource(url, VideoOptions(reconnect_timeout=1.5, open_timeout=1.0), say=lambda m: None)
        started = time.perf_counter()
        with source, pytest.raises(EdgecnnError, match="could not reconnect within 2 s") as error:
            while source.get() is not None:
                pass
    assert time.perf_counter() - started < 10.0 and "secret" not in str(error.value)


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_loop_starts_a_file_or_folder_again_at_its_end(kind: str, tmp_path: Path) -> None:
    """`--loop`: indices and media time go on counting across passes, so JSONL stays ordered."""
    source = CUP
    if kind == "folder":
        capture = cv2.VideoCapture(str(CUP))
        for name in ("a.png", "b.png", "c.png"):
            cv2.imwrite(str(tmp_path / name), capture.read()[1])
        source = tmp_path
    options = VideoOptions(loop=True, vid_stride=1 if kind == "folder" else 50, fps=5.0)
    with VideoSource(source, options) as video:
        frames = [video.get() for _ in range(12)]
    passes = 3 if kind == "folder" else 5  # 217 frames at stride 50: indices 0, 50, ..., 200 each pass
    assert all(frame is not None for frame in frames)
    assert np.all(np.diff([f.timestamp for f in frames]) > 0)
    assert frames[passes].image.tobytes() == frames[0].image.tobytes()  # the second pass starts over
    assert [f.index for f in frames] == sorted({f.index for f in frames})


def test_loop_on_a_file_with_no_frames_ends_instead_of_spinning(tmp_path: Path) -> None:
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "broken.png").write_bytes(b"not a png")
    started = time.perf_counter()
    with VideoSource(tmp_path / "f", VideoOptions(loop=True, fps=50.0), say=lambda _: None) as video:
        assert video.get() is None
    assert time.perf_counter() - started < 5
