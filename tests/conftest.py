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
