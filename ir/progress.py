"""Progress and timing of long steps, with no display of its own.

Code at any layer marks a step that can take a while; the command line decides what to show (a progress
display on a terminal, `--timings`), by installing a sink. Without one, marking costs next to nothing.

    with stage("calibrate"):
        ...
    for instruction in tracked(program.instructions, "machine run"):
        ...

Stages nest; a sink sees `start(name, total)`, `advance(steps)` for the innermost open stage, and
`finish(name, seconds)` (also when the step fails).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sized
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol, TypeVar

Item = TypeVar("Item")


class ProgressSink(Protocol):
    def start(self, name: str, total: int | None) -> None: ...

    def advance(self, steps: int) -> None: ...

    def finish(self, name: str, seconds: float) -> None: ...


class NullSink:
    """The default: nothing is shown or kept."""

    def start(self, name: str, total: int | None) -> None:
        pass

    def advance(self, steps: int) -> None:
        pass

    def finish(self, name: str, seconds: float) -> None:
        pass


_sink: ProgressSink = NullSink()


def install_sink(sink: ProgressSink) -> ProgressSink:
    """Send progress to `sink` from now on; return the sink it replaces (to restore it afterwards)."""
    global _sink
    previous, _sink = _sink, sink
    return previous


def stage(name: str, total: int | None = None) -> AbstractContextManager[Callable[[int], None]]:
    """Mark the enclosed code as the step `name` (of `total` units if known); yields `advance(steps=1)`. Without a
    sink (the default `NullSink`), one shared context that does nothing: a machine run marks a stage each time (a
    generator's context costs microseconds, a small model's run tens of them)."""
    return _NULL_STAGE if type(_sink) is NullSink else _stage(name, total)


@contextmanager
def _stage(name: str, total: int | None) -> Iterator[Callable[[int], None]]:
    sink = _sink
    start = time.perf_counter()
    sink.start(name, total)
    try:
        yield lambda steps=1: sink.advance(steps)
    finally:
        sink.finish(name, time.perf_counter() - start)


def _no_advance(steps: int = 1) -> None:
    pass


class _NullStage:
    def __enter__(self) -> Callable[[int], None]:
        return _no_advance

    def __exit__(self, *exc_info) -> None:
        return None


_NULL_STAGE = _NullStage()


def tracked(items: Iterable[Item], name: str) -> Iterator[Item]:
    """The items of `items`, as the step `name` that advances by one per item."""
    with stage(name, len(items) if isinstance(items, Sized) else None) as advance:
        for item in items:
            yield item
            advance(1)
