"""Pooling whose windows tile the input (no pads or dilation, strides equal to a kernel dividing the input),
which runs on a reshaped view of the input, against onnxruntime and against the general windowed path."""

from __future__ import annotations

import numpy as np
import pytest

from rcc.ir.ops import nn_pool
from tests.ops.test_nn_ops_vs_onnxruntime import check, floats

TILINGS = [((2, 2), (1, 3, 8, 6)), ((3, 3), (2, 2, 9, 3)), ((2, 3), (1, 4, 4, 9)), ((1, 1), (1, 2, 3, 3))]


@pytest.mark.parametrize("kernel, shape", TILINGS)
@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.int8])
def test_tiled_max_pool_is_onnxruntimes(kernel: tuple, shape: tuple, ceil_mode: bool, dtype: type) -> None:
    x = floats(1, shape, 100.0).astype(dtype)
    attrs = {"kernel": kernel, "strides": kernel, "dilations": (1, 1), "pads": (0, 0, 0, 0), "ceil_mode": ceil_mode}
    assert nn_pool.windows_tile(shape, kernel, kernel, (0, 0, 0, 0), (1, 1))
    check("nn.max_pool2d", [x], attrs, "MaxPool", {"kernel_shape": kernel, "strides": kernel,
                                                    "ceil_mode": int(ceil_mode)})


@pytest.mark.parametrize("kernel, shape", TILINGS)
@pytest.mark.parametrize("count_include_pad", [False, True])
def test_tiled_average_pool_is_onnxruntimes_and_the_windowed_paths(monkeypatch, kernel: tuple, shape: tuple,
                                                                    count_include_pad: bool) -> None:
    x = floats(2, shape, 10.0)
    attrs = {"kernel": kernel, "strides": kernel, "dilations": (1, 1), "pads": (0, 0, 0, 0), "ceil_mode": False}
    check("nn.avg_pool2d", [x], {**attrs, "count_include_pad": count_include_pad}, "AveragePool",
          {"kernel_shape": kernel, "strides": kernel, "count_include_pad": int(count_include_pad)}, opset=19)
    tiled = nn_pool.avg_pool2d(x, count_include_pad=count_include_pad, **attrs)
    monkeypatch.setattr(nn_pool, "windows_tile", lambda *args: False)
    assert np.array_equal(tiled, nn_pool.avg_pool2d(x, count_include_pad=count_include_pad, **attrs))


@pytest.mark.parametrize("kernel, shape", TILINGS + [((1, 3), (2, 1, 2, 6)), ((3, 1), (1, 2, 6, 2))])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int8])
def test_tiled_max_pool_keeps_the_windowed_paths_bits(monkeypatch, kernel: tuple, shape: tuple, dtype: type) -> None:
    """Row runs first, then rows: each window's first maximal cell in tap order, NaN payloads and zero signs
    included, as the tap-by-tap path keeps it."""
    rng = np.random.default_rng(7)
    x = rng.integers(-2, 3, shape).astype(dtype)
    if dtype != np.int8:
        x[rng.random(shape) < 0.3] = -0.0
        nans = rng.random(shape) < 0.2
        if dtype == np.float32:   # quiet NaNs with distinct payloads
            x[nans] = (np.uint32(0x7FC00000) + np.arange(nans.sum(), dtype=np.uint32) + 1).view(np.float32)
        else:
            x[nans] = np.nan
    attrs = {"kernel": kernel, "strides": kernel, "dilations": (1, 1), "pads": (0, 0, 0, 0), "ceil_mode": False}
    tiled = nn_pool.max_pool2d(x, select="maximum", **attrs)
    monkeypatch.setattr(nn_pool, "windows_tile", lambda *args: False)
    windowed = nn_pool.max_pool2d(x, select="maximum", **attrs)
    assert tiled.dtype == windowed.dtype and tiled.shape == windowed.shape
    assert tiled.tobytes() == windowed.tobytes()
