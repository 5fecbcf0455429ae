"""The live model watched on disk (issue 28 item 4): when the bundle folder or model file a run loaded is
replaced (`edgecnn export ... --out SAME --force` moves the old folder aside and renames the new one in,
runtime/core/outputs.py `atomic_folder`; a copy may replace its files one by one), the run reloads it through
its ModelSwapper: loaded beside the running model, self-tested, swapped in between two frames.

A small thread looks at the files' (inode, mtime, size) every POLL_S, never the loop. It fires once what it
sees differs from what was loaded and has not changed for one more look: a folder still being copied is
still changing, one between its two renames is missing, and either is waited for. What fired counts as
loaded: a broken bundle is refused once, and tried again only when the folder changes again. A reload
started another way (SIGHUP, the page's POST) counts too, through `loading`. Not for triton:// URLs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

POLL_S = 1.0  # a re-export is picked up within about two looks; a stat of a few files a second costs nothing

Seen = tuple[tuple[str, int, int, int], ...]


def on_disk(path: str | Path) -> bool:
    """Whether `path` names something on disk to watch (a triton:// URL, even as a Path, does not)."""
    from edgecnn.runtime.core.backends.registry import for_location

    return for_location(str(path)) is None


def signature(path: Path) -> Seen | None:
    """(name, inode, mtime, size) of `path` and of every file under it (an OpenVINO .xml: its .bin too);
    None while it is missing or half there (a file vanished between the listing and its stat)."""
    try:
        items = sorted(path.rglob("*")) if path.is_dir() else [path.with_suffix(".bin")] * (
            path.suffix == ".xml")
        return tuple((str(item.relative_to(path.parent)), *_stat(item)) for item in [path, *items])
    except OSError:
        return None


def _stat(item: Path) -> tuple[int, int, int]:
    found = item.stat()
    return found.st_ino, found.st_mtime_ns, found.st_size


class ModelWatch:
    """A `Sink` of the run: the thread starts when the loop does (`attach`) and ends with it (`finish`)."""

    def __init__(self, path: Callable[[], str | Path], reload: Callable[[str], bool] | None = None,
                 interval: float = POLL_S) -> None:
        # `path`: the live model's; `reload(announce)`: the run's ModelSwapper's (set once it exists), False
        # while a reload is under way
        self.path, self.reload, self.interval = path, reload, interval
        self.loaded: tuple[str, Seen | None] | None = None  # what the live (or loading) model was read from
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="edgecnn-model-watch", daemon=True)

    def loading(self, path: str | Path) -> None:
        """A loader calls it just before it reads `path`: what is there now counts as loaded."""
        self.loaded = (str(path), signature(Path(path)))

    def attach(self, loop: Any) -> None:
        if self.loaded is None:
            self.loading(self.path())
        self.thread.start()

    def publish(self, update: Any) -> None:
        pass

    def finish(self, stopped_by: str) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()

    def _watch(self) -> None:
        candidate = None
        while not self.stop.wait(self.interval):
            candidate = self._look(candidate)

    def _look(self, candidate: tuple[str, Seen | None] | None) -> tuple[str, Seen | None] | None:
        """One look: None when nothing is to wait for; what was seen when it must stay so one more look."""
        path = self.path()
        now = (str(path), signature(Path(path))) if on_disk(path) else None
        if now is None or now[1] is None or now == self.loaded or self.reload is None:
            return None
        if now != candidate:  # new, or still changing
            return now
        before, self.loaded = self.loaded, now
        if not self.reload(f"bundle {path} changed on disk: loading it beside the running one"):
            self.loaded = before  # another reload is under way: looked at again next time
            return now
        return None
