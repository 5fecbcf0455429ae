"""Hot model swap: a new model loaded beside the running one on a background thread, self-tested and
checked as `camera` checks it at start, and only then offered to the loop (`CameraLoop.offer_engine`),
which swaps it in between two frames. A model that fails is one line through `say`; the old one goes on.

A `Sink` of the run (the loop hands it itself through `attach`); `reload()` is safe from any thread.

"Frames are never stopped for longer than one inference" (issue 28 item 4): the loader thread shares the
GIL and the cores with the loop, so what it does in one piece holding the GIL stops the loop. Measured
(benchmarks/swap_gil.py; benchmarks/README.md, "Hot model swap"): importing a backend library the run had
not used yet (the GIL held 26-75 ms in one piece), a full cyclic collection come due mid-swap (15-34 ms),
and for OpenVINO the self-test's batch of 4 compiling the model a second time (half the swap's CPU). So
every installed backend library is imported when the swapper is made, before the run's first frame
(registry.warm_local); the heap is set aside from the collector while the run lasts (`attach`); the
self-test runs at the batch size the engine already compiled (selftest.reference_outputs). What is left
holds the GIL in pieces of a few ms (ONNX Runtime's session build, OpenVINO's compile release it) and
shares the cores. Not a lower priority for this thread: the threads a load starts (OpenVINO's inference
streams, ONNX Runtime's pool) keep it for the new model's whole life (measured), and an unprivileged
process cannot raise it back.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable
from typing import Any

from edgecnn.runtime.core.errors import EdgecnnError


class ModelSwapper:
    def __init__(self, load: Callable[[], Any], top_k: int, say: Callable[[str], None]) -> None:
        from edgecnn.runtime.core.backends.registry import warm_local

        self.load, self.top_k, self.say = load, top_k, say  # `load`: a new engine, self-tested (or raises)
        warm_local()  # a backend first imported by a reload would hold the GIL for 26-75 ms mid-run
        self.loop: Any = None
        self.busy = threading.Lock()  # one reload at a time; another asked meanwhile is said and skipped
        self.threads: list[threading.Thread] = []
        self.pending: str | None = None  # asked (request_reload) before the run started: done once it does

    def attach(self, loop: Any) -> None:
        """The run starts: its heap so far (libraries, models, sources) is set aside from the cyclic
        collector until `finish`: a full collection of it held the GIL 15-34 ms, and a reload's
        allocations made one come due mid-swap (benchmarks/README.md, "Hot model swap")."""
        gc.collect()
        gc.freeze()
        self.loop = loop
        if self.pending is not None:
            self._announced(self.pending)
            self.pending = None

    def request_reload(self, announce: str = "") -> None:
        """From a signal handler (SIGHUP): `announce` said and the reload started on the loop's thread between
        two batches, as `edgecnn run`'s reload is (a deque append: no lock or stream a handler could find
        taken; the loop looks at least every 0.1 s). Before the run has started, once it does."""
        loop = self.loop
        if loop is None:
            self.pending = announce
        else:
            loop.request(lambda _loop: self._announced(announce))

    def _announced(self, announce: str) -> None:
        if announce:
            self.say(announce)
        self.reload()

    def reload(self, announce: str = "", quiet: bool = False) -> bool:
        """Start loading the model again in the background (`announce` said first); False when a reload is
        already under way (said, unless `quiet`: the folder watch asks again on its next look)."""
        if not self.busy.acquire(blocking=False):
            if not quiet:
                self.say("model reload already under way; this one is skipped")
            return False
        if announce:
            self.say(announce)
        thread = threading.Thread(target=self._reload, name="edgecnn-model-swap", daemon=True)
        self.threads.append(thread)
        thread.start()
        return True

    def _reload(self) -> None:
        try:
            engine = self.load()
        except EdgecnnError as exc:
            self.say(f"new model refused, the old one goes on: {exc}")
            self.busy.release()
            return
        try:
            if not 1 <= self.top_k <= len(engine.labels):
                raise EdgecnnError(f"it has {len(engine.labels)} classes, fewer than --top-k {self.top_k}")
            loop = self.loop
            if loop is None:
                raise EdgecnnError("the run is over")
            loop.offer_engine(engine)
        except EdgecnnError as exc:
            engine.close()
            self.say(f"new model refused, the old one goes on: {exc}")
        finally:
            self.busy.release()

    def publish(self, update: Any) -> None:
        pass

    def finish(self, stopped_by: str) -> None:
        self.loop = None
        for thread in self.threads:
            thread.join()
        gc.unfreeze()  # back to the collector: what the run left is collected as before
