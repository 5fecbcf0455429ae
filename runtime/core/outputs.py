"""Writing outputs: check the place before the work starts, then write through a temporary name.

The one home of atomic writes (files and whole folders): everything edgecnn writes goes through here.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from edgecnn.runtime.core.errors import EdgecnnError


def check_output_path(path: Path, option: str, folder: bool = False, replaced: bool = False,
                      suffix: str = "") -> None:
    """EdgecnnError, before any work, for an output path that cannot be one: a broken or looping
    symlink, a folder where a file is wanted (or the reverse), or, for a folder that is replaced
    whole, the current folder or one above it."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise EdgecnnError(f"{option} {path} is a broken or looping symlink; remove it or choose another "
                           f"{option}")
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError) as exc:  # a loop further up the path
        raise EdgecnnError(f"{option} {path} cannot be resolved ({exc}); choose another {option}") from exc
    if replaced and Path.cwd().resolve().is_relative_to(resolved):
        raise EdgecnnError(f"{option} {path} is the current folder or one above it; give a new folder "
                           f"name, e.g. {option} bundles/demo")
    if folder and path.exists() and not path.is_dir():
        raise EdgecnnError(f"{option} {path} exists and is not a folder; choose another {option}")
    if not folder and path.is_dir():
        raise EdgecnnError(f"{option} {path} is a folder; give a file name inside it, e.g. "
                           f"{option} {path / ('out' + suffix)}")


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

    def commit_new(self, names: Iterable[Path]) -> Path:
        """Link the finished file to the first of `names` that does not exist yet: never replaces a file
        (a hard link fails on an existing name, where a rename would overwrite it)."""
        for path in names:
            try:
                os.link(self.temp, path)
                return path
            except FileExistsError:
                continue
        raise FileExistsError(f"no free name for {self.path.name} in {self.path.parent}")

    def discard(self) -> None:
        for item in (self.temp, *(self.temp.with_suffix(s) for s in self.also)):
            item.unlink(missing_ok=True)

    def __enter__(self) -> Path:
        return self.temp

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            self.commit()
        self.discard()  # after a commit there is nothing left to remove; after an error, the half file
def apply_umask(folder: Path) -> None:
    """Give a folder made by `tempfile.mkdtemp` (always 0700) the mode a plain mkdir would have had."""
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    os.chmod(folder, 0o777 & ~mask)


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
        apply_umask(work)  # mkdtemp made it 0700: the folder gets the mode mkdir would give
        _swap_folder(work, path)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def swap_folder(work: Path, path: Path) -> None:
    """Put the finished folder `work` in the place of `path` (a retrained bundle over the live one): the old
    folder moved aside, the new one renamed in, the old one deleted."""
    _swap_folder(Path(work), Path(path))


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


def check_distinct(outputs: dict[str, Path | None], inputs: dict[str, Path | None],
                   replaced: bool = False) -> None:
    """EdgecnnError when an output would overwrite an input or another output (same file or folder:
    resolved paths and inodes compared, so links and `./x` vs `x` are caught), or sits inside an input
    folder; with `replaced` (the output folder is swapped whole) also when it holds an input."""
    seen: list[tuple[str, Path, tuple[int, int] | None, bool]] = []
    for option, path in inputs.items():
        if path is not None:
            seen.append((option, _resolve(path), _inode(path), True))
    for option, path in outputs.items():
        if path is None:
            continue
        resolved, inode = _resolve(path), _inode(path)
        for other, other_path, other_inode, is_input in seen:
            same = resolved == other_path or (inode is not None and inode == other_inode)
            if same and is_input:
                raise EdgecnnError(f"{option} {path} is the {other} itself; writing it would destroy the "
                                   f"input: choose another {option}")
            if same:
                raise EdgecnnError(f"{option} and {other} name the same file {path}; give each its own file")
            if is_input and other_path.is_dir() and resolved.is_relative_to(other_path):
                raise EdgecnnError(f"{option} {path} is inside the {other} folder {inputs[other]}; what is "
                                   f"written there would be read as input: choose another {option}")
            if is_input and replaced and other_path.is_relative_to(resolved):
                raise EdgecnnError(f"{option} {path} holds the {other} {inputs[other]}; replacing the folder "
                                   f"would destroy it: choose another {option}")
        seen.append((option, resolved, inode, False))


