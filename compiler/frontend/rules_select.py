"""Lowering of ONNX's TopK (to `nn.top_k_indices` and a gather of the values), OneHot, Trilu and Swish.

TopK's k, OneHot's depth and Trilu's k must be known at compile time (they decide the result's shape or
are a static mask); OneHot's off/on values may be computed.
"""

from __future__ import annotations

import numpy as np

from rcc.compiler.frontend.context import LowerContext
from rcc.compiler.frontend.registry import rule
from rcc.ir.ops.nn_select import ONE_HOT_KERNELS


# dtypes onnxruntime 1.32 has TopK and Trilu kernels for (probed; float16 reaches them through casts)
_KERNEL_DTYPES = {"TopK": ("f16", "f32", "f64", "i8", "i16", "i32", "i64", "u8"),
                  "Trilu": ("f16", "f32", "f64", "i32", "i64", "bool")}


def _check_kernel(ctx: LowerContext, dtype: str) -> None:
    if dtype not in _KERNEL_DTYPES[ctx.node.op_type]:
        raise ctx.unsupported(f"{ctx.node.op_type} of {dtype}: onnxruntime has no such kernel either (it takes "
                              f"{', '.join(_KERNEL_DTYPES[ctx.node.op_type])})")


@rule("TopK")
def lower_top_k(ctx: LowerContext) -> None:
    x = ctx.input(0)
    _check_kernel(ctx, x.type.dtype)
    axis = ctx.axis(ctx.attr("axis", -1), x.type.rank)
    k = int(ctx.attr("k")) if ctx.opset < 10 else ctx.one_number(1, "K")
    if not 0 <= k <= x.type.shape[axis]:
        raise ctx.error(f"k={k} is outside [0, {x.type.shape[axis]}], the length of axis {axis}")
    largest, ordered = ctx.flag("largest", 1), ctx.flag("sorted", 1)
    if not ordered and k > 1:
        raise ctx.unsupported("TopK with sorted=0 (onnxruntime's order of an unsorted selection is its own)")
    indices_name = ctx.node.output[1] if len(ctx.node.output) > 1 and ctx.node.output[1] else None
    indices = ctx.op("nn.top_k_indices", [x], {"k": k, "axis": axis, "largest": largest}, name=indices_name)
    ctx.bind(0, ctx.op("nn.gather_elements", [x, indices], {"axis": axis}))
    if indices_name:
        ctx.bind(1, indices)


@rule("OneHot")
def lower_one_hot(ctx: LowerContext) -> None:
    indices = ctx.input(0)
    # float16 reaches a kernel through onnxruntime's inserted casts to float32
    types = tuple("f32" if t == "f16" else t for t in (indices.type.dtype, ctx.input_type(1).dtype,
                                                        ctx.input_type(2).dtype))
    if types not in ONE_HOT_KERNELS:
        raise ctx.error(f"{types[0]} indices, {types[1]} depth and {types[2]} values: onnxruntime has no such "
                        f"OneHot kernel either")
    depth = ctx.one_number(1, "depth")
    if depth < 1:
        raise ctx.error(f"depth {depth} is not positive")
    axis = ctx.axis(ctx.attr("axis", -1), indices.type.rank + 1)
    ctx.bind(0, ctx.op("nn.one_hot", [indices, ctx.input(2)], {"depth": depth, "axis": axis}))


@rule("Trilu")
def lower_trilu(ctx: LowerContext) -> None:
    k = ctx.one_number(1, "k") if ctx.has_input(1) else 0
    upper = ctx.flag("upper", 1)
    x = ctx.input(0)
    _check_kernel(ctx, x.type.dtype)
    ctx.bind(0, ctx.op("nn.trilu", [x], {"k": k, "upper": upper}))


@rule("Swish")
def lower_swish(ctx: LowerContext) -> None:
    """x · sigmoid(alpha · x) (opset 24), as the Mul and Sigmoid it is."""
    x = ctx.input(0)
    alpha = float(ctx.attr("alpha", 1.0))
    if alpha != 1.0:
        factor = ctx.builder.constant(ctx.node.output[0] + ".alpha", np.array(alpha, dtype=x.type.np_dtype))
        x_scaled = ctx.op("nn.mul", [x, factor])
    scaled = x if alpha == 1.0 else x_scaled
    ctx.bind(0, ctx.op("nn.mul", [x, ctx.op("nn.sigmoid", [scaled])]))
