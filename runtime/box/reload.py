"""SIGHUP for `edgecnn run`: the box file read again and, when valid, its cameras changed in the running
loop without restarting the others: a camera added is started beside them, one removed is stopped, one
whose source or region changed is stopped and started again. A changed `model` (bundle path or triton://
URL) is loaded beside the running one, self-tested and swapped in between two frames (ModelSwapper); one
that fails is refused in one line and the old one goes on. So is the folder (or file) the file names when
it is replaced on disk (runtime/live/model_watch.py; `watch_model = false` turns it off; a box started on
a triton:// URL has no watch). Other changed options (top_k, sinks...) are said and not applied: they need
a restart. A file that is not valid changes nothing.

A `Sink` of the run (the loop hands it itself through `attach`); the SIGHUP handler only queues the
work (`request`), which runs on the loop's thread between two batches (`CameraLoop.request`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgecnn.runtime.box.config import BoxCamera, BoxConfig
from edgecnn.runtime.core.errors import EdgecnnError


class Reloader:
    def __init__(self, box: BoxConfig, say: Callable[[str], None],
                 load_model: Callable[[str], Any] | None = None, watch_model: bool = False) -> None:
        self.box, self.say, self.watch_model = box, say, watch_model
        self.load_model = load_model  # a model name -> its engine, self-tested (or EdgecnnError)
        self.model = box.model  # the live model (a swap's model once it loaded and passed)
        self.wanted = box.model  # the model the last reload asked for
        self.loop: Any = None
        self.swapper: Any = None
        self.watch: Any = None  # the folder watch (ModelWatch) on the model the file names
        self.pending: list[Callable[[], None]] = []

    def attach(self, loop: Any) -> None:
        from edgecnn.runtime.live.model_swap import ModelSwapper

        self.loop = loop
        if self.load_model is not None:
            self.swapper = ModelSwapper(self._load_wanted, loop.config.top_k, self.say)
            self.swapper.attach(loop)
            self._watch(loop)
        for work in self.pending:  # a SIGHUP while the model was loading
            loop.request(lambda running, work=work: work())
        self.pending.clear()

    def request(self, work: Callable[[], None]) -> None:
        """From the SIGHUP handler: `work` runs on the loop's thread between two batches. Only a deque
        append here: a handler that took a lock the interrupted code holds would deadlock."""
        if self.loop is None:
            self.pending.append(work)
        else:
            self.loop.request(lambda running: work())

    def publish(self, update: Any) -> None:
        pass

    def finish(self, stopped_by: str) -> None:
        self.loop = None
        if self.watch is not None:
            self.watch.finish(stopped_by)
        if self.swapper is not None:
            self.swapper.finish(stopped_by)  # a model still loading is waited for, then closed

    def apply(self, new: BoxConfig) -> str:
        """Queue the camera changes from the running file to `new`; what changed, in words."""
        old, loop = self.box, self.loop
        before = {c.name: c for c in old.cameras}
        after = {c.name: c for c in new.cameras}
        changed = sorted(n for n in set(before) & set(after) if _where(before[n]) != _where(after[n]))
        removed = sorted(set(before) - set(after))
        added = [c for c in new.cameras if c.name not in before]
        options = sorted(k for k in set(old.options) | set(new.options)
                         if old.options.get(k) != new.options.get(k))
        swapping = new.model != self.model and self.swapper is not None
        options = (["model"] if new.model != self.model and not swapping else []) + options
        self.box = BoxConfig(new.path, old.model, old.options, new.cameras)  # options: still the old ones
        if loop is not None and (changed or removed or added):  # on the loop's thread (`request`)
            self._change(loop, removed + changed, [after[n] for n in changed] + added)
        if swapping:
            self.wanted = new.model
            self.swapper.reload()  # loads on its own thread; the cameras go on meanwhile
        return "; ".join(part for part in (
            _listed("cameras added", [c.name for c in added]), _listed("removed", removed),
            _listed("restarted (source or region changed)", changed),
            f"model {new.model}: loading beside the running one" if swapping else "",
            _listed("not applied until a restart: options changed", options)) if part)

    def _load_wanted(self) -> Any:
        """On the swapper's thread: the model the file names now, loaded and self-tested; `model` is it
        once it passed, so a refused one is tried again on the next SIGHUP."""
        wanted, top_k = self.wanted, self.swapper.top_k
        if self.watch is not None:
            self.watch.loading(wanted)
        engine = self.load_model(wanted)
        if not 1 <= top_k <= len(engine.labels):
            engine.close()
            raise EdgecnnError(f"{wanted} has {len(engine.labels)} classes, fewer than top_k {top_k}")
        self.model = wanted
        return engine

    def _watch(self, loop: Any) -> None:
        from functools import partial

        from edgecnn.runtime.live.model_watch import ModelWatch, on_disk

        if self.watch_model and on_disk(self.wanted):  # after a SIGHUP to a triton:// URL it looks at none
            self.watch = ModelWatch(lambda: self.wanted, partial(self.swapper.reload, quiet=True))
            self.watch.attach(loop)

    def _change(self, loop: Any, stop: list[str], start: list[BoxCamera]) -> None:
        from edgecnn.runtime.live.regions import Region

        for name in stop:
            loop.remove_camera(name)
        for camera in start:
            try:
                loop.add_camera(camera.source, camera.name, Region.parse(camera.region))
            except EdgecnnError as exc:
                self.say(f"reload: camera {camera.name} not started: {exc}")
                continue
            self.say(f"reload: camera {camera.name} started ({camera.source})")
        for sink in loop.sinks:
            health = getattr(sink, "health", None)
            if health is not None:
                health.forget(stop)
                health.expect([c.name for c in start], {c.name: Region.parse(c.region) for c in start})


def _where(camera: BoxCamera) -> tuple[str, str]:
    return camera.source, camera.region


def _listed(what: str, names: list[str]) -> str:
    return f"{what}: {', '.join(names)}" if names else ""
