"""`camera`'s hot model swap triggers (issue 28 item 4): SIGHUP (`systemctl reload`, `kill -HUP`), the
page's POST /api/model/reload and the bundle folder replaced on disk (runtime/live/model_watch.py; off with
--no-watch-model) load the model again from its path beside the running one, self-test it and swap it in
between two frames (runtime/live/model_swap.py); a broken new model is said in one line and the old one goes
on answering.

Every other command keeps SIGHUP = Ctrl-C (edgecnn/cli/process.py). Under `edgecnn run` the box's own SIGHUP
handler (re-read the file, edgecnn/cli/box.py) stays; where SIGHUP is ignored (nohup) it stays ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any

from edgecnn.cli.common import load_engine
from edgecnn.cli.render import warn


class CameraLoader:
    """`camera`'s model, self-tested, each time it is called: at start and again for a reload; `watch`
    (the folder watch, None when off) is told what the model's path held just before each read."""

    def __init__(self, model: Path, load: Callable[[], Any], watch: Any) -> None:
        self.model, self.load, self.watch = model, load, watch

    def __call__(self) -> Any:
        if self.watch is not None:
            self.watch.loading(self.model)
        return self.load()


def camera_loader(model: Path, device: str, backend: str, precision: str, threads: int | None,
                  cache_dir: str | None, watch_model: bool = True) -> CameraLoader:
    from edgecnn.runtime.live.camera import camera_engine
    from edgecnn.runtime.live.model_watch import ModelWatch, on_disk

    settings = camera_engine() if threads is None else {"threads": threads}
    watch = ModelWatch(lambda: model) if watch_model and on_disk(model) else None
    return CameraLoader(model, partial(load_engine, model, device, backend, precision, **settings,
                                       cache_dir=cache_dir, selftest=True), watch)


def model_reloads(stack: ExitStack, load: CameraLoader, top_k: int, model: object,
                  sinks: list[Any]) -> list[Any]:
    """The run's ModelSwapper (a sink: the loop attaches itself), reloading on the --serve page's POST
    /api/model/reload (runtime/live/web_model.py; the page is among `sinks`), on the folder watch and on
    SIGHUP while the run lasts; the handler SIGHUP had is put back when `stack` closes. None under `edgecnn
    run`: its SIGHUP reload and watch (runtime/box/reload.py) own the model, which may since be another path
    than `model`."""
    import signal
    import threading

    from edgecnn.runtime.live.camera import CALLER_SINKS
    from edgecnn.runtime.live.model_swap import ModelSwapper

    if CALLER_SINKS.get():
        return []
    swapper = ModelSwapper(load, top_k, warn)  # one line each, however long
    watches = [] if load.watch is None else [load.watch]
    for watch in watches:
        watch.reload = partial(swapper.reload, quiet=True)
    for page in sinks:
        if hasattr(page, "reload_model"):
            page.reload_model = swapper.reload
    hangup = getattr(signal, "SIGHUP", None)
    if (hangup is None or threading.current_thread() is not threading.main_thread()
            or signal.getsignal(hangup) is signal.SIG_IGN):
        return [swapper, *watches]

    def reload(signum: int, frame: Any) -> None:
        swapper.request_reload(f"SIGHUP: loading model {model} again, beside the running one")

    stack.callback(signal.signal, hangup, signal.signal(hangup, reload))
    return [swapper, *watches]
