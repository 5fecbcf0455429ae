"""The review JSON API over real HTTP: a real queue (`ReviewQueue` on frames of the sample clip) served by
a real LiveServer, labelled and discarded with urllib, the files checked on disk."""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from edgecnn.runtime.live.review import ReviewConfig, ReviewQueue
from edgecnn.runtime.live.review_desk import DATA_FOLDER, ReviewDesk, frame_id
from edgecnn.runtime.live.web import LiveServer, ServeAddress
from typer.testing import CliRunner

from tests.runtime.test_review import CUP, update

pytest.importorskip("uvicorn", reason="the web extra is not installed: pip install '.[web]'")
TOKEN = "review-token"
FRAMES = 6


def make_queue(folder: Path, count: int = FRAMES) -> list[Path]:
    """`count` real frames of cup.mp4 queued as the camera queues them (uncertain, top-1 "cup")."""
    video = cv2.VideoCapture(str(CUP))
    images = [video.read()[1] for _ in range(count * 8)][::8]
    video.release()
    config = ReviewConfig(folder, interval=0.0, min_change=0.0, sample=0.0)
    with ReviewQueue(config) as queue:
        for index, image in enumerate(images):
            queue.publish(update(image, index, "uncertain", 0.3 + 0.05 * index))
    jpegs = sorted(folder.glob("*/*/*.jpg"))
    assert len(jpegs) == count
    for age, jpeg in enumerate(reversed(jpegs)):  # frame 0 oldest: sidecar times one second apart
        os.utime(jpeg.with_suffix(".json"), ns=(10**18 - age * 10**9,) * 2)
    return jpegs


@pytest.fixture
def served(tmp_path: Path) -> Any:
    from edgecnn.runtime.live.web_review import review_routes

    review, data = tmp_path / "review", tmp_path / "data"
    make_queue(review)
    desk = ReviewDesk(review, data)
    desk.classes = ("cup", "mug")
    server = LiveServer(ServeAddress("127.0.0.1", 0), source=str(CUP), token=TOKEN, say=lambda m: None,
                        routes=tuple(review_routes(desk)))
    with server:
        yield server, review, data


def call(port: int, path: str, body: Any = None, token: str | None = TOKEN,
         content_type: str = "application/json") -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers["Content-Type"] = content_type
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw, status, kind = response.read(), response.status, response.headers["Content-Type"]
    except urllib.error.HTTPError as error:
        raw, status, kind = error.read(), error.code, error.headers["Content-Type"] or ""
    return status, json.loads(raw) if kind.startswith("application/json") else raw


def listing(port: int, query: str = "") -> dict[str, Any]:
    status, reply = call(port, f"/api/review{query}")
    assert status == 200, reply
    return reply


