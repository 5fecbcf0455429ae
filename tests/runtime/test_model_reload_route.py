"""POST /api/model/reload on the live page (issue 28 item 4): a real server answers 202 once a reload
started, 409 while one is under way, 404 without a model to reload, 415 without JSON and 401 without the
token; on a real `camera --serve`, an export that replaced the bundle folder is then swapped in."""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from edgecnn.runtime import load
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.live.model_swap import ModelSwapper
from edgecnn.runtime.live.web import LiveServer, ServeAddress

from tests.reliability.conftest import LABELS, colour_onnx
from tests.runtime.test_box_model_reload import Lines, models_in, wait_until
from tests.runtime.test_box_run import CUP, edgecnn
from tests.runtime.test_camera_sighup import interrupted, replace_folder, swap_index

pytest.importorskip("uvicorn", reason="the web extra is not installed: pip install '.[web]'")
TOKEN = "t0k-reload"


def post(url: str, token: str | None = TOKEN, kind: str = "application/json") -> tuple[int, dict]:
    """POST an empty body to `url`: the status and the JSON answer ({} when it is not JSON)."""
    headers = {"Content-Type": kind} | ({"Authorization": f"Bearer {token}"} if token else {})
    request = urllib.request.Request(url, data=b"", headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        body = refused.read()
        return refused.code, json.loads(body) if body.startswith(b"{") else {}


def test_the_reload_route_starts_one_reload_at_a_time() -> None:
    release, started, said = threading.Event(), threading.Event(), []

    def slow_broken_load() -> None:  # a reload that takes until `release`, then is refused
        started.set()
        release.wait(30)
        raise EdgecnnError("model.onnx is truncated")

    swapper = ModelSwapper(slow_broken_load, 3, said.append)
    with LiveServer(ServeAddress("127.0.0.1", 0), source="cup", token=TOKEN, say=lambda m: None) as server:
        url = f"http://127.0.0.1:{server.port}/api/model/reload"
        assert post(url)[0] == 404  # the run has not offered its model yet
        server.reload_model = swapper.reload
        assert post(url, token=None)[0] == 401 and post(url, token="wrong")[0] == 401
        assert post(url, kind="text/plain")[0] == 415  # what a form on another site could send
        assert post(url) == (202, {"reloading": True})
        assert started.wait(30)
        status, answer = post(url)
        assert status == 409 and answer["reloading"] is False, answer
        release.set()
        swapper.finish("end")  # joins the reload thread: refused, the busy lock given back
        assert post(url) == (202, {"reloading": True})
        swapper.finish("end")
    assert said.count("new model refused, the old one goes on: model.onnx is truncated") == 2, said
    assert said.count("model reload already under way; this one is skipped") == 1, said


def test_the_page_reloads_a_replaced_bundle_in_a_running_camera(tmp_path: Path) -> None:
    live, new = tmp_path / "bundle", tmp_path / "new"
    colour_onnx(live / "model.onnx")
    colour_onnx(new / "model.onnx", labels=tuple(reversed(LABELS)))
    old_version, new_version = (load(b, device="cpu").meta.version for b in (live, new))
    process = edgecnn("camera", str(live), "--source", str(CUP), "--loop", "--headless", "--device", "cpu",
                      "--serve", "127.0.0.1:0", "--token", TOKEN, "--jsonl", "-")
    try:
        out, err = Lines(process.stdout), Lines(process.stderr)
        page = err.wait_for(lambda line: line.startswith("camera page: "))
        port = re.search(r"127\.0\.0\.1:(\d+)/", page)[1]
        wait_until(lambda: len(models_in(out)) >= 5)
        replace_folder(live, new, tmp_path / "aside")
        assert post(f"http://127.0.0.1:{port}/api/model/reload") == (202, {"reloading": True})
        wait_until(lambda: models_in(out)[-5:] == [new_version] * 5)
        assert process.poll() is None  # the run goes on
        assert interrupted(process, out, err) == 130
    finally:
        if process.poll() is None:
            process.kill()
    text = "".join(err.lines)
    assert "Traceback" not in text and f"model {new_version} is live" in text, text
    assert swap_index(out, old_version, new_version) >= 5
