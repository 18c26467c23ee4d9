"""The progress API: stages nest, report their durations (also when they fail), advance, and cost
nothing without a sink."""

from __future__ import annotations

import pytest

from rcc.ir.progress import NullSink, install_sink, stage, tracked


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def start(self, name, total):
        self.events.append(("start", name, total))

    def advance(self, steps):
        self.events.append(("advance", steps))

    def finish(self, name, seconds):
        assert seconds >= 0
        self.events.append(("finish", name))


@pytest.fixture
def recorder():
    sink = Recorder()
    previous = install_sink(sink)
    yield sink
    install_sink(previous)


def test_stages_nest_and_advance(recorder) -> None:
    with stage("outer"):
        for item in tracked([1, 2], "inner"):
            assert item in (1, 2)
    assert recorder.events == [("start", "outer", None), ("start", "inner", 2), ("advance", 1), ("advance", 1),
                               ("finish", "inner"), ("finish", "outer")]


def test_a_failing_stage_still_finishes(recorder) -> None:
    with pytest.raises(ValueError):
        with stage("broken"):
            raise ValueError("boom")
    assert recorder.events[-1] == ("finish", "broken")


def test_the_default_sink_does_nothing() -> None:
    previous = install_sink(NullSink())
    try:
        with stage("quiet", total=3) as advance:
            advance(2)
    finally:
        install_sink(previous)
