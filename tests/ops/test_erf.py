"""The vectorised error function (ir/ops/nn_transcendental.erf_wide) against math.erf: its float64 relative
error over a dense grid and the tails, and float32 results rounded exactly as math.erf's on a strided sweep of
float32 inputs (onnxruntime's own comparisons are in test_nn_logic_reduce_vs_onnxruntime.py)."""

from __future__ import annotations

import math

import numpy as np

from rcc.ir.ops.nn_transcendental import erf, erf_wide

_math_erf = np.vectorize(math.erf, otypes=[np.float64])


def test_float64_relative_error_over_a_dense_grid_and_the_tails() -> None:
    x = np.concatenate([np.linspace(-8.0, 8.0, 400_000), np.geomspace(1e-300, 1e-3, 2000),
                        -np.geomspace(1e-300, 1e-3, 2000), np.linspace(1.999, 2.001, 2001), [1e10, -1e300]])
    expected = _math_erf(x)
    error = np.abs(erf_wide(x) - expected) / np.abs(expected)
    assert error.max() < 2e-15


def test_float32_results_round_as_math_erf_does() -> None:
    lowest, highest = np.float32(2.0 ** -126).view(np.int32), np.float32(4.5).view(np.int32)
    x = np.arange(lowest, highest, 1009, dtype=np.int32).view(np.float32)
    x = np.concatenate([x, -x])
    expected = _math_erf(x.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(erf(x), expected)


def test_special_values() -> None:
    assert erf(np.array(0.5, np.float32)).shape == () and erf(np.zeros((2, 0), np.float32)).shape == (2, 0)
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 6.0, -7.5, 40.0], dtype=np.float32)
    got = erf(x)
    np.testing.assert_array_equal(got[:4], [0.0, -0.0, 1.0, -1.0])
    assert np.signbit(got[1]) and np.isnan(got[4])
    np.testing.assert_array_equal(got[5:], [1.0, -1.0, 1.0])
    assert got.dtype == np.float32
