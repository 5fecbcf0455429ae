"""The live bundle folder replaced on disk (issue 28 item 4): a real `edgecnn camera` (and `edgecnn run`)
notices it, loads the new model beside the running one and swaps it in; a broken new bundle is refused in
one line, the old model goes on and it is not tried again until the folder changes again. The watch waits
for a folder still being written to stay the same for one more look before it loads it."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from edgecnn.runtime import load
from edgecnn.runtime.core.outputs import atomic_folder
from edgecnn.runtime.live.model_watch import ModelWatch, on_disk

from tests.reliability.conftest import colour_onnx
from tests.runtime.test_box_model_reload import Lines, box_text, models_in, new_bundles, wait_until
from tests.runtime.test_box_run import CUP, edgecnn
from tests.runtime.test_camera_sighup import interrupted

CHANGED = "bundle {} changed on disk: loading it beside the running one"


def exported(live: Path, new: Path) -> None:
    """What `edgecnn export ... --out LIVE --force` does to LIVE: the new bundle built in a folder beside it,
    then swapped in by renames (runtime/core/outputs.py atomic_folder, export/bundle.py's own call)."""
    with atomic_folder(live) as work:
        for item in new.iterdir():
            shutil.copy2(item, work / item.name)


def swapped_in_order(models: list[str], old: str, new: str, after: int) -> bool:
    """Every record the old model's until the swap, past `after` records, then every one the new model's."""
    swapped = models.index(new)
    return swapped >= after and models == [old] * swapped + [new] * (len(models) - swapped)


def watched_run(live: Path, new: Path, broken: Path, process: Any) -> tuple[str, int, list[str]]:
    """Broken bundle exported onto LIVE (refused, the old model goes on, not tried again), then a good one
    (swapped in); the refusal line, the records seen by then and the models of all records."""
    out, err = Lines(process.stdout), Lines(process.stderr)
    wait_until(lambda: len(models_in(out)) >= 5)
    exported(live, broken)
    refused = err.wait_for(lambda line: line.startswith("new model refused"))
    seen = len(models_in(out))
    time.sleep(3)  # three more looks at the refused folder: none may load it again
    wait_until(lambda: len(models_in(out)) >= seen + 5)  # the old model goes on answering
    assert process.poll() is None
    exported(live, new)
    wait_until(lambda: models_in(out)[-5:] == [load(new, device="cpu").meta.version] * 5)
    assert interrupted(process, out, err) == 130
    text = "".join(err.lines)
    assert "Traceback" not in text, text
    assert text.count("new model refused") == 1, text
    assert text.count(CHANGED.format(live)) == 2, text
    return refused, seen, models_in(out)


def test_camera_reloads_a_bundle_folder_exported_over_it(tmp_path: Path) -> None:
    live = tmp_path / "bundle"
    colour_onnx(live / "model.onnx")
    new, broken = new_bundles(tmp_path)
    old_version, new_version = (load(b, device="cpu").meta.version for b in (live, new))
    assert old_version != new_version  # same path, new folder: the runtime reads it again, no cache
    process = edgecnn("camera", str(live), "--source", str(CUP), "--loop", "--realtime", "--headless",
                      "--device", "cpu", "--jsonl", "-")
    try:
        refused, seen, models = watched_run(live, new, broken, process)
    finally:
        if process.poll() is None:
            process.kill()
    assert refused.startswith("new model refused, the old one goes on: ") and str(live) in refused
    assert swapped_in_order(models, old_version, new_version, seen + 5)


def test_run_reloads_the_bundle_its_file_names_when_it_is_exported_over(tmp_path: Path) -> None:
    live = tmp_path / "bundle"
    colour_onnx(live / "model.onnx")
    new, broken = new_bundles(tmp_path)
    old_version, new_version = (load(b, device="cpu").meta.version for b in (live, new))
    box = tmp_path / "box.toml"
    box.write_text(box_text(live))
    process = edgecnn("run", str(box))
    try:
        _, seen, models = watched_run(live, new, broken, process)
    finally:
        if process.poll() is None:
            process.kill()
    assert swapped_in_order(models, old_version, new_version, seen + 5)


def test_no_watch_model_keeps_the_model_it_started_with(tmp_path: Path) -> None:
    live = tmp_path / "bundle"
    colour_onnx(live / "model.onnx")
    new, _ = new_bundles(tmp_path)
    old_version = load(live, device="cpu").meta.version
    process = edgecnn("camera", str(live), "--source", str(CUP), "--loop", "--realtime", "--headless",
                      "--device", "cpu", "--jsonl", "-", "--no-watch-model")
    try:
        out, err = Lines(process.stdout), Lines(process.stderr)
        wait_until(lambda: len(models_in(out)) >= 5)
        exported(live, new)
        time.sleep(3)  # three looks a watch would have taken
        seen = len(models_in(out))
        wait_until(lambda: len(models_in(out)) >= seen + 5)
        assert interrupted(process, out, err) == 130
    finally:
        if process.poll() is None:
            process.kill()
    assert set(models_in(out)) == {old_version}, "".join(err.lines)


class Reloads:
    """The swapper's side of the watch: what it was asked, answering `busy` (a reload under way) or not."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.busy = False

    def __call__(self, announce: str) -> bool:
        self.asked.append(announce)
        return not self.busy


def test_a_folder_still_being_written_is_loaded_only_once_it_stays_the_same(tmp_path: Path) -> None:
    live = tmp_path / "bundle"
    colour_onnx(live / "model.onnx")
    reloads = Reloads()
    watch = ModelWatch(lambda: live, reloads)
    watch.loading(live)
    assert watch._look(None) is None and reloads.asked == []  # nothing changed
    aside = tmp_path / "aside"
    live.rename(aside)
    assert watch._look(None) is None  # between export's two renames: nothing there, waited for
    live.mkdir()
    shutil.copy2(aside / "model.onnx", live / "model.onnx")  # a copy, file by file: not done yet
    seen = watch._look(None)
    (live / "report.json").write_text("{}")
    seen = watch._look(seen)  # it changed since the last look: still waited for
    assert seen is not None and reloads.asked == []
    reloads.busy = True  # a SIGHUP's reload under way: asked again on the next look, not lost
    seen = watch._look(seen)
    assert seen is not None and len(reloads.asked) == 1
    reloads.busy = False
    assert watch._look(seen) is None and reloads.asked[-1] == CHANGED.format(live)
    assert watch._look(None) is None and len(reloads.asked) == 2  # loaded (or refused): not tried again


def test_a_triton_url_is_not_watched() -> None:
    assert not on_disk(Path("triton://127.0.0.1:8000/demo")) and not on_disk("triton://host:1/m")
    assert on_disk(Path("bundles/demo")) and on_disk("model.onnx")
