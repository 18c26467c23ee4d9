"""Graph-level element-wise and normalising ops: activations, arithmetic with broadcasting, softmax."""

from __future__ import annotations

import numpy as np

from rcc.ir.ops.nn_quant_tables import mlas_logistic, mlas_tanh
from rcc.ir.optable import Attr, broadcast_shapes, define, same_as_operand
from rcc.ir.types import TensorType


def _binary_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    a, b = types
    if a.dtype != b.dtype:
        raise ValueError(f"operand dtypes differ: {a.dtype} and {b.dtype}")
    return [TensorType(broadcast_shapes(a.shape, b.shape), a.dtype)]


@define("nn.add", operands=("lhs", "rhs"), infer=_binary_infer, tags=("elementwise",))
def add(lhs: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Element-wise sum with numpy broadcasting."""
    return np.add(lhs, rhs, dtype=lhs.dtype)


@define("nn.sub", operands=("lhs", "rhs"), infer=_binary_infer, tags=("elementwise",))
def sub(lhs: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Element-wise difference with numpy broadcasting."""
    return np.subtract(lhs, rhs, dtype=lhs.dtype)


@define("nn.mul", operands=("lhs", "rhs"), infer=_binary_infer, tags=("elementwise",))
def mul(lhs: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Element-wise product with numpy broadcasting."""
    return np.multiply(lhs, rhs, dtype=lhs.dtype)


@define("nn.div", operands=("lhs", "rhs"), infer=_binary_infer, tags=("elementwise",))
def div(lhs: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Element-wise quotient; integer operands divide truncating toward zero, as C does."""
    if lhs.dtype.kind in "iu":
        quotient = np.floor_divide(lhs, rhs)
        inexact = (np.remainder(lhs, rhs) != 0) & ((lhs < 0) != (rhs < 0))
        return (quotient + inexact).astype(lhs.dtype)
    return np.divide(lhs, rhs, dtype=lhs.dtype)


@define("nn.identity", operands=("x",), infer=same_as_operand(0))
def identity(x: np.ndarray) -> np.ndarray:
    """The operand itself (ONNX Identity, and Dropout at inference)."""
    return x


@define("nn.relu", operands=("x",), infer=same_as_operand(0), tags=("elementwise",))
def relu(x: np.ndarray) -> np.ndarray:
    """max(x, 0), a float x kept where it is not below 0 (−0 stays −0, as onnxruntime has it), in clip's
    vectorised pass (measured with numpy 2.4, `ndarray.clip`: 1 K float32 elements 1.7 µs, 16 K 3.0, 256 K 33,
    against 1.3, 6.7 and 99 for np.maximum with a scalar 0, which also turns −0 into +0)."""
    if x.dtype.kind == "f":
        return x.clip(x.dtype.type(0), x.dtype.type(np.inf))
    return np.maximum(x, np.zeros((), x.dtype))


@define("nn.leaky_relu", operands=("x",), infer=same_as_operand(0), attrs={"alpha": Attr("float", 0.01)},
        tags=("elementwise",))
def leaky_relu(x: np.ndarray, *, alpha: float) -> np.ndarray:
    """x where x ≥ 0, alpha·x elsewhere (float16: alpha·x in float32, rounded once, as onnxruntime does)."""
    wide = float32_if_half(x)
    return np.where(wide >= 0, wide, wide * wide.dtype.type(alpha)).astype(x.dtype)


def float32_if_half(x: np.ndarray) -> np.ndarray:
    """Where a float16 activation computes: in float32, rounded once at the end (onnxruntime's float16 kernels
    widen; float16 arithmetic would round alpha, every step, and cancel in x/6 + 1/2)."""
    return x.astype(np.float32) if x.dtype == np.float16 else x


def _prelu_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    x, slope = types
    if broadcast_shapes(x.shape, slope.shape) != x.shape:
        raise ValueError(f"slope shape {list(slope.shape)} does not broadcast to {list(x.shape)}")
    return [x]


@define("nn.prelu", operands=("x", "slope"), infer=_prelu_infer, tags=("elementwise",))
def prelu(x: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """x where x ≥ 0, slope·x elsewhere (slope broadcast to x)."""
    return np.where(x >= 0, x, x * slope).astype(x.dtype)


@define("nn.sigmoid", operands=("x",), infer=same_as_operand(0), tags=("elementwise",))
def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(−x)). float32 (and float16, computed in float32 and rounded once) as onnxruntime's CPU kernel
    computes it (`nn_quant_tables.mlas_logistic`: its rational approximation, 0 from −16.6 down, up to 7x relative
    error from the exact value above that, NaN kept); float64 without overflow or cancellation: with
    e = exp(−|x|), 1/(1 + e) for x ≥ 0 and e/(1 + e) below."""
    if x.dtype != np.float64:
        return mlas_logistic(float32_if_half(x)).astype(x.dtype, copy=False)   # bit for bit with onnxruntime
    small = np.exp(-np.abs(x))
    positive = 1 / (1 + small)
    return np.where(x >= 0, positive, small * positive)


@define("nn.tanh", operands=("x",), infer=same_as_operand(0), tags=("elementwise",))
def tanh(x: np.ndarray) -> np.ndarray:
    """Hyperbolic tangent: float32 (and float16, in float32 rounded once) as onnxruntime's CPU kernel computes it
    (`nn_quant_tables.mlas_tanh`, a rational approximation on [-9, 9]: np.tanh differs from it by an ulp on a third
    of float32 inputs); float64 by numpy."""
    if x.dtype != np.float64:
        return mlas_tanh(float32_if_half(x)).astype(x.dtype, copy=False)   # bit for bit with onnxruntime
    return np.tanh(x)


@define("nn.clip", operands=("x",), infer=same_as_operand(0),
        attrs={"min": Attr("float", float("-inf")), "max": Attr("float", float("inf"))}, tags=("elementwise",))
def clip(x: np.ndarray, *, min: float, max: float) -> np.ndarray:
    """Clamp to [min, max]; bounds outside an integer dtype's range are clamped to that range. Floats in clip's
    one vectorised pass, a value not outside the bounds kept as it is (−0 stays −0, as onnxruntime has it):
    measured with numpy 2.4, 16 K float32 elements 3.0 µs, 256 K 33 µs (maximum then minimum: 14 and 199)."""
    if x.dtype.kind in "iu":
        info = np.iinfo(x.dtype)
        low = info.min if min == float("-inf") else _in_range(min, info)
        high = info.max if max == float("inf") else _in_range(max, info)
        return np.minimum(np.maximum(x, x.dtype.type(low)), x.dtype.type(high))
    with np.errstate(over="ignore"):   # a float32 limit is ±inf in float16, as intended
        return x.clip(x.dtype.type(min), x.dtype.type(max))


def _in_range(bound: float, info: np.iinfo) -> int:
    """An integer clip bound within the dtype's range, in Python integers (float(2^63 − 1) is 2^63: out of int64)."""
    return max(info.min, min(info.max, int(bound)))


def _axis_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    if not 0 <= attrs["axis"] < types[0].rank:
        raise ValueError(f"axis {attrs['axis']} out of range for rank {types[0].rank}")
    return [types[0]]


@define("nn.softmax", operands=("x",), infer=_axis_infer, attrs={"axis": Attr("int")})
def softmax(x: np.ndarray, *, axis: int) -> np.ndarray:
    """exp(x) / sum(exp(x)) along `axis` (non-negative; float16 in float32, rounded once)."""
    wide = float32_if_half(x)
    shifted = np.exp(wide - wide.max(axis=axis, keepdims=True))
    shifted /= np.add.reduce(shifted, axis=axis, keepdims=True)   # np.sum's reduction, without its wrapper
    return shifted.astype(x.dtype, copy=False)


@define("nn.log_softmax", operands=("x",), infer=_axis_infer, attrs={"axis": Attr("int")})
def log_softmax(x: np.ndarray, *, axis: int) -> np.ndarray:
    """log(softmax(x)) along `axis`, computed stably (float16 in float32, rounded once)."""
    wide = float32_if_half(x)
    shifted = wide - np.max(wide, axis=axis, keepdims=True)
    return (shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))).astype(x.dtype)
