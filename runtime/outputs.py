"""Writing outputs: check the place before the work starts, then write through a temporary name.

The one home of atomic writes (files and whole folders): everything edgecnn writes goes through here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from edgecnn.runtime.errors import EdgecnnError


def check_writable(path: Path, option: str) -> None:
    """EdgecnnError unless `path` (a folder, or a file's place) can be created and written.

    A real probe: as root `os.access` says yes to read-only mounts and /proc.
    """
    folder = Path(path).absolute()
    if folder.is_file():  # an output file being replaced: its folder must take the new copy
        folder = folder.parent
    while not folder.exists():
        folder = folder.parent
    try:
        if not folder.is_dir():
            raise NotADirectoryError(folder)
        Path(tempfile.mkdtemp(dir=folder, prefix=".edgecnn-probe-")).rmdir()
    except OSError as exc:
        raise EdgecnnError(f"cannot write {option} {path}: {folder} is not a writable folder; "
                           f"choose another {option}") from exc


class AtomicPath:
    """A temporary name beside `path` for one output, renamed onto `path` only when it is complete.

    `with AtomicPath(path) as temp:` for a writer that wants a file name (torch.save, onnx.save,
    cv2.imwrite); long-lived writers (video, JSONL) call `commit()` or `discard()` themselves. The
    temporary name keeps the suffix (cv2 and OpenVINO go by it); `also` names companion suffixes that
    are written and renamed with it (".bin" beside an OpenVINO ".xml").
    """

    def __init__(self, path: Path, also: tuple[str, ...] = (), suffix: str | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        suffix = suffix or self.path.suffix
        self.temp = self.path.with_name(f".{self.path.stem}.tmp-{os.getpid()}-{id(self):x}{suffix}")
        self.also = also

    def commit(self) -> Path:
        """Rename the finished temporary file(s) into place; companions first, so the main file is last."""
        for suffix in self.also:
            os.replace(self.temp.with_suffix(suffix), self.path.with_suffix(suffix))
        os.replace(self.temp, self.path)
        return self.path

    def discard(self) -> None:
        for item in (self.temp, *(self.temp.with_suffix(s) for s in self.also)):
            item.unlink(missing_ok=True)

    def __enter__(self) -> Path:
        return self.temp

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            self.commit()
        self.discard()  # after a commit there is nothing left to remove; after an error, the half file


def write_atomic(path: Path, data: bytes) -> Path:
    """Write `data` to `path` through a temporary name: readers never see half a file."""
    with AtomicPath(path) as temp:
        temp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: Path, text: str) -> Path:
    return write_atomic(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_folder(path: Path) -> Iterator[Path]:
    """A temporary folder beside `path` to build a whole folder in (a bundle, a Triton model); swapped
    into place when the block ends without error, removed otherwise. An existing `path` is moved aside
    first and deleted after the swap, so readers see the old folder or the new one, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.partial-"))
    try:
        yield work
        _swap_folder(work, path)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _swap_folder(work: Path, path: Path) -> None:
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(work, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def next_free_folder(root: Path, name: str, exist_ok: bool = False) -> Path:
    """`root/name`, or the first free `root/name2`, `root/name3`... (Ultralytics' run folders).

    An empty folder counts as free; `exist_ok` reuses `root/name` whatever it holds.
    """
    if not name or Path(name).name != name or name in (".", ".."):
        raise EdgecnnError(f"--name {name!r} must be a plain folder name, e.g. --name tour; "
                           "use --out for a path")
    first = Path(root) / name
    if exist_ok:
        return first
    candidate, number = first, 1
    while candidate.exists() and (not candidate.is_dir() or any(candidate.iterdir())):
        number += 1
        candidate = first.with_name(f"{name}{number}")
    return candidate
