"""Verification never counts a NaN or Inf where onnxruntime has a finite value (or the reverse) as a
match, under every executor's tolerance; agreeing NaN/Inf positions are compared on the rest."""

from __future__ import annotations

import numpy as np
import pytest

from rcc.compiler.verify import FLOAT_MACHINE_TOLERANCE, INTERPRETER_TOLERANCE, Tolerance, output_metrics

TOLERANCES = [INTERPRETER_TOLERANCE, FLOAT_MACHINE_TOLERANCE, Tolerance("snr", bound=26.2)]
EXPECTED = np.array([1.0, -2.0, 3.0, 0.5], np.float32)


@pytest.mark.parametrize("tolerance", TOLERANCES, ids=lambda t: t.kind)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_where_onnxruntime_is_finite_fails(tolerance, bad) -> None:
    actual = EXPECTED.copy()
    actual[1] = bad
    assert output_metrics(actual, EXPECTED, tolerance)["passed"] is False
    assert output_metrics(EXPECTED, actual, tolerance)["passed"] is False


@pytest.mark.parametrize("tolerance", TOLERANCES, ids=lambda t: t.kind)
def test_all_nan_output_fails_against_finite_reference(tolerance) -> None:
    metrics = output_metrics(np.full(4, np.nan, np.float32), EXPECTED, tolerance)
    assert metrics["passed"] is False and "NaN" in metrics["note"]


@pytest.mark.parametrize("tolerance", TOLERANCES, ids=lambda t: t.kind)
def test_agreeing_nonfinite_values_compare_the_rest(tolerance) -> None:
    expected = EXPECTED.copy()
    expected[0], expected[2] = np.nan, np.inf
    assert output_metrics(expected.copy(), expected, tolerance)["passed"] is True
    off = expected.copy()
    off[1] = 7.0
    assert output_metrics(off, expected, tolerance)["passed"] is False
    flipped = expected.copy()
    flipped[2] = -np.inf
    assert output_metrics(flipped, expected, tolerance)["passed"] is False
