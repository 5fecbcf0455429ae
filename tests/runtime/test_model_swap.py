"""A hot model swap in the real camera loop: a new engine offered from another thread mid-run takes over
between two frames (no frame lost, every record saying which model gave it), and the old one is closed."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
from edgecnn.runtime import load
from edgecnn.runtime.core.engine import Engine
from edgecnn.runtime.core.metadata import ModelMeta
from edgecnn.runtime.live.camera import CameraConfig, run_camera
from edgecnn.runtime.live.frames import LiveUpdate, read_jsonl

from tests.runtime.conftest import mean_colour_onnx
from tests.runtime.test_camera import CUP, SlowBackend

OLD_LABELS, NEW_LABELS = ("red", "green", "blue"), ("w", "x", "y", "z")
SWAP_AT, FRAMES = 8, 30


class ClosedBackend(SlowBackend):
    """The engine's own backend, slower by `delay` a batch (frames wait fitted in the source's queue), that
    tells whether it was closed."""

    closed = False

    def close(self) -> None:
        self.closed = True
        super().close()


def watched(model: Path, labels: tuple[str, ...], delay: float) -> Engine:
    engine = load(model, labels=list(labels), mean=(0.5,) * 3, std=(0.5,) * 3)
    return Engine(ClosedBackend(engine._backend, delay), engine.meta, engine.model_path, engine.reason)


class OfferMidway:
    """A sink that, once SWAP_AT results are out, has another thread offer `engine` to the loop."""

    def __init__(self, engine: Any) -> None:
        self.engine, self.loop, self.seen = engine, None, threading.Event()
        self.models: list[str] = []
        self.thread = threading.Thread(target=self._offer)

    def attach(self, loop: Any) -> None:
        self.loop = loop
        self.thread.start()

    def _offer(self) -> None:
        if self.seen.wait(timeout=30):
            self.loop.offer_engine(self.engine)

    def publish(self, update: LiveUpdate) -> None:
        self.models.append(update.record.model)
        if len(self.models) == SWAP_AT:
            self.seen.set()

    def finish(self, stopped_by: str) -> None:
        self.seen.set()
        self.thread.join()


def test_an_offered_engine_takes_over_between_two_frames(tmp_path: Path) -> None:
    # The new model differs in labels, class count and input size: frames fitted for the old one are
    # fitted again, the smoothing starts afresh.
    old = watched(mean_colour_onnx(tmp_path / "old.onnx", np.eye(3)), OLD_LABELS, 0.03)
    new = watched(mean_colour_onnx(tmp_path / "new.onnx", np.ones((3, 4)), size=48), NEW_LABELS, 0.0)
    assert old.input_size != new.input_size and old.meta.version != new.meta.version
    jsonl, messages, sink = tmp_path / "cup.jsonl", [], OfferMidway(new)
    config = CameraConfig(source=CUP, headless=True, max_frames=FRAMES, jsonl=jsonl, top_k=3)
    summary = run_camera(old, config, say=messages.append, sinks=[sink])
    records = read_jsonl(jsonl)
    assert [r.frame for r in records] == list(range(FRAMES)) and summary.frames_processed == FRAMES
    models = [r.model for r in records]
    assert models == sink.models
    swapped = models.index(new.meta.version)
    assert SWAP_AT <= swapped < FRAMES - 5, models
    assert models == [old.meta.version] * swapped + [new.meta.version] * (FRAMES - swapped)
    assert all(r.top[0].label in OLD_LABELS for r in records[:swapped])
    assert all(r.top[0].label in NEW_LABELS and len(r.top) == 3 for r in records[swapped:])
    assert f"model {new.meta.version} is live: {new.describe()}" in messages
    assert old._backend.closed and new._backend.closed  # the old after the swap, the offered one at the end


def test_a_model_version_is_its_export_time_and_metadata_digest() -> None:
    meta = ModelMeta(labels=OLD_LABELS)
    stamped = meta.stamped()
    assert meta.version == ModelMeta(labels=OLD_LABELS).version and len(meta.version) == 12
    assert ModelMeta(labels=NEW_LABELS).version != meta.version
    assert stamped.version.startswith(stamped.created + " ") and stamped.version != meta.version


class ReloadMidway(OfferMidway):
    """As OfferMidway, but through the swapper: loaded, checked and offered on its own thread."""

    def _offer(self) -> None:
        if self.seen.wait(timeout=30):
            self.engine.reload()


def test_a_broken_new_model_is_refused_in_one_line_and_the_old_one_goes_on(tmp_path: Path) -> None:
    from edgecnn.runtime.live.model_swap import ModelSwapper

    old = watched(mean_colour_onnx(tmp_path / "old.onnx", np.eye(3)), OLD_LABELS, 0.03)
    broken = mean_colour_onnx(tmp_path / "new.onnx", np.ones((3, 4)))
    broken.write_bytes(broken.read_bytes()[:40])  # a truncated model file
    messages: list[str] = []
    swapper = ModelSwapper(lambda: watched(broken, NEW_LABELS, 0.0), 3, messages.append)
    sink, jsonl = ReloadMidway(swapper), tmp_path / "cup.jsonl"
    run_camera(old, CameraConfig(source=CUP, headless=True, max_frames=FRAMES, jsonl=jsonl, top_k=3),
               say=messages.append, sinks=[swapper, sink])
    records = read_jsonl(jsonl)
    assert [r.frame for r in records] == list(range(FRAMES))
    assert {r.model for r in records} == {old.meta.version}
    refused = [m for m in messages if m.startswith("new model refused, the old one goes on: ")]
    assert len(refused) == 1 and "\n" not in refused[0] and str(broken) in refused[0], messages


def test_the_swapper_offers_a_good_new_model(tmp_path: Path) -> None:
    from edgecnn.runtime.live.model_swap import ModelSwapper

    old = watched(mean_colour_onnx(tmp_path / "old.onnx", np.eye(3)), OLD_LABELS, 0.03)
    good = mean_colour_onnx(tmp_path / "new.onnx", np.ones((3, 4)))
    loaded: list[Engine] = []
    swapper = ModelSwapper(lambda: loaded.append(watched(good, NEW_LABELS, 0.0)) or loaded[-1], 3, print)
    jsonl = tmp_path / "cup.jsonl"
    run_camera(old, CameraConfig(source=CUP, headless=True, max_frames=FRAMES, jsonl=jsonl, top_k=3),
               say=print, sinks=[swapper, ReloadMidway(swapper)])
    models = [r.model for r in read_jsonl(jsonl)]
    assert models[0] == old.meta.version and models[-1] == loaded[0].meta.version != old.meta.version
    assert old._backend.closed and loaded[0]._backend.closed


def test_a_swapper_readies_every_installed_backend_before_the_run() -> None:
    """A reload to a model on a backend the run had not used would import that library on the swapper's
    thread mid-run, holding the GIL 40-75 ms in one piece (benchmarks/README.md, "Hot model swap")."""
    import subprocess
    import sys

    code = ("import sys\nfrom edgecnn.runtime.live.model_swap import ModelSwapper\n"
            "before = 'onnxruntime' in sys.modules or 'openvino' in sys.modules\n"
            "ModelSwapper(lambda: None, 1, print)\n"
            "print(before, 'onnxruntime' in sys.modules, 'openvino' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          check=True)
    assert done.stdout.split() == ["False", "True", "True"], done.stderr


def test_a_backend_that_fails_to_get_ready_is_left_to_the_swap(monkeypatch) -> None:
    from dataclasses import replace

    from edgecnn.runtime.core.backends import registry

    def broken() -> None:
        raise ImportError("libopenvino.so: cannot open shared object file")

    ready: list[str] = []
    entries = [replace(entry, warm=broken if entry.name == "openvino" else lambda: ready.append("ort"))
               for entry in registry.local()]
    monkeypatch.setattr(registry, "local", lambda: tuple(entries))
    registry.warm_local()  # no error: the reload that needs the library says what is wrong
    assert ready == ["ort"]


def test_the_swapper_sets_the_start_heap_aside_from_the_collector_while_the_run_lasts() -> None:
    """A full cyclic collection of the start's heap held the GIL 15-34 ms, and a reload's allocations made
    one come due mid-swap; frozen at the run's start (attach), given back at its end (finish)."""
    import gc

    from edgecnn.runtime.live.model_swap import ModelSwapper

    swapper = ModelSwapper(lambda: None, 1, print)
    try:
        swapper.attach(None)
        assert gc.get_freeze_count() > 0
    finally:
        swapper.finish("end")
    assert gc.get_freeze_count() == 0


