"""`python -m edgecnn` (and `torchrun -m edgecnn`) runs the CLI."""

import os
import signal
import sys


def _interrupted_while_starting(signum: int, frame: object) -> None:
    """SIGTERM/Ctrl-C before a command has begun: nothing to clean up yet, so exit 130 at once (the
    command installs its own handler, which cleans up, when it starts)."""
    sys.stderr.write("interrupted\n")
    os._exit(130)


if __name__ == "__main__":  # not when a spawned training process re-imports this module
    for _signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(_signum, _interrupted_while_starting)

from edgecnn.cli import main  # noqa: E402 - after the handlers: importing the CLI takes a while

if __name__ == "__main__":
    main()
