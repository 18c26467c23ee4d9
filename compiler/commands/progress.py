"""What the command line shows while it works: a `rich` progress display of the stages `rcc.ir.progress`
reports (only on an interactive terminal, never with `-q`), and the `--timings` table."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from rcc.ir.progress import ProgressSink, install_sink


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
        from rcc.compiler.commands.progress_display import ProgressDisplay   # rich: only for a terminal (start-up)

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