def files(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


def test_the_listing_is_the_queue_newest_first_with_answer_score_and_reason(served: Any) -> None:
    server, review, _ = served
    reply = listing(server.port)
    frames = reply["frames"]
    assert reply["total"] == len(frames) == FRAMES and reply["classes"] == ["cup", "mug"]
    assert [f["frame"] for f in frames] == list(range(FRAMES - 1, -1, -1))  # newest first
    for item in frames:
        jpeg = next(review.glob(f"cup/cup/*{item['frame']:06d}.jpg"))
        assert item["id"] == frame_id(f"cup/cup/{jpeg.name}")
        assert (item["camera"], item["answer"], item["why"]) == ("cup", "cup", "uncertain")
        assert item["score"] == pytest.approx(0.3 + 0.05 * item["frame"])
        assert item["saved_at"][:2] == "20" and item["top"][0]["label"] == "cup"
    page = listing(server.port, "?offset=2&limit=3")
    assert [f["id"] for f in page["frames"]] == [f["id"] for f in frames[2:5]] and page["total"] == FRAMES
    for bad in ("?limit=201", "?limit=-1", "?offset=x"):
        status, error = call(server.port, f"/api/review{bad}")
        assert status == 400 and "whole number" in error["error"]


def test_a_frame_is_served_as_the_jpeg_on_disk(served: Any) -> None:
    server, review, _ = served
    item = listing(server.port)["frames"][0]
    status, data = call(server.port, f"/api/review/{item['id']}.jpg")
    jpeg = next(review.glob(f"cup/cup/*{item['frame']:06d}.jpg"))
    assert status == 200 and data == jpeg.read_bytes()
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape == (480, 640, 3)


def test_labels_move_frame_and_sidecar_into_the_class_folder(served: Any) -> None:
    server, review, data = served
    frames = listing(server.port)["frames"]
    before = files(review)
    for item, label in zip(frames, ["cup", "none", "  mug shelf ", "café"], strict=False):
        jpeg = next(review.glob(f"cup/cup/*{item['frame']:06d}.jpg"))
        sidecar = jpeg.with_suffix(".json").read_bytes()
        status, reply = call(server.port, f"/api/review/{item['id']}", {"label": label})
        name = label.strip()
        assert status == 200 and reply == {"id": item["id"], "label": name, "file": f"{name}/{jpeg.name}"}
        assert not jpeg.exists() and not jpeg.with_suffix(".json").exists()
        assert (data / name / jpeg.name).stat().st_size > 10_000
        assert (data / name / jpeg.with_suffix(".json").name).read_bytes() == sidecar
    assert sorted(p.name for p in data.iterdir()) == ["café", "cup", "mug shelf", "none"]
    assert len(files(review)) == len(before) - 8 and len(files(data)) == 8  # nothing else, nothing lost
    after = listing(server.port)
    assert after["total"] == FRAMES - 4 and after["classes"] == ["cup", "mug", "café", "mug shelf", "none"]


def test_a_taken_name_is_never_overwritten(served: Any) -> None:
    server, review, data = served
    item = listing(server.port)["frames"][0]
    jpeg = next(review.glob(f"cup/cup/*{item['frame']:06d}.jpg"))
    (data / "cup").mkdir(parents=True)
    (data / "cup" / jpeg.name).write_bytes(b"an earlier photo")
    (data / "cup" / f"{jpeg.stem}-1.json").write_bytes(b"{}")  # a stray sidecar takes -1 too
    status, reply = call(server.port, f"/api/review/{item['id']}", {"label": "cup"})
    assert status == 200 and reply["file"] == f"cup/{jpeg.stem}-2.jpg"
    assert (data / "cup" / jpeg.name).read_bytes() == b"an earlier photo"
    assert (data / "cup" / f"{jpeg.stem}-1.json").read_bytes() == b"{}"
    assert not (data / "cup" / f"{jpeg.stem}-1.jpg").exists()
    assert (data / "cup" / f"{jpeg.stem}-2.json").exists()


def test_two_tabs_answering_one_frame_get_one_200_and_one_409(served: Any) -> None:
    server, review, data = served
    item = listing(server.port)["frames"][0]
    replies: list[tuple[int, Any]] = []
    start = threading.Barrier(2)

    def tab(label: str) -> None:
        start.wait()
        replies.append(call(server.port, f"/api/review/{item['id']}", {"label": label}))

    tabs = [threading.Thread(target=tab, args=(label,)) for label in ("cup", "mug")]
    for thread in tabs:
        thread.start()
    for thread in tabs:
        thread.join()
    statuses = sorted(status for status, _ in replies)
    assert statuses == [200, 409], replies
    won = next(reply for status, reply in replies if status == 200)
    lost = next(reply for status, reply in replies if status == 409)
    assert lost["error"] == (f"frame {item['id']} was labelled {won['label']!r} already (in another tab?); "
                             "reload the queue")
    assert len(files(data)) == 2 and files(data)[0].startswith(won["label"] + "/")  # once, with its sidecar
    status, again = call(server.port, f"/api/review/{item['id']}", {"discard": True})
    assert status == 409 and (data / won["file"]).exists()  # a late discard loses nothing either


def test_discard_deletes_the_frame_and_its_sidecar(served: Any) -> None:
    server, review, data = served
    item = listing(server.port)["frames"][-1]
    jpeg = next(review.glob(f"cup/cup/*{item['frame']:06d}.jpg"))
    status, reply = call(server.port, f"/api/review/{item['id']}", {"discard": True})
    assert status == 200 and reply == {"id": item["id"], "discarded": True}
    assert not jpeg.exists() and not jpeg.with_suffix(".json").exists() and not data.exists()
    assert listing(server.port)["total"] == FRAMES - 1


@pytest.mark.parametrize(("label", "says"), [
    ("../x", "not a usable class name"), ("x/../y", "contains '/'"), ("a/b", "contains '/'"),
    ("a\\b", "contains '\\\\'"),
    ("bell\a", "contains '\\x07'"), ("nul\x00", "contains '\\x00'"), ("", "not a usable class name"),
    ("..", "not a usable class name"), (".hidden", "not a usable class name"),
    ("x" * 101, "101 characters long; use at most 100")])
def test_labels_are_checked_like_class_folder_names(served: Any, label: str, says: str) -> None:
    server, review, data = served
    before = files(review)
    item = listing(server.port)["frames"][0]
    status, reply = call(server.port, f"/api/review/{item['id']}", {"label": label})
    assert status == 400 and says in reply["error"] and reply["error"].startswith("label ")
    assert files(review) == before and not data.exists()


@pytest.mark.parametrize("path", [
    "/api/review/..%2F..%2Foutside", "/api/review/%2Fetc%2Fpasswd", "/api/review/0123456789abcdef%00",
    "/api/review/..", "/api/review/0123456789ABCDEF", "/api/review/0123456789abcdef0",
    "/api/review/cup%2Fcup%2Fx.jpg"])
def test_ids_never_reach_the_file_system(served: Any, path: str) -> None:
    server, review, data = served
    outside = review.parent / "outside"
    outside.write_bytes(b"keep me")
    before = files(review)
    for body in ({"discard": True}, {"label": "cup"}):
        status, reply = call(server.port, path, body)
        assert status in (400, 404, 405), (path, status, reply)
        if status == 400:
            assert "is not a frame id" in reply["error"]
    status, _ = call(server.port, path + ".jpg")
    assert status in (400, 404)
    assert outside.read_bytes() == b"keep me" and files(review) == before and not data.exists()


def test_a_well_formed_id_not_in_the_queue_is_404(served: Any) -> None:
    server, _, _ = served
    status, reply = call(server.port, "/api/review/0123456789abcdef", {"discard": True})
    assert status == 404 and reply["error"].startswith("no frame 0123456789abcdef in the queue")


def test_requests_need_the_token_and_json(served: Any) -> None:
    server, review, data = served
    item = listing(server.port)["frames"][0]
    path = f"/api/review/{item['id']}"
    assert call(server.port, "/api/review", token=None)[0] == 401
    assert call(server.port, path + ".jpg", token="wrong")[0] == 401
    assert call(server.port, path, {"label": "cup"}, token=None)[0] == 401
    assert call(server.port, path, b"label=cup", content_type="application/x-www-form-urlencoded")[0] == 415
    assert call(server.port, path, b"x" * 5000)[0] == 413
    for body in (b"not json", b'{"label": 3}', b'{"discard": false}', b'{"label": "cup", "discard": true}',
                 b"[]"):
        status, reply = call(server.port, path, body)
        assert status == 400 and "discard" in reply["error"], body
    assert not data.exists() and listing(server.port)["total"] == FRAMES
    status, page = call(server.port, "/review", token=None)
    assert status == 401
    status, page = call(server.port, "/review")
    assert status == 200 and b"review queue" in page


def test_labels_cross_file_systems_by_a_synced_copy(tmp_path: Path) -> None:
    shared = Path("/dev/shm")
    if not shared.is_dir() or os.stat(shared).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second file system (/dev/shm) here")
    review = tmp_path / "review"
    jpegs = make_queue(review, 2)
    data = shared / f"edgecnn-review-{os.getpid()}"
    try:
        desk = ReviewDesk(review, data)
        key = frame_id(f"cup/cup/{jpegs[0].name}")
        content = jpegs[0].read_bytes()
        assert desk.label(key, "cup") == {"id": key, "label": "cup", "file": f"cup/{jpegs[0].name}"}
        assert (data / "cup" / jpegs[0].name).read_bytes() == content and not jpegs[0].exists()
        assert sorted(p.name for p in (data / "cup").iterdir()) == [jpegs[0].name,
                                                                   jpegs[0].with_suffix(".json").name]
    finally:
        for path in sorted(data.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        data.rmdir()


def test_data_defaults_to_labelled_inside_the_queue_and_is_never_listed(tmp_path: Path) -> None:
    review = tmp_path / "review"
    jpegs = make_queue(review, 2)
    desk = ReviewDesk(review)
    assert desk.data == review / DATA_FOLDER
    desk.label(frame_id(f"cup/cup/{jpegs[0].name}"), "cup")
    assert (review / DATA_FOLDER / "cup" / jpegs[0].name).exists()
    assert desk.listing()["total"] == 1 and desk.choices() == ["cup"]


def test_camera_refuses_data_without_review_and_serve_or_inside_the_queue(tmp_path: Path) -> None:
    from edgecnn.cli import app

    model = tmp_path / "model.onnx"
    model.write_bytes(b"not reached")
    base = ["camera", str(model), "--source", str(CUP), "--headless"]
    cases = [([*base, "--review", "q", "--data", "d"], "--data goes with --serve [HOST:]PORT"),
             ([*base, "--serve", "0", "--data", "d"], "--data goes with --review DIR"),
             ([*base, "--serve", "0", "--review", str(tmp_path / "q"), "--data", str(tmp_path / "q" / "cup")],
              "is inside the --review queue")]
    for args, says in cases:
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and says in result.output and "Traceback" not in result.output, (
            args, result.output)
