"""Shared fixtures and the terminal summary of the conformance tally."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import onnx
import pytest
from hypothesis import settings

# CI (`.ci/run` sets CI) runs every property test on a fixed sequence of examples and without the example
# database, so a clean machine's verdict never hangs on a random draw; local runs keep exploring with fresh
# random examples and replay the failures they stored.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

ROOT = Path(__file__).resolve().parent.parent
ZOO = sorted(ROOT.glob("models/*.onnx"))
LIGHT = sorted(Path(p) for p in glob.glob(os.path.join(os.path.dirname(onnx.__file__),
                                                       "backend/test/data/light/*.onnx")))
# The light models with 60-140 M weights take 5-20 s per test: marked slow (CI runs them all; `-m "not slow"`
# gives a quick local run).
LARGE_LIGHT = frozenset({"light_vgg19", "light_bvlc_alexnet", "light_zfnet512"})


def light_params(paths: list[Path] = LIGHT) -> list:
    """`paths` as pytest parameters named by stem, the large ones marked slow."""
    return [pytest.param(p, id=p.stem, marks=[pytest.mark.slow] if p.stem in LARGE_LIGHT else []) for p in paths]


def pytest_terminal_summary(terminalreporter) -> None:
    from tests.conformance import TALLY

    if TALLY["selected"]:
        terminalreporter.write_line(
            f"ONNX conformance node cases: {TALLY['selected']} ran, {TALLY['passed']} passed, "
            f"{TALLY['unsupported']} named an unsupported construct, "
            f"{TALLY['selected'] - TALLY['passed'] - TALLY['unsupported']} failed")


@pytest.fixture(scope="session")
def zoo_paths() -> list[Path]:
    return ZOO
