"""A Rich progress display for the export steps (silent with `progress=False`, as in tests)."""

from __future__ import annotations

from types import TracebackType

from edgecnn.runtime.core.errors import raise_if_interrupted


class Steps:
    """Shows the current step and the time spent; a no-op when disabled."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.progress = None
        self.task = None

    def __enter__(self) -> Steps:
        if self.enabled:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                                     transient=True)
            self.progress.start()
            self.task = self.progress.add_task("export", total=None)
        return self

    def say(self, step: str) -> None:
        raise_if_interrupted()  # a Ctrl-C that a library swallowed stops the export here
        if self.progress is not None:
            self.progress.console.print(f"[dim]•[/] {step}", highlight=False)
            self.progress.update(self.task, description=step)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self.progress is not None:
            self.progress.stop()
