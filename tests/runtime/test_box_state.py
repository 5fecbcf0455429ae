"""/api/state under a real `edgecnn run` (issue 28 item 7): every camera with its source, its region and
the live model's version; a region changed by SIGHUP shows there once the camera restarts."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest
from edgecnn.runtime.core.metadata import ModelMeta

from tests.runtime.box_files import colour_bundle
from tests.runtime.test_box_run import CUP, TOOLS, box_file, edgecnn, get_json, page_port


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return colour_bundle(tmp_path_factory)


def cameras(port: int, until: Any) -> dict[str, dict[str, Any]]:
    """/api/state's cameras by name, polled until `until` holds (at most ~20 s)."""
    for _ in range(200):
        seen = {c["camera"]: c for c in get_json(port, "/api/state")["cameras"]}
        if until(seen):
            return seen
        time.sleep(0.1)
    raise AssertionError(f"the page never showed the cameras wanted: {seen}")


def test_api_state_lists_every_camera_with_its_region_and_model(bundle: Path, tmp_path: Path) -> None:
    version = ModelMeta.read(bundle / "model.onnx").version
    box = box_file(tmp_path, bundle, extra='realtime = true\nloop = true\n[page]\nserve = "127.0.0.1:0"\n')
    process = edgecnn("run", str(box))
    try:
        port = page_port(process)
        seen = cameras(port, lambda seen: len(seen) == 3 and all(c["results"] for c in seen.values()))
        assert {name: c["region"] for name, c in seen.items()} == {
            "left": [0, 0, 0.5, 1], "right": [320, 0, 320, 480], "slides": None}
        assert {c["model"] for c in seen.values()} == {version} and version
        assert seen["left"]["source"] == f"{CUP} [left]" and seen["slides"]["source"] == str(TOOLS)
        box.write_text(box.read_text().replace("x = 320, y = 0, w = 320, h = 480", "x = 0, y = 240, w = 640, "
                                                                                     "h = 240"))
        process.send_signal(signal.SIGHUP)
        later = cameras(port, lambda seen: seen.get("right", {}).get("region") == [0, 240, 640, 240])
        assert later["left"]["region"] == [0, 0, 0.5, 1] and later["right"]["model"] in (None, version)
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
