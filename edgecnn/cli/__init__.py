"""The `edgecnn` command: one thin Typer function per command (parse, call the library, print).

`program` holds the app, `process` the exit codes and signals around every command, `render` all that
is drawn on the terminal; `train`, `export`, `files`, `live` and `serving` add their commands. Heavy
libraries (torch, timm, openvino) are imported inside the commands, so `edgecnn --help` and the runtime
commands start fast.
"""

from __future__ import annotations

from edgecnn.cli import box, export, files, live, review, serving, train  # noqa: F401 - each adds its commands to app
from edgecnn.cli.process import run
from edgecnn.cli.program import app, finish
from edgecnn.cli.render import console, err_console

__all__ = ["app", "console", "err_console", "main"]
finish(app)


def main() -> None:  # pragma: no cover - console entry for `edgecnn` and `python -m edgecnn`
    run(app)
