"""Standard output that is closed, full, a broken pipe or ASCII-only: one line or a quiet exit, no traceback.

Unix tools meet these every day (`edgecnn predict ... > /dev/full`, `... | head -1`, `>&-`, a C locale),
and every write of every command goes through sys.stdout, so the rule is kept here once (issue 31):
- stdout closed before the command starts: one `error:` line on stderr, exit 2, before any work;
- a write that fails (a full disk, an I/O error): `EdgecnnError`, which the command turns into one line
  and exit 2 like any other user error;
- a broken pipe (the reader left, as `head` does): the rest of the output is dropped and the command ends
  as it would have, as `ls | head` does;
- an encoding that cannot show a character (PYTHONIOENCODING=ascii with a non-ASCII path): the character
  is written as a backslash escape instead of failing.
"""

from __future__ import annotations

import errno
import io
import os
import sys

from edgecnn.runtime.core.errors import EdgecnnError

_REPLACED: list[io.TextIOWrapper] = []


class _GuardedText(io.TextIOWrapper):
    """sys.stdout whose failed writes become one user error, and whose broken pipe swallows the rest."""

    broken = False

    def write(self, text: str) -> int:
        if self.broken:
            return len(text)
        try:
            return super().write(text)
        except OSError as exc:
            return self._failed(exc, len(text))

    def flush(self) -> None:
        if self.broken:
            return
        try:
            super().flush()
        except OSError as exc:
            self._failed(exc, 0)

    def _failed(self, exc: OSError, size: int) -> int:
        self.broken = True  # nothing more is tried on stdout; an error line goes to stderr
        _drop_pending(self)
        if exc.errno == errno.EPIPE:
            return size
        raise EdgecnnError(f"cannot write to standard output ({exc.strerror or exc}); send it somewhere "
                           "that can take it, e.g. `> out.txt` on a disk with room") from None


def _drop_pending(stream: io.TextIOWrapper) -> None:
    """Point the stream at /dev/null so the text still buffered is not retried at exit."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
    except OSError:
        pass


def guard_standard_streams() -> None:
    """Check and wrap stdout (and make stderr never fail on encoding) before a command runs."""
    try:
        os.fstat(1)
    except OSError:
        sys.stderr.write("error: standard output is closed; give the command somewhere to write, "
                         "e.g. `> out.txt` or `> /dev/null`\n")
        raise SystemExit(2) from None
    stdout = sys.stdout
    if isinstance(stdout, io.TextIOWrapper) and not isinstance(stdout, _GuardedText):
        stdout.flush()
        _REPLACED.append(stdout)  # kept: collecting it would close the buffer both wrappers share
        sys.stdout = _GuardedText(stdout.buffer, encoding=stdout.encoding, errors="backslashreplace",
                                  line_buffering=stdout.line_buffering, write_through=True)
    if isinstance(sys.stderr, io.TextIOWrapper):
        sys.stderr.reconfigure(errors="backslashreplace")
