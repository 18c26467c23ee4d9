"""Shared fixtures and the terminal summary of the conformance tally."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import onnx
import pytest

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
