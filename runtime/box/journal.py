"""Log lines with their syslog priority when stderr is journald's stream, so `journalctl -p warning`
finds the warnings and errors of a box run as a service.

systemd sets JOURNAL_STREAM=DEV:INODE to the stream it connected stderr to; when stderr's fstat gives the
same pair, stderr is the journal (sd-daemon(3): a line may then start with "<N>", its priority: <3> error,
<4> warning, <6> info, <7> debug). Anywhere else (a terminal, a pipe, a file, stderr redirected by the
service's own command line) nothing is added. The priority is read from how the line starts (`PRIORITIES`,
in order; the first match wins): the CLI's one-line errors and warnings, and the run's lines that say
something went wrong.

    err_console.file = JournalStream()  # edgecnn/cli/render.py: every stderr line of the CLI goes through
"""

from __future__ import annotations

import io
import os
import re
import sys

ERROR, WARNING, INFO, DEBUG = 3, 4, 6, 7
PRIORITIES = (  # how a line starts -> its priority
    (re.compile(r"error:"), ERROR),
    (re.compile(r"warning:|lost |reload refused|new model refused|reload: camera \S+ not started"
                r"|camera \S+: no --jsonl"), WARNING),
    (re.compile(r"debug:"), DEBUG),
)


def journal_stream(stream: object) -> bool:
    """True when `stream` is the journal stream systemd named in $JOURNAL_STREAM (its dev:inode)."""
    named = os.environ.get("JOURNAL_STREAM", "").split(":")
    if len(named) != 2 or not all(part.isdigit() for part in named):
        return False
    try:
        status = os.fstat(stream.fileno())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):  # a captured or closed stream
        return False
    return (status.st_dev, status.st_ino) == (int(named[0]), int(named[1]))


def priority(line: str) -> int:
    return next((level for pattern, level in PRIORITIES if pattern.match(line)), INFO)


class JournalStream:
    """A text stream in front of the current sys.stderr: on the journal each line gets its "<N>" prefix,
    anywhere else the text passes through unchanged (checked on every write: stderr may be swapped)."""

    def __init__(self) -> None:
        self._line_start = True

    def write(self, text: str) -> int:
        target = sys.stderr
        if not journal_stream(target):
            return target.write(text)
        pieces = []
        for piece in text.splitlines(keepends=True):
            pieces.append(f"<{priority(piece)}>{piece}" if self._line_start else piece)
            self._line_start = piece.endswith("\n")
        target.write("".join(pieces))
        return len(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()

    def fileno(self) -> int:
        return sys.stderr.fileno()

    @property
    def encoding(self) -> str:
        return getattr(sys.stderr, "encoding", None) or "utf-8"
