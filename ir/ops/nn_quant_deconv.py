"""The quantized transposed convolution: onnxruntime has no integer ConvTranspose kernel, so for a QDQ
group DequantizeLinear → ConvTranspose → QuantizeLinear it dequantizes, runs MLAS's float32
ConvTranspose and quantizes. rcc computes the exact integer product and rescales it once:

    %acc = nn.conv_transpose_integer(%xq, %wq, %zx, %zw) {strides, pads, ...}   : i32[1,8,16,16]
    %yq  = nn.rescale_quantize(%acc, %s, %sy, %zy, %b) {axis = 1}                : u8[1,8,16,16]
           quantize_linear(float32(acc) · s + b, sy, zy), s = float32(sx · sw) per output channel,
           b = the dequantized float32 bias

onnxruntime's float sum rounds each product and partial sum, in MLAS's order; rcc's value is the exact
sum rounded once. The two agree except where the float result falls on the other side of a rounding
boundary of y_scale, which no fixed-order integer computation can rule out: a float-kernel boundary.
"""

from __future__ import annotations

import numpy as np

from rcc.ir.ops.nn_linear import _CONV_ATTRS, conv_transpose2d
from rcc.ir.ops.nn_quant import (QDQ_DTYPES, QUANT_DTYPES, _check_per_axis, accumulator_dtype, accumulators,
                                 along_axis, quantize_linear, shifted)
from rcc.ir.optable import OPS, Attr, define
from rcc.ir.types import TensorType


def _conv_transpose_integer_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    x, w = types[:2]
    if x.dtype not in QDQ_DTYPES or w.dtype not in QUANT_DTYPES:
        raise ValueError(f"expects a u8/i8/u16/i16 input and u8/i8 weights, got {x} and {w}")
    if len(types) > 2 and (types[2].dtype != x.dtype or types[2].size != 1):
        raise ValueError(f"the input's zero point must be one {x.dtype}, got {types[2]}")
    if len(types) > 3 and (types[3].dtype != w.dtype or types[3].size not in (1, w.shape[1])):
        raise ValueError(f"the weight's zero point must be one {w.dtype} or one per index of the weight's axis 1 "
                         f"(output channel of a group), got {types[3]}")
    shape = OPS["nn.conv_transpose2d"].infer([TensorType(t.shape, "f32") for t in types[:2]], attrs)[0].shape
    return [TensorType(shape, accumulator_dtype(x, w))]


@define("nn.conv_transpose_integer", operands=("x", "weight", "x_zero?", "w_zero?"),
        infer=_conv_transpose_integer_infer, attrs={**_CONV_ATTRS, "output_padding": Attr("ints", (0, 0))})
def conv_transpose_integer(x: np.ndarray, weight: np.ndarray, x_zero: np.ndarray | None = None,
                           w_zero: np.ndarray | None = None, **attrs) -> np.ndarray:
    """The exact int32 transposed convolution of (x − x_zero) and (w − w_zero) (w_zero one value or one per
    index of the weight's axis 1, as ONNX's per-axis DequantizeLinear of a ConvTranspose weight gives it); int64
    for a 16-bit x."""
    product = conv_transpose2d(shifted(x, x_zero).astype(np.float64), shifted(weight, w_zero, 1).astype(np.float64),
                               **attrs)
    return accumulators(np.rint(product), x)


def _rescale_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    acc, scale, y_scale, y_zero = types[:4]
    if acc.dtype not in ("i32", "i64") or scale.dtype != "f32" or y_scale.dtype != "f32" or y_scale.size != 1 \
            or y_zero.dtype not in QDQ_DTYPES or y_zero.size != 1:
        raise ValueError(f"expects i32/i64 accumulators, f32 scales and one u8/i8/u16/i16 zero point, "
                         f"got {', '.join(map(str, types))}")
    if len(types) > 4 and types[4].dtype != "f32":
        raise ValueError(f"the bias must be f32, got {types[4]}")
    _check_per_axis(acc, [t for t in [scale, *types[4:]] if t.size != 1], attrs["axis"])
    return [TensorType(acc.shape, y_zero.dtype)]


@define("nn.rescale_quantize", operands=("acc", "scale", "y_scale", "y_zero", "bias?"), infer=_rescale_infer,
        attrs={"axis": Attr("int", 1)})
def rescale_quantize(acc: np.ndarray, scale: np.ndarray, y_scale: np.ndarray, y_zero: np.ndarray,
                     bias: np.ndarray | None = None, *, axis: int) -> np.ndarray:
    """saturate(rint(float32(float32(acc) · scale + bias) / y_scale) + y_zero), scale and bias per `axis`."""
    value = np.multiply(acc.astype(np.float32), along_axis(scale.reshape(-1), acc.ndim, axis), dtype=np.float32)
    if bias is not None:
        value = np.add(value, along_axis(bias.reshape(-1), acc.ndim, axis), dtype=np.float32)
    return quantize_linear(value, y_scale.reshape(()), y_zero.reshape(()), axis=axis, bits=8 * y_zero.dtype.itemsize)
