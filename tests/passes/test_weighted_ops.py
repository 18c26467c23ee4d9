"""What a weighted op knows about itself (ir/ops/nn_linear.py): its weight as crossbar matrices [G, K, M]
and back, per-output-channel scaling, and its MAC count — checked against the op semantics."""

from __future__ import annotations

import numpy as np
import pytest

from rcc.ir.builder import make_op
from rcc.ir.core import Module, Value
from rcc.ir.ops.nn_linear import (conv_weight_from_matrix, conv_weight_matrix, op_macs, scale_output_channels,
                                  swap_conv_transpose_weight, weight_from_matrix, weight_matrix)
from rcc.ir.optable import OPS
from rcc.ir.types import TensorType

RNG = np.random.default_rng(7)


def weighted_op(opname: str, x_shape: tuple, weight: np.ndarray, **attrs) -> tuple:
    module = Module("m")
    x = Value("x", TensorType(x_shape, "f32"))
    w = module.add_constant("w", weight.astype(np.float32))
    op = make_op(opname, [x, w], attrs, ["y"])
    return op, RNG.standard_normal(x_shape).astype(np.float32)


CONV = dict(strides=(1, 1), pads=(1, 0, 1, 0), dilations=(1, 1))


def test_conv_matrix_is_what_im2col_rows_multiply() -> None:
    op, x = weighted_op("nn.conv2d", (1, 4, 5, 5), RNG.standard_normal((6, 2, 3, 2)), group=2, **CONV)
    matrix = weight_matrix(op)
    assert matrix.shape == (2, 2 * 3 * 2, 3)
    cols = OPS["vec.im2col"].run([x], {"kernel": (3, 2), **CONV})[0]  # [P, C·kh·kw], (c, kh, kw) order
    per_group = [cols[:, g * 12:(g + 1) * 12] @ matrix[g] for g in range(2)]
    expected = OPS["nn.conv2d"].run([x, op.operands[1].data], op.attrs)[0]
    rows = np.concatenate(per_group, axis=1).reshape(1, 5, 4, 6).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(rows, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(weight_from_matrix(op, matrix), op.operands[1].data)


@pytest.mark.parametrize("shape, group", [((6, 2, 3), 3), ((4, 1, 2, 3, 2), 4), ((8, 4, 1, 1), 1)])
def test_matrix_views_round_trip_for_any_kernel_rank(shape, group) -> None:
    weight = RNG.standard_normal(shape)
    np.testing.assert_array_equal(conv_weight_from_matrix(conv_weight_matrix(weight, group), shape), weight)
    swapped = swap_conv_transpose_weight(weight, group)
    assert swapped.shape == (shape[1] * group, shape[0] // group, *shape[2:])
    np.testing.assert_array_equal(swap_conv_transpose_weight(swapped, group), weight)


def test_matmul_matrix_is_one_group() -> None:
    op, _ = weighted_op("nn.matmul", (3, 4), RNG.standard_normal((4, 5)))
    np.testing.assert_array_equal(weight_matrix(op)[0], op.operands[1].data)
    np.testing.assert_array_equal(weight_from_matrix(op, weight_matrix(op)), op.operands[1].data)


@pytest.mark.parametrize("opname, x_shape, w_shape, attrs", [
    ("nn.conv2d", (1, 4, 5, 5), (6, 2, 3, 3), dict(group=2, **CONV)),
    ("nn.conv_transpose2d", (1, 4, 3, 3), (4, 3, 2, 2), dict(group=2, strides=(2, 2), pads=(0, 0, 0, 0),
                                                             dilations=(1, 1), output_padding=(0, 0))),
    ("nn.matmul", (3, 4), (4, 5), {}),
])
def test_scaling_output_channels_scales_the_outputs(opname, x_shape, w_shape, attrs) -> None:
    op, x = weighted_op(opname, x_shape, RNG.standard_normal(w_shape), **attrs)
    channels = op.result.type.shape[1]
    factor = RNG.uniform(0.5, 2.0, channels)
    scaled = scale_output_channels(op, op.operands[1].data.astype(np.float64), factor).astype(np.float32)
    before = OPS[opname].run([x, op.operands[1].data], op.attrs)[0]
    after = OPS[opname].run([x, scaled], op.attrs)[0]
    shape = (1, -1) + (1,) * (before.ndim - 2)
    np.testing.assert_allclose(after, before * factor.reshape(shape), rtol=1e-5, atol=1e-5)


def test_mac_counts() -> None:
    conv, _ = weighted_op("nn.conv2d", (2, 4, 5, 5), RNG.standard_normal((6, 2, 3, 3)), group=2, **CONV)
    assert op_macs(conv) == 2 * 6 * 5 * 3 * (2 * 3 * 3)  # outputs × (C/g · kh · kw)
    matmul, _ = weighted_op("nn.matmul", (3, 4), RNG.standard_normal((4, 5)))
    assert op_macs(matmul) == 3 * 5 * 4
    deconv, _ = weighted_op("nn.conv_transpose2d", (1, 4, 3, 3), RNG.standard_normal((4, 3, 2, 2)), group=2,
                            strides=(2, 2), pads=(0, 0, 0, 0), dilations=(1, 1), output_padding=(0, 0))
    assert op_macs(deconv) == 3 * 3 * 4 * 3 * 2 * 2  # every input pixel × C × M/g × kh × kw
