"""Lowering of onnxruntime's com.microsoft quantized ops that rcc reproduces bit for bit (CPU kernels):
QLinearAdd, QLinearMul, QLinearGlobalAveragePool (NCHW), QLinearSigmoid, QLinearLeakyRelu, QLinearSoftmax
and QLinearConcat. Scales and zero points must be constants, per tensor, checked as `rules_quant` checks
them; the semantics are `ir/ops/nn_quant.py` and `ir/ops/nn_quant_tables.py`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rcc.compiler.frontend.context import LowerContext
from rcc.compiler.frontend.registry import MS_DOMAIN, rule
from rcc.compiler.frontend.rules_quant import quant_params
from rcc.ir.core import Value
from rcc.ir.ops.nn_quant import QUANT_DTYPES
from rcc.ir.ops.nn_quant_tables import leaky_relu_function, lookup_table, mlas_logistic
from rcc.ir.types import TensorType


def _quantized(ctx: LowerContext, index: int, scale_index: int, zero_index: int, dtype: str | None,
               what: str) -> tuple[Value | None, float, int]:
    """Input `index` (None for none) with its per-tensor scale and zero point, all of one u8/i8 dtype."""
    x = ctx.input(index) if index >= 0 else None
    if x is not None and (x.type.dtype not in QUANT_DTYPES or dtype is not None and x.type.dtype != dtype):
        raise ctx.unsupported(f"{what} of type {x.type.dtype}: expected {dtype or 'uint8 or int8'}")
    tensor = x.type if x is not None else TensorType((1,), dtype or "u8")
    scale, zero = quant_params(ctx, scale_index, zero_index, tensor, 0, tensor.np_dtype, what)
    if scale.size != 1:
        raise ctx.error(f"{what} scale must be one value (per tensor), got {scale.size}")
    return x, float(scale.reshape(-1)[0]), int(zero.reshape(-1)[0])


def _binary(opname: str) -> Callable[[LowerContext], None]:
    def lower(ctx: LowerContext) -> None:
        a, a_scale, a_zero = _quantized(ctx, 0, 1, 2, None, "A")
        b, b_scale, b_zero = _quantized(ctx, 3, 4, 5, a.type.dtype, "B")
        _, y_scale, y_zero = _quantized(ctx, -1, 6, 7, a.type.dtype, "C")
        attrs = {"a_scale": a_scale, "a_zero": a_zero, "b_scale": b_scale, "b_zero": b_zero, "y_scale": y_scale,
                 "y_zero": y_zero, "dtype": a.type.dtype}
        ctx.bind(0, ctx.op(opname, [a, b], attrs))

    return lower


rule("QLinearAdd", domain=MS_DOMAIN)(_binary("nn.qlinear_add"))
rule("QLinearMul", domain=MS_DOMAIN)(_binary("nn.qlinear_mul"))


@rule("QLinearGlobalAveragePool", domain=MS_DOMAIN)
def lower_qlinear_global_average_pool(ctx: LowerContext) -> None:
    if int(ctx.attr("channels_last", 0)):
        raise ctx.unsupported("channels_last QLinearGlobalAveragePool (rcc handles NCHW)")
    x, x_scale, x_zero = _quantized(ctx, 0, 1, 2, None, "X")
    _, y_scale, y_zero = _quantized(ctx, -1, 3, 4, x.type.dtype, "Y")
    if x.type.rank != 4:
        raise ctx.unsupported(f"QLinearGlobalAveragePool of a rank-{x.type.rank} tensor (rcc handles NCHW)")
    attrs = {"a_scale": x_scale, "a_zero": x_zero, "y_scale": y_scale, "y_zero": y_zero, "dtype": x.type.dtype}
    ctx.bind(0, ctx.op("nn.qlinear_global_avg_pool", [x], attrs))


def _table_rule(function: Callable[[LowerContext], Callable[[np.ndarray], np.ndarray]]) -> Callable[[LowerContext], None]:
    def lower(ctx: LowerContext) -> None:
        x, x_scale, x_zero = _quantized(ctx, 0, 1, 2, None, "X")
        _, y_scale, y_zero = _quantized(ctx, -1, 3, 4, x.type.dtype, "Y")
        table = lookup_table(x.type.dtype, x_scale, x_zero, y_scale, y_zero, function(ctx))
        ctx.bind(0, ctx.op("nn.qlinear_lookup", [x, ctx.builder.constant(f"{ctx.node.output[0]}.table", table)]))

    return lower


rule("QLinearSigmoid", domain=MS_DOMAIN)(_table_rule(lambda ctx: mlas_logistic))
rule("QLinearLeakyRelu", domain=MS_DOMAIN)(_table_rule(lambda ctx: leaky_relu_function(float(ctx.attr("alpha", 0.01)))))


@rule("QLinearSoftmax", domain=MS_DOMAIN)
def lower_qlinear_softmax(ctx: LowerContext) -> None:
    x, x_scale, _ = _quantized(ctx, 0, 1, 2, None, "X")
    _, y_scale, y_zero = _quantized(ctx, -1, 3, 4, x.type.dtype, "Y")
    opset = int(ctx.attr("opset", -1))
    rank = x.type.rank
    axis = int(ctx.attr("axis", 1 if opset < 13 else -1))
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis < rank:
        raise ctx.error(f"axis {ctx.attr('axis')} is out of range for rank {rank}")
    if opset < 13 and axis != rank - 1:
        raise ctx.unsupported("QLinearSoftmax of opset < 13 over more than the last axis")
    attrs = {"axis": axis, "x_scale": x_scale, "y_scale": y_scale, "y_zero": y_zero, "dtype": x.type.dtype}
    ctx.bind(0, ctx.op("nn.qlinear_softmax", [x], attrs))


@rule("QLinearConcat", domain=MS_DOMAIN)
def lower_qlinear_concat(ctx: LowerContext) -> None:
    count = len(ctx.node.input)
    if count < 5 or (count - 2) % 3:
        raise ctx.error(f"expects Y_scale, Y_zero_point and (X, X_scale, X_zero_point) per input, got {count} inputs")
    first = ctx.input(2)
    _, y_scale, y_zero = _quantized(ctx, -1, 0, 1, first.type.dtype, "Y")
    parts = []
    for index in range(2, count, 3):
        x, x_scale, x_zero = _quantized(ctx, index, index + 1, index + 2, first.type.dtype, f"input {index}")
        if np.float32(x_scale) == np.float32(y_scale) and x_zero == y_zero:
            parts.append(x)
            continue
        table = lookup_table(x.type.dtype, x_scale, x_zero, y_scale, y_zero)
        parts.append(ctx.op("nn.qlinear_lookup", [x, ctx.builder.constant(f"{ctx.node.output[0]}.table", table)],
                            name=f"{ctx.node.output[0]}.in{index // 3}"))
    axis = int(ctx.attr("axis", 1))
    ctx.bind(0, ctx.op("nn.concat", parts, {"axis": axis + first.type.rank if axis < 0 else axis}))
