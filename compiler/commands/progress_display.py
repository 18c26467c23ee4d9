"""The terminal progress display of `rcc` commands (rich): one line per open stage. Its own module, imported
only when stderr is a terminal, so that commands run from scripts do not pay rich's import at start-up."""

from __future__ import annotations

from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, SpinnerColumn, Task, TextColumn, TimeElapsedColumn
from rich.text import Text


class _Count(ProgressColumn):
    """`done/total` for a stage that knows its size; nothing for one that does not."""

    def render(self, task: Task) -> Text:
        return Text("" if task.total is None else f"{int(task.completed)}/{int(task.total)}", style="green")


class ProgressDisplay:
    """One line per open stage (nested stages indented), removed when the stage ends."""

    def __init__(self, stream: TextIO) -> None:
        # Commands print their results on stdout themselves: the display must not capture it.
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 _Count(), TimeElapsedColumn(), console=Console(file=stream),
                                 transient=True, redirect_stdout=False, redirect_stderr=False)
        self.tasks: list = []

    def start(self, name: str, total: int | None) -> None:
        if not self.tasks:
            self.progress.start()
        self.tasks.append(self.progress.add_task("  " * len(self.tasks) + name, total=total))

    def advance(self, steps: int) -> None:
        if self.tasks:
            self.progress.advance(self.tasks[-1], steps)

    def finish(self, name: str, seconds: float) -> None:
        self.progress.remove_task(self.tasks.pop())
        if not self.tasks:
            self.progress.stop()

    def close(self) -> None:
        self.progress.stop()
