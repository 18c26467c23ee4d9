"""What the command line shows while it works: a `rich` progress display of the stages `rcc.ir.progress`
reports (only on an interactive terminal, never with `-q`), and the `--timings` table."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, SpinnerColumn, Task, TextColumn, TimeElapsedColumn
from rich.text import Text

from rcc.ir.progress import ProgressSink, install_sink


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


class Timings:
    """Every stage with its nesting depth and duration, in the order the stages started."""

    def __init__(self) -> None:
        self.entries: list[list] = []  # [depth, name, seconds]
        self.open: list[int] = []

    def start(self, name: str, total: int | None) -> None:
        self.open.append(len(self.entries))
        self.entries.append([len(self.open) - 1, name, None])

    def advance(self, steps: int) -> None:
        pass

    def finish(self, name: str, seconds: float) -> None:
        self.entries[self.open.pop()][2] = seconds

    def close(self) -> None:
        pass

    def format(self) -> str:
        width = max((2 * depth + len(name) for depth, name, _ in self.entries), default=0)
        lines = ["timings:"]
        for depth, name, seconds in self.entries:
            shown = "unfinished" if seconds is None else f"{seconds:9.3f} s"
            lines.append(f"  {('  ' * depth + name).ljust(width)}  {shown}")
        return "\n".join(lines)


class _Both:
    def __init__(self, sinks: list) -> None:
        self.sinks = sinks

    def start(self, name: str, total: int | None) -> None:
        for sink in self.sinks:
            sink.start(name, total)

    def advance(self, steps: int) -> None:
        for sink in self.sinks:
            sink.advance(steps)

    def finish(self, name: str, seconds: float) -> None:
        for sink in self.sinks:
            sink.finish(name, seconds)


@contextmanager
def showing_progress(args: argparse.Namespace, stream: TextIO | None = None) -> Iterator[None]:
    """For the duration of a command: the progress display if `stream` (stderr) is a terminal and
    neither `-q` nor `--print-after-all` was given, and the `--timings` table printed at the end."""
    stream = stream or sys.stderr
    sinks: list = []
    if not args.quiet and not getattr(args, "print_after_all", False) and stream.isatty():
        sinks.append(ProgressDisplay(stream))
    timings = Timings() if args.timings else None
    if timings is not None:
        sinks.append(timings)
    previous: ProgressSink = install_sink(_Both(sinks))
    try:
        yield
    finally:
        install_sink(previous)
        for sink in sinks:
            sink.close()
        if timings is not None:
            print(timings.format(), file=stream)
