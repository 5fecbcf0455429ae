"""The `edgecnn` process around a command: option checks, one-line errors, Ctrl-C and SIGTERM, exit codes.

Exit 0 when the work is done, 2 for a user mistake (`EdgecnnError`, one line), 130 after an interrupt
(whatever a library or an atexit hook did with it); a command may exit 1 itself (a failed gate).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import typer

from edgecnn.cli.render import err_console
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.options import check_options
from edgecnn.runtime.core.terminal import printable

F = TypeVar("F", bound=Callable[..., Any])
_STANDALONE = False  # True in the `edgecnn` process itself (main), False when the app is called in-process
_INTERRUPTED_EXIT = False  # a command ended by Ctrl-C or SIGTERM, and said so


def user_errors(func: F) -> F:
    """Print an EdgecnnError as one line and exit 2; Ctrl-C (or SIGTERM) exits 130 without a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        previous = _terminate_like_ctrl_c()
        try:
            check_options(kwargs)  # every float finite, every count in range: before any work
            return func(*args, **kwargs)
        except EdgecnnError as exc:
            print_user_error(exc)
            raise typer.Exit(2) from None
        except KeyboardInterrupt as exc:  # the message, when there is one, says what was kept
            message = f"interrupted: {exc}" if str(exc) else "interrupted"
            err_console.print(printable(message), highlight=False, soft_wrap=True)
            global _INTERRUPTED_EXIT
            _INTERRUPTED_EXIT = True
            raise typer.Exit(130) from None
        finally:
            _restore_signals(previous)

    return wrapper  # type: ignore[return-value]


def print_user_error(message: object) -> None:
    """`error: MESSAGE`, one line on stderr: an EdgecnnError, or a usage slip (hints.py)."""
    err_console.print(f"[bold red]error:[/] {printable(message)}", highlight=False, soft_wrap=True)


def _terminate_like_ctrl_c() -> dict[int, Any]:
    """SIGTERM (kill, docker stop) and SIGHUP (the terminal closed) clean up like Ctrl-C: temporary files
    removed, last epoch kept, a recording finished (`edgecnn run` puts its own SIGHUP handler, a reload, over
    this one while it runs).

    All three also set `interrupted`, so that export stops at its next step even when a library swallowed
    the KeyboardInterrupt. A second signal while that clean-up (or an atexit hook) runs is noted, not
    raised: the clean-up finishes and the exit status stays 130. A signal during an import is raised
    once the import is over: raised inside `import torch` it aborted the process ("terminate called after
    throwing pybind11::error_already_set", 1 of 60 early-interrupted finetunes). Returns the handlers it
    replaced.
    """
    import signal
    import threading

    from edgecnn.runtime.core.errors import interrupt_raised, interrupted

    def interrupt(signum: int, frame: Any) -> None:
        if interrupt_raised.is_set():
            return
        interrupted.set()
        if _importing(frame):
            threading.Timer(0.05, retry, (signum,)).start()
            return
        interrupt_raised.set()
        raise KeyboardInterrupt

    def retry(signum: int) -> None:  # the signal again, in the main thread, if still not raised
        import _thread

        if not interrupt_raised.is_set() and signal.getsignal(signum) is interrupt:
            _thread.interrupt_main(signum)

    interrupted.clear()
    interrupt_raised.clear()
    if threading.current_thread() is not threading.main_thread():
        return {}
    # the terminal closed; only while nobody else handles it (`run`'s reload stays when it calls in here)
    hangup = (signal.SIGHUP,) if getattr(signal, "SIGHUP", None) and signal.getsignal(signal.SIGHUP) in (
        signal.SIG_DFL, None) else ()
    return {signum: signal.signal(signum, interrupt) for signum in (signal.SIGTERM, signal.SIGINT, *hangup)}


def _importing(frame: Any) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _restore_signals(previous: dict[int, Any]) -> None:
    """After a command: the caller's handlers back. After an interrupt the `edgecnn` process itself
    ignores further signals while it exits: Python resets its own handlers to the default at shutdown,
    so a late SIGTERM would otherwise kill it (status 143, not 130) or raise inside an atexit hook."""
    import signal

    if _STANDALONE:  # the work is done or cleaned up: a signal during shutdown must not turn 0/130 into 143
        for signum in previous:
            signal.signal(signum, signal.SIG_IGN)  # SIG_IGN survives Python's shutdown
    else:  # called in-process: the caller's handlers back, also after an interrupt (a later Ctrl-C is theirs)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run(app: typer.Typer) -> NoReturn:  # pragma: no cover - the `edgecnn` process itself
    """Run `app` as the `edgecnn` process: its status is the command's, 130 after an interrupt."""
    global _STANDALONE
    _STANDALONE = True
    import atexit

    from edgecnn.cli.streams import guard_standard_streams

    atexit.register(_exit_130_after_interrupt)  # first registered, so it runs after every other atexit hook
    guard_standard_streams()
    try:
        app(prog_name="edgecnn")
    except SystemExit as done:
        leave(done.code)
    leave(0)


def leave(code: int | str | None) -> NoReturn:  # pragma: no cover - ends the process
    """Exit hooks run, then the process ends without tearing the interpreter down: with torch and timm
    loaded that teardown took 1.7-2 s after every command's work was done (python -c 'import torch,
    timm', 2 cores). When a non-daemon thread is still running, Python's own exit waits for it as usual."""
    import atexit
    import os
    import threading

    if isinstance(code, str):  # what SystemExit does with a message: print it, status 1
        sys.stderr.write(code + "\n")
        code = 1
    code = 130 if _INTERRUPTED_EXIT else int(code or 0)
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if any(t.is_alive() for t in others):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (edgecnn ... | head) or a closed stream
            pass
    os._exit(code)


def _exit_130_after_interrupt() -> None:
    """After an interrupted command, leave with status 130 once the other exit hooks have run.

    CPython exits by SIGINT instead (status -2 to a Python parent, whatever sys.exit said) when a
    KeyboardInterrupt once passed through one of its internal code runners, even one we caught: a SIGTERM
    during `import torch` did so in 5 of 60 runs of an early-interrupted finetune.
    """
    if _INTERRUPTED_EXIT:
        import os

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
