"""Quantized-model ops that onnxruntime computes with lookup tables: its com.microsoft QLinearSigmoid,
QLinearLeakyRelu, QLinearConcat (the requantisation of each input) and QLinearSoftmax, bit for bit; and
MLAS's float Tanh and Sigmoid of a dequantized tensor (a float32 table over the 256 codes).

    %t = const u8[256]                                   (a table over the 256 integer codes)
    %y = nn.qlinear_lookup(%x, %t)                 : u8[1,8,16,16]   y = t[code of x]
    %p = nn.qlinear_softmax(%z) {axis = 1, x_scale = 0.026, y_scale = 0.0039, y_zero = 0, dtype = "u8"}

Facts of onnxruntime's CPU kernels (contrib_ops/cpu/quantization, MLAS) reproduced here:
- a lookup table is built over the 256 codes: float32 x_scale · (code − x_zero), the float function,
  then QuantizeLinear with y_scale, y_zero (float32 division, ties to even, saturated); an int8 tensor
  indexes it by its two's-complement byte;
- QLinearSigmoid's function is MLAS's logistic: Eigen's rational polynomial (degree 9 over degree 10)
  on the input clamped to [−18, 18], evaluated with fused multiply-adds on x86-64, plus 0.5, clamped below
  at 0 (float Sigmoid, `nn.sigmoid`, is the same function);
- QLinearSoftmax (`softmax_table`, `qlinear_softmax`): a float32 table of exp((i − 255 + shift) · x_scale)
  computed in double, shift = max(0, ln(FLT_MAX / D) − 5) / x_scale for a softmax over D values; a row
  looks up its codes relative to its maximum, sums the float32 values in order, and each output is
  rint(float32(value · floor(1 / y_scale)) / sum) + y_zero, saturated above (measured on onnxruntime 1.32
  for both kernels: an int8 result saturates at 127, so a QDQ int8 group, which onnxruntime rewrites to
  uint8 with zero points + 128, gives the same integers as the int8 kernel).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from rcc.ir.ops.nn_quant import QUANT_DTYPES, fma32, integer_limits, quantize_linear
from rcc.ir.optable import Attr, define
from rcc.ir.types import TensorType

_LOGISTIC_NUMERATOR = (4.37031012579801e-11, 1.15627324459942e-07, 6.08574864600143e-05, 8.51377133304701e-03,
                       2.48287947061529e-01)
_LOGISTIC_DENOMINATOR = (6.10247389755681e-13, 5.76102136993427e-09, 6.29106785017040e-06, 1.70198817374094e-03,
                         1.16817656904453e-01, 9.93151921023180e-01)


_TANH_NUMERATOR = (-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
                   1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03)
_TANH_DENOMINATOR = (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03)


def _rational(x: np.ndarray, bound: float, numerator: tuple[float, ...], denominator: tuple[float, ...]) -> np.ndarray:
    """Eigen's odd rational approximation as MLAS's x86-64 FMA kernels evaluate it: x clamped to ±bound,
    p(x²)·x / q(x²) by Horner's rule with fused multiply-adds, in float32."""
    value = np.clip(x.astype(np.float32), np.float32(-bound), np.float32(bound))
    square = np.multiply(value, value, dtype=np.float32)
    p = np.full(value.shape, np.float32(numerator[0]))
    for coefficient in numerator[1:]:
        p = fma32(p, square, np.float32(coefficient))
    q = np.full(value.shape, np.float32(denominator[0]))
    for coefficient in denominator[1:]:
        q = fma32(q, square, np.float32(coefficient))
    return np.divide(np.multiply(p, value, dtype=np.float32), q, dtype=np.float32)


def mlas_logistic(x: np.ndarray) -> np.ndarray:
    """MLAS's float32 logistic (onnxruntime's Sigmoid, LSTM gates, QLinearSigmoid's function): p(x)/q(x) + 0.5
    on [−18, 18], clamped below at 0 only, as its x86-64 FMA3 kernel does (1.0000001 at x = 17.48; NaN kept):
    bit for bit with onnxruntime 1.32 on 6 million probes (a sweep of [−30, 30], random values, ±inf, ±0, NaN)."""
    ratio = _rational(x, 18.0, _LOGISTIC_NUMERATOR, _LOGISTIC_DENOMINATOR)
    return np.maximum(np.float32(0.0), np.add(ratio, np.float32(0.5), dtype=np.float32))   # NaN passes


def mlas_tanh(x: np.ndarray) -> np.ndarray:
    """MLAS's float32 tanh (onnxruntime's Tanh kernel, `nn.tanh`): p(x)/q(x) on [−9, 9]; bit for bit with
    onnxruntime 1.32 on 6 million probes (a sweep of [−30, 30], random values, ±inf, ±0, NaN)."""
    return _rational(x, 9.0, _TANH_NUMERATOR, _TANH_DENOMINATOR)