class OfferTwice(OfferMidway):
    """Offers `engine` after SWAP_AT results and `second` after 2 * SWAP_AT; at the end, notes which
    engines the loop still holds."""

    def __init__(self, engine: Any, second: Any) -> None:
        super().__init__(engine)
        self.second, self.again, self.held = second, threading.Event(), []

    def _offer(self) -> None:
        super()._offer()
        if self.again.wait(timeout=30):
            self.loop.offer_engine(self.second)

    def publish(self, update: LiveUpdate) -> None:
        super().publish(update)
        if len(self.models) == 2 * SWAP_AT:
            self.again.set()

    def finish(self, stopped_by: str) -> None:
        self.again.set()
        super().finish(stopped_by)
        self.held = list(self.loop.offered)


def test_a_swapped_out_engine_is_closed_and_let_go(tmp_path: Path) -> None:
    old = watched(mean_colour_onnx(tmp_path / "old.onnx", np.eye(3)), OLD_LABELS, 0.03)
    first = watched(mean_colour_onnx(tmp_path / "first.onnx", np.ones((3, 4))), NEW_LABELS, 0.03)
    second = watched(mean_colour_onnx(tmp_path / "second.onnx", np.eye(3)), OLD_LABELS, 0.0)
    sink = OfferTwice(first, second)
    config = CameraConfig(source=CUP, headless=True, max_frames=FRAMES, top_k=3)
    run_camera(old, config, say=print, sinks=[sink])
    assert first.meta.version in sink.models and sink.models[-1] == second.meta.version
    assert first._backend.closed and [id(engine) for engine in sink.held] == [id(second)]
