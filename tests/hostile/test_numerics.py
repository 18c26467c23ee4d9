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


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_the_input_check_finds_every_nan_and_inf_and_no_other(dtype) -> None:
    """The check's one-sum shortcut: finite values whose sum overflows pass; a NaN or Inf anywhere is found
    (also beside values that overflow, and +Inf beside -Inf)."""
    from rcc.ir.errors import RccError
    from rcc.ir.inputs import check_finite
    big = np.full(64, np.finfo(dtype).max, dtype)
    check_finite("x", big)   # sums to Inf, holds none
    check_finite("x", np.zeros((0, 3), dtype))
    for bad in ([np.nan], [np.inf], [-np.inf], [np.inf, -np.inf]):
        for base in (big, np.ones(64, dtype), -big):
            values = base.copy()
            values[5:5 + len(bad)] = bad
            with pytest.raises(RccError, match="NaN/Inf"):
                check_finite("x", values)
