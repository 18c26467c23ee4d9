"""QuantizeLinear and DequantizeLinear to and from float8 (e4m3fn, e4m3fnuz, e5m2, e5m2fnuz) and float4 (e2m1):
no integer grid, so they become float arithmetic and a cast (`rules_quant.py` calls these for those types).

    QuantizeLinear:   y = cast(x / scale, to, saturate)      float32 division, then rounding to nearest even
    DequantizeLinear: y = cast(x, f32) · scale

Per tensor, per axis and blocked scales, as for the integer types. onnxruntime ignores a float8 zero point where
ONNX's reference adds it, so a non-zero one is refused in one line; zeros are read and dropped. onnxruntime has
no float4 quantization kernel: rcc follows ONNX's definition there (ml_dtypes' conversion saturates).
"""

from __future__ import annotations

import numpy as np

from rcc.compiler.frontend.context import LowerContext
from rcc.ir.core import Value
from rcc.ir.ops.nn_quant import along_axis
from rcc.ir.types import dtype_name


def _scale_operand(ctx: LowerContext, tensor: Value, scale: np.ndarray, zero: np.ndarray, axis: int) -> Value:
    """The float32 scale shaped to broadcast against `tensor` (per tensor, per axis or blocked)."""
    if np.any(zero.astype(np.float32) != 0):
        raise ctx.unsupported(f"a non-zero {dtype_name(zero.dtype)} zero point: onnxruntime ignores it, ONNX's "
                              f"reference adds it; rcc takes zero")
    return ctx.builder.constant(f"{ctx.node.output[0]}.scale", along_axis(scale, tensor.type.rank, axis))


def lower_quantize_to_float(ctx: LowerContext, x: Value, scale: np.ndarray, zero: np.ndarray, axis: int) -> None:
    """y = cast(x / scale, the zero point's type, saturate)."""
    saturate = ctx.flag("saturate", 1)
    scaled = ctx.op("nn.div", [x, _scale_operand(ctx, x, scale, zero, axis)], name=f"{ctx.node.output[0]}.scaled")
    ctx.bind(0, ctx.op("nn.cast", [scaled], {"to": dtype_name(zero.dtype), "saturate": int(saturate)}))


def lower_dequantize_from_float(ctx: LowerContext, x: Value, scale: np.ndarray, zero: np.ndarray, axis: int) -> None:
    """y = float32(x) · scale."""
    scale_value = _scale_operand(ctx, x, scale, zero, axis)
    wide = ctx.op("nn.cast", [x], {"to": "f32"}, name=f"{ctx.node.output[0]}.f32")
    ctx.bind(0, ctx.op("nn.mul", [wide, scale_value]))