def check_not_inputs(outputs: Iterable[Path], inputs: Iterable[Path], option: str) -> None:
    """EdgecnnError when an output file is one of the input files (resolved path or inode, so links and
    `./x` are caught): --force may replace earlier outputs, never what the command reads."""
    given: dict[object, Path] = {}
    for path in inputs:
        given[_resolve(path)] = path
        if (inode := _inode(path)) is not None:
            given[inode] = path
    for path in outputs:
        hit = given.get(_resolve(path)) or given.get(_inode(path))
        if hit is not None:
            raise EdgecnnError(f"{option} would write {path} over the input {hit}, even with --force; "
                               f"choose another {option}")


def _resolve(path: Path | str) -> Path:
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):  # a symlink loop: check_output_path names it
        return Path(path).absolute()


def _inode(path: Path | str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


@contextlib.contextmanager
def output_lock(path: Path, option: str) -> Iterator[None]:
    """Hold an exclusive lock on `path` (a folder being written) for the block; a second writer gets a
    one-line EdgecnnError at once instead of silently replacing the first one's work."""
    import fcntl

    path = Path(path)
    lock = path.with_name(f".{path.name}.lock")
    while True:
        try:  # the lock lives beside the folder it guards, whose parent may not exist yet
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise EdgecnnError(f"cannot write {option} {path}: {exc.strerror or exc}; choose a folder you "
                               "can write to") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise EdgecnnError(f"another edgecnn process is writing {option} {path} right now; wait for it "
                               f"to finish or choose another {option}") from None
        if _inode(lock) == _inode_of(fd):
            break  # the file we locked is still the lock (a finishing writer unlinks it): ours
        os.close(fd)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)  # while still holding it: a waiter sees the inode change and retries
        os.close(fd)


def lock_out(path: Path, option: str) -> contextlib.AbstractContextManager[None]:
    """`output_lock` in the process that writes `path`: under torchrun only rank 0 writes the run
    folder (its other ranks write nothing), so only it takes the lock."""
    return output_lock(path, option) if os.environ.get("RANK", "0") == "0" else contextlib.nullcontext()


def _inode_of(fd: int) -> tuple[int, int]:
    info = os.fstat(fd)
    return info.st_dev, info.st_ino


DISK_RESERVE = 16 * 2**20  # new-file writers stop this far before a full disk: other programs need room too


def write_new(folder: Path, stem: str, suffix: str, data: bytes) -> Path:
    """Write `data` under a name in `folder` that did not exist (STEM.SUFFIX, else STEM-1.SUFFIX, ...).

    Atomic and never replacing (AtomicPath.commit_new). Refuses, before writing, when the disk is almost
    full, so a long capture stops with every file it saved intact.
    """
    free = shutil.disk_usage(folder).free
    if free < len(data) + DISK_RESERVE:
        raise EdgecnnError(f"the disk holding {folder} is almost full ({free // 2**20} MiB free); "
                           "free some space or choose another folder")
    names = (folder / (f"{stem}{suffix}" if n == 0 else f"{stem}-{n}{suffix}") for n in range(1_000_000))
    return publish(folder / f"{stem}{suffix}", lambda temp: temp.write_bytes(data), names,
                   taken=f"no free file name for {stem}{suffix} in {folder}", where=f"into {folder}")


def publish(path: Path, write: Callable[[Path], object], names: Iterable[Path] | None, taken: str,
            where: str = "") -> Path:
    """One file written through a temporary name (`write(temp)`), then renamed onto `path`, or, with
    `names`, linked to the first of them that is free (never replacing). One-line errors: `taken` when
    no name is free (or `path` appeared), the OSError's reason otherwise; the temporary file never stays."""
    target = AtomicPath(path)
    try:
        write(target.temp)
        return target.commit() if names is None else target.commit_new(names)
    except FileExistsError:
        raise EdgecnnError(taken) from None
    except OSError as exc:
        raise EdgecnnError(f"cannot write {where or path}: {exc.strerror or exc}") from exc
    finally:
        target.discard()


DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)  # no space, over a file-size limit, over quota


@contextlib.contextmanager
def disk_full_is_one_line(option: str, path: Path) -> Iterator[None]:
    """A full disk while writing `path` (e.g. deep inside torch.onnx or OpenVINO) as one EdgecnnError line;
    put it outside the atomic write, so the half output is removed before the line is said."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        raise EdgecnnError(f"cannot write {option} {path}: {exc.strerror}; free some space or choose "
                           f"another {option} (the half-written output was removed)") from None