def _identity(x: np.ndarray) -> np.ndarray:
    return x


def leaky_relu_function(alpha: float) -> Callable[[np.ndarray], np.ndarray]:
    """QLinearLeakyRelu's float function: v ≥ 0 ? v : alpha · v (float32)."""
    return lambda v: np.where(v >= 0, v, np.multiply(np.float32(alpha), v, dtype=np.float32))


def lookup_table(dtype: str, x_scale: float, x_zero: int, y_scale: float, y_zero: int,
                 function: Callable[[np.ndarray], np.ndarray] = _identity) -> np.ndarray:
    """onnxruntime's 256-entry table: entry k (the byte of code x) = quantize(function(x_scale · (x − x_zero)))."""
    values = float_table(dtype, x_scale, x_zero, function)
    return quantize_linear(values, np.array(y_scale, np.float32), np.array(y_zero, TensorType((), dtype).np_dtype),
                           axis=0)


def float_table(dtype: str, x_scale: float, x_zero: int, function: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """A float32 table over the 256 codes: function(DequantizeLinear(code)), for a float op onnxruntime runs
    on a dequantized tensor (MLAS's Tanh or Sigmoid)."""
    np_dtype = TensorType((), dtype).np_dtype
    codes = np.arange(256).astype(np.uint8).view(np_dtype)
    centred = (codes.astype(np.int32) - np.int32(x_zero)).astype(np.float32)
    return function(np.multiply(centred, np.float32(x_scale), dtype=np.float32)).astype(np.float32)


def _lookup_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    x, table = types
    if x.dtype not in QUANT_DTYPES or table.dtype not in (*QUANT_DTYPES, "f32") or table.shape != (256,):
        raise ValueError(f"expects a u8/i8 tensor and a u8/i8/f32[256] table, got {x} and {table}")
    return [TensorType(x.shape, table.dtype)]


@define("nn.qlinear_lookup", operands=("x", "table"), infer=_lookup_infer)
def qlinear_lookup(x: np.ndarray, table: np.ndarray) -> np.ndarray:
    """table[byte of x]: a function of an 8-bit tensor, as onnxruntime's table kernels apply it (8-bit
    tables), or a float function of its dequantization (float32 tables)."""
    return table[np.ascontiguousarray(x).view(np.uint8)]


def softmax_table(x_scale: float, reduce_len: int) -> np.ndarray:
    """QLinearSoftmax's float32 table over the 256 offsets i (entry 255 is the row's maximum)."""
    largest_over_len = np.float32(np.finfo(np.float32).max) / np.float32(reduce_len)
    shift = max(0.0, math.log(float(largest_over_len)) - 5.0) / float(np.float32(x_scale))
    scale = float(np.float32(x_scale))
    return np.array([math.exp((i - 255 + shift) * scale) for i in range(256)], np.float32)


def softmax_multiplier(y_scale: float) -> np.float32:
    """QLinearSoftmax's float32 floor(1 / y_scale), by which each table value is multiplied."""
    return np.float32(math.floor(np.float32(1.0) / np.float32(y_scale)))


def _softmax_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    x = types[0]
    if x.dtype != attrs["dtype"] or x.dtype not in QUANT_DTYPES or not 0 <= attrs["axis"] < x.rank:
        raise ValueError(f"expects a {attrs['dtype']} tensor (u8 or i8) with axis {attrs['axis']} in range, got {x}")
    return [x]


@define("nn.qlinear_softmax", operands=("x",), infer=_softmax_infer,
        attrs={"axis": Attr("int"), "x_scale": Attr("float"), "y_scale": Attr("float"), "y_zero": Attr("int"),
               "dtype": Attr("str")})
def qlinear_softmax(x: np.ndarray, *, axis: int, x_scale: float, y_scale: float, y_zero: int, dtype: str) -> np.ndarray:
    """com.microsoft QLinearSoftmax (opset-13 semantics: over `axis`) as onnxruntime's CPU kernel computes it."""
    rows = np.moveaxis(x, axis, -1).astype(np.int32)
    table = softmax_table(x_scale, rows.shape[-1])
    values = table[rows - rows.max(axis=-1, keepdims=True) + 255]
    total = np.cumsum(values, axis=-1, dtype=np.float32)[..., -1:]
    rounded = np.rint(np.divide(np.multiply(values, softmax_multiplier(y_scale), dtype=np.float32), total, dtype=np.float32))
    low, high = integer_limits(dtype)
    out = np.clip(rounded.astype(np.int64) + y_zero, low, high).astype(TensorType((), dtype).np_dtype)
    return np.moveaxis(out, -1, axis)
