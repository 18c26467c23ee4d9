"""Quantized-model ops: ONNX's QuantizeLinear/DequantizeLinear, the integer products (ConvInteger,
MatMulInteger) and the requantisations onnxruntime's integer kernels apply after them.

    %xq  = nn.quantize_linear(%x, %s, %zp) {axis = 1}                 : u8[1,3,32,32]
    %acc = nn.conv_integer(%xq, %wq, %x_zp, %w_zp) {strides, pads, ...} : i32[1,8,32,32]
    %yq  = nn.requantize(%acc, %multiplier, %y_zp, %bias) {axis = 1}   : u8[1,8,32,32]
    %y   = nn.dequantize_linear(%yq, %s_y, %y_zp)                       : f32[1,8,32,32]

The semantics are onnxruntime's CPU kernels (MLAS), bit for bit:
- quantize_linear: saturate(rint(x / scale) + zero_point), the division in float32, ties to even, into the
  range of `bits` (8, or 4 for ONNX's int4/uint4, which rcc carries in i8/u8 tensors);
- dequantize_linear: float32(x − zero_point) · scale (`bits` records the width the model declared);
- scale and zero point: one value, one per index of `axis`, or (blocked quantization, expanded by the
  frontend) one per element of x;
- requantize (QLinearConv, QLinearMatMul, QGemm): saturate(rint(float32(acc + bias) · multiplier) + zp),
  multiplier = float32(float32(x_scale · w_scale) / y_scale) per output channel, clamped before rounding;
- qlinear_add, qlinear_mul and qlinear_global_avg_pool: the float formulas of onnxruntime's com.microsoft
  kernels.
"""

from __future__ import annotations

import numpy as np

from rcc.ir.ops.nn_linear import conv2d
from rcc.ir.ops.nn_pool import _POOL_ATTRS, _pool_infer, _pool_windows
from rcc.ir.optable import OPS, Attr, broadcast_shapes, define
from rcc.ir.types import TensorType

QUANT_DTYPES = ("u8", "i8")   # the integer kernels' (QLinear*, tables): 8-bit
WIDE_DTYPES = ("u16", "i16")  # 16-bit activations (onnxruntime's A16W8): Q/DQ and the exact products only
QDQ_DTYPES = QUANT_DTYPES + WIDE_DTYPES
QDQ_BITS = (2, 4, 8, 16)


def accumulator_dtype(*operands: TensorType) -> str:
    """An exact integer product's dtype: ONNX's int32 for 8-bit operands; int64 when one is 16-bit (a 16-bit code
    times an 8-bit weight reaches 2^23, so a few hundred of them overflow int32)."""
    return "i64" if any(t.dtype in WIDE_DTYPES for t in operands) else "i32"


def accumulators(product: np.ndarray, x: np.ndarray) -> np.ndarray:
    """An exact integer product as the dtype `accumulator_dtype` gives it for an input like `x`."""
    return product.astype(np.int64 if x.dtype.itemsize == 2 else np.int32)


def integer_limits(dtype: np.dtype | str, bits: int | None = None) -> tuple[int, int]:
    """The range of a quantized integer dtype (`u8` → (0, 255)), or of its `bits`-bit narrowing (4: `i8` →
    (−8, 7), `u8` → (0, 15): ONNX's int4/uint4)."""
    info = np.iinfo(TensorType((), dtype).np_dtype if isinstance(dtype, str) else dtype)
    if bits is not None and bits < info.bits:
        return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if info.min < 0 else (0, 2 ** bits - 1)
    return int(info.min), int(info.max)


def along_axis(values: np.ndarray, rank: int, axis: int) -> np.ndarray:
    """A scalar or 1-D per-axis array shaped to broadcast against a rank-`rank` tensor on `axis`."""
    values = np.asarray(values)
    if values.size == 1:  # one value broadcasts, whatever the axis
        return values.reshape(())
    if values.ndim == rank > 1:  # one value per element (blocked quantization, expanded)
        return values
    shape = [1] * rank
    shape[axis % rank] = values.size
    return values.reshape(shape)


def _check_per_axis(x: TensorType, params: list[TensorType], axis: int) -> None:
    for param in params:
        if param.rank == 0 or param.size == 1 and param.rank <= 1 or param.rank > 1 and param.shape == x.shape:
            continue
        if param.rank != 1 or x.rank == 0 or not -x.rank <= axis < x.rank or param.shape[0] != x.shape[axis]:
            raise ValueError(f"scale/zero point {param} do not match axis {axis} of {x}")


def _quantize_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    x, scale, zero = types
    if x.dtype != "f32" or scale.dtype != "f32" or zero.dtype not in QDQ_DTYPES or scale.shape != zero.shape:
        raise ValueError(f"quantizes f32 with an f32 scale and a u8/i8/u16/i16 zero point of the same shape, "
                         f"got {x}, {scale}, {zero}")
    _check_per_axis(x, [scale, zero], attrs["axis"])
    if attrs["bits"] not in QDQ_BITS:
        raise ValueError(f"bits must be one of {QDQ_BITS}, got {attrs['bits']}")
    return [TensorType(x.shape, zero.dtype)]


@define("nn.quantize_linear", operands=("x", "scale", "zero_point"), infer=_quantize_infer,
        attrs={"axis": Attr("int", 1), "bits": Attr("int", 8)})
def quantize_linear(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, *, axis: int,
                    bits: int = 8) -> np.ndarray:
    """saturate(rint(x / scale) + zero_point): float32 division, ties to even, per tensor, along `axis` or
    per element, into the range of `bits`."""
    low, high = integer_limits(zero_point.dtype, bits)
    scaled = np.divide(x, along_axis(scale, x.ndim, axis), dtype=np.float32)
    shifted = np.rint(scaled) + along_axis(zero_point, x.ndim, axis).astype(np.float32)
    return np.clip(shifted, low, high).astype(zero_point.dtype)


def _dequantize_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    x, scale, zero = types
    if x.dtype not in (*QDQ_DTYPES, "i32") or scale.dtype != "f32" or zero.dtype != x.dtype \
            or scale.shape != zero.shape:
        raise ValueError(f"dequantizes u8/i8/u16/i16/i32 with an f32 scale and a zero point of its dtype and the "
                         f"scale's shape, got {x}, {scale}, {zero}")
    _check_per_axis(x, [scale, zero], attrs["axis"])
    if attrs["bits"] not in QDQ_BITS:
        raise ValueError(f"bits must be one of {QDQ_BITS}, got {attrs['bits']}")
    return [TensorType(x.shape, "f32")]


@define("nn.dequantize_linear", operands=("x", "scale", "zero_point"), infer=_dequantize_infer,
        attrs={"axis": Attr("int", 1), "bits": Attr("int", 8)})
def dequantize_linear(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, *, axis: int,
                      bits: int = 8) -> np.ndarray:
    """float32(x − zero_point) · scale, per tensor, along `axis` or per element (`bits` does not change it)."""
    shifted = x.astype(np.int64) - along_axis(zero_point, x.ndim, axis).astype(np.int64)
    return np.multiply(shifted.astype(np.float32), along_axis(scale, x.ndim, axis), dtype=np.float32)


def _zero_points_fit(types: list[TensorType], x: TensorType, w: TensorType, w_axis: int) -> None:
    if x.dtype not in QDQ_DTYPES or w.dtype not in QUANT_DTYPES:
        raise ValueError(f"expects a u8/i8/u16/i16 input and u8/i8 weights, got {x} and {w}")
    if len(types) > 2 and (types[2].dtype != x.dtype or types[2].size != 1):
        raise ValueError(f"the input's zero point must be one {x.dtype}, got {types[2]}")
    if len(types) > 3 and (types[3].dtype != w.dtype or types[3].size not in (1, w.shape[w_axis])):
        raise ValueError(f"the weight's zero point must be one {w.dtype} or one per output, got {types[3]}")


def _conv_integer_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    _zero_points_fit(types, types[0], types[1], 0)
    shape = OPS["nn.conv2d"].infer([TensorType(t.shape, "f32") for t in types[:2]], attrs)[0].shape
    return [TensorType(shape, accumulator_dtype(*types[:2]))]


def shifted(values: np.ndarray, zero_point: np.ndarray | None, axis: int = 0) -> np.ndarray:
    """values − zero_point as int64 (zero_point: None, one value, or one per index of `axis`)."""
    out = values.astype(np.int64)
    if zero_point is None:
        return out
    zero = zero_point.astype(np.int64)
    return out - (zero.reshape(()) if zero.size == 1 else along_axis(zero.reshape(-1), values.ndim, axis))


@define("nn.conv_integer", operands=("x", "weight", "x_zero?", "w_zero?"), infer=_conv_integer_infer,
        attrs={"strides": Attr("ints", (1, 1)), "pads": Attr("ints", (0, 0, 0, 0)),
               "dilations": Attr("ints", (1, 1)), "group": Attr("int", 1)})
def conv_integer(x: np.ndarray, weight: np.ndarray, x_zero: np.ndarray | None = None,
                 w_zero: np.ndarray | None = None, **conv_attrs) -> np.ndarray:
    """ONNX ConvInteger: the exact int32 convolution of (x − x_zero) and (w − w_zero); padding is x_zero (int64 for
    a 16-bit x: `accumulator_dtype`)."""
    return accumulators(conv2d(shifted(x, x_zero), shifted(weight, w_zero, 0), **conv_attrs), x)


def _matmul_integer_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    a, b = types[:2]
    _zero_points_fit(types, a, b, -1)
    if a.rank < 1 or b.rank != 2 or a.shape[-1] != b.shape[0]:
        raise ValueError(f"expects a [..., K] and b [K, N], got {a} and {b}")
    return [TensorType(a.shape[:-1] + b.shape[1:], accumulator_dtype(a, b))]


@define("nn.matmul_integer", operands=("a", "b", "a_zero?", "b_zero?"), infer=_matmul_integer_infer)
def matmul_integer(a: np.ndarray, b: np.ndarray, a_zero: np.ndarray | None = None,
                   b_zero: np.ndarray | None = None) -> np.ndarray:
    """ONNX MatMulInteger with a 2-D b: the exact int32 product (a − a_zero) · (b − b_zero) (int64 for a 16-bit a)."""
    return accumulators(np.matmul(shifted(a, a_zero), shifted(b, b_zero, -1)), a)


def _requantize_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    acc, multiplier, zero = types[:3]
    if acc.dtype not in ("i32", "i64") or multiplier.dtype != "f32" or zero.dtype not in QUANT_DTYPES \
            or zero.size != 1:
        raise ValueError(f"expects i32/i64 accumulators, f32 multipliers and one u8/i8 zero point, "
                         f"got {', '.join(map(str, types))}")
    per_channel = [t for t in [multiplier, *types[3:]] if t.size != 1]
    _check_per_axis(acc, per_channel, attrs["axis"])
    if len(types) > 3 and types[3].dtype != "i32":
        raise ValueError(f"the bias must be i32, got {types[3]}")
    return [TensorType(acc.shape, zero.dtype)]


@define("nn.requantize", operands=("acc", "multiplier", "zero_point", "bias?"), infer=_requantize_infer,
        attrs={"axis": Attr("int", 1)})
def requantize(acc: np.ndarray, multiplier: np.ndarray, zero_point: np.ndarray, bias: np.ndarray | None = None,
               *, axis: int) -> np.ndarray:
    """MLAS's output stage: saturate(rint(float32(acc + bias) · multiplier) + zero_point), per channel on
    `axis` when the multiplier (or bias) has one value per channel."""
    total = acc.astype(np.int32)
    if bias is not None:
        total = total + along_axis(bias.reshape(-1), acc.ndim, axis) if bias.size > 1 else total + bias.reshape(())
    scale = along_axis(multiplier.reshape(-1), acc.ndim, axis) if multiplier.size > 1 else multiplier.reshape(())
    value = np.multiply(total.astype(np.float32), scale, dtype=np.float32)
    low, high = integer_limits(zero_point.dtype)
    zero = int(zero_point.reshape(-1)[0])
    return (np.clip(np.rint(value), low - zero, high - zero) + zero).astype(zero_point.dtype)


def requantize_multiplier(x_scale: np.ndarray, w_scale: np.ndarray, y_scale: np.ndarray) -> np.ndarray:
    """float32(float32(x_scale · w_scale) / y_scale), as onnxruntime's QLinearConv and QGemm compute it."""
    product = np.multiply(np.float32(x_scale.reshape(-1)[0]), w_scale.reshape(-1).astype(np.float32),
                          dtype=np.float32)
    return np.divide(product, np.float32(y_scale.reshape(-1)[0]), dtype=np.float32)


_QLINEAR_ATTRS = {"a_scale": Attr("float"), "a_zero": Attr("int"), "b_scale": Attr("float", 1.0),
                  "b_zero": Attr("int", 0), "y_scale": Attr("float"), "y_zero": Attr("int"), "dtype": Attr("str")}


def _round_saturate(value: np.ndarray, y_zero: int, dtype: str) -> np.ndarray:
    low, high = integer_limits(dtype)
    return np.clip(np.rint(value) + y_zero, low, high).astype(TensorType((), dtype).np_dtype)


def _qlinear_add_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    a, b = types
    if a.dtype != attrs["dtype"] or b.dtype != attrs["dtype"] or attrs["dtype"] not in QUANT_DTYPES:
        raise ValueError(f"expects two {attrs['dtype']} operands (u8 or i8), got {a} and {b}")
    return [TensorType(broadcast_shapes(a.shape, b.shape), attrs["dtype"])]


def fma32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """float32 fused multiply-add a·b + c: the product of two float32 values is exact in float64, the sum is
    rounded there, then to float32 (as one rounding wherever the float64 sum is exact)."""
    return (np.asarray(a, np.float64) * np.asarray(b, np.float64) + np.asarray(c, np.float64)).astype(np.float32)


@define("nn.qlinear_add", operands=("a", "b"), infer=_qlinear_add_infer,
        attrs={**_QLINEAR_ATTRS, "as_uint8": Attr("bool", False)})
def qlinear_add(a: np.ndarray, b: np.ndarray, *, a_scale: float, a_zero: int, b_scale: float, b_zero: int,
                y_scale: float, y_zero: int, dtype: str, as_uint8: bool = False) -> np.ndarray:
    """com.microsoft QLinearAdd as MLAS's x86-64 (AVX2) kernel computes it, on the raw codes: ratios
    rA = float32(a_scale / y_scale), rB likewise, fixed = float32(y_zero − fma(rA, a_zero, float32(rB · b_zero))),
    y = saturate(rint(fma(a, rA, fma(b, rB, fixed)))); a one-element operand is folded into fixed first
    (fixed + float32(code · ratio)). `as_uint8`: an int8 QDQ add, which onnxruntime runs as uint8 with codes
    and zero points + 128 (its int8 → uint8 rewrite)."""
    shift = 128 if as_uint8 and dtype == "i8" else 0
    ratio_a = np.float32(np.float32(a_scale) / np.float32(y_scale))
    ratio_b = np.float32(np.float32(b_scale) / np.float32(y_scale))
    zero_b = np.float32(ratio_b * np.float32(b_zero + shift))
    fixed = np.float32(np.float32(y_zero + shift) - fma32(ratio_a, np.float32(a_zero + shift), zero_b))
    codes_a, codes_b = ((v.astype(np.int32) + shift).astype(np.float32) for v in (a, b))
    if codes_a.size == 1 and codes_b.size > 1:
        value = fma32(codes_b, ratio_b, np.float32(fixed + np.float32(codes_a.reshape(()) * ratio_a)))
    elif codes_b.size == 1:
        value = fma32(codes_a, ratio_a, np.float32(fixed + np.float32(codes_b.reshape(()) * ratio_b)))
    else:
        value = fma32(codes_a, ratio_a, fma32(codes_b, ratio_b, fixed))
    low, high = integer_limits(dtype)
    return (np.clip(np.rint(value), low + shift, high + shift) - shift).astype(TensorType((), dtype).np_dtype)


@define("nn.qlinear_mul", operands=("a", "b"), infer=_qlinear_add_infer,
        attrs={**_QLINEAR_ATTRS, "as_uint8": Attr("bool", False)})
def qlinear_mul(a: np.ndarray, b: np.ndarray, *, a_scale: float, a_zero: int, b_scale: float, b_zero: int,
                y_scale: float, y_zero: int, dtype: str, as_uint8: bool = False) -> np.ndarray:
    """com.microsoft QLinearMul as MLAS computes it on x86-64: the exact integer product
    (a − a_zero)·(b − b_zero) in float32, times float32(float32(a_scale·b_scale)/y_scale), plus y_zero in
    float32, rounded ties to even, saturated. `as_uint8`: an int8 QDQ multiply onnxruntime runs as uint8
    (its int8 → uint8 rewrite), where y_zero + 128 is what the float32 sum adds."""
    shift = 128 if as_uint8 and dtype == "i8" else 0
    ratio = np.float32(np.float32(a_scale) * np.float32(b_scale)) / np.float32(y_scale)
    product = (a.astype(np.int32) - a_zero) * (b.astype(np.int32) - b_zero)
    value = np.add(np.multiply(product.astype(np.float32), ratio, dtype=np.float32), np.float32(y_zero + shift),
                   dtype=np.float32)
    low, high = integer_limits(dtype)
    return (np.clip(np.rint(value), low + shift, high + shift) - shift).astype(TensorType((), dtype).np_dtype)


def _qlinear_gap_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    x = types[0]
    if x.dtype != attrs["dtype"] or x.rank < 3:
        raise ValueError(f"expects a {attrs['dtype']} tensor [N, C, spatial...], got {x}")
    return [TensorType(x.shape[:2] + (1,) * (x.rank - 2), x.dtype)]


@define("nn.qlinear_global_avg_pool", operands=("x",), infer=_qlinear_gap_infer,
        attrs={k: v for k, v in _QLINEAR_ATTRS.items() if not k.startswith("b_")})
def qlinear_global_avg_pool(x: np.ndarray, *, a_scale: float, a_zero: int, y_scale: float, y_zero: int,
                            dtype: str) -> np.ndarray:
    """com.microsoft QLinearGlobalAveragePool (NCHW) as MLAS computes it: the int32 sum of (x − a_zero)
    times float32(a_scale / (y_scale · size)), rounded ties to even, plus y_zero, saturated."""
    axes = tuple(range(2, x.ndim))
    size = int(np.prod(x.shape[2:]))
    total = x.astype(np.int32).sum(axis=axes, keepdims=True, dtype=np.int32) - np.int32(a_zero * size)
    scale = np.float32(a_scale) / np.float32(np.float32(y_scale) * np.float32(size))
    return _round_saturate(np.multiply(total.astype(np.float32), scale, dtype=np.float32), y_zero, dtype)


def pool_counts(shape: tuple[int, ...], pool: dict) -> np.ndarray:
    """The input cells in each pooling window (at least 1), float32 [1, 1, oh, ow]."""
    counts = _pool_windows(np.ones((1, 1) + tuple(shape[2:]), np.float32), 0.0, **pool).sum(axis=(4, 5))
    return np.maximum(counts, 1.0).astype(np.float32)


def _qlinear_pool_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    if types[0].dtype != attrs["dtype"]:
        raise ValueError(f"expects a {attrs['dtype']} tensor, got {types[0]}")
    return _pool_infer(types, attrs)


@define("nn.qlinear_avg_pool2d", operands=("x",), infer=_qlinear_pool_infer,
        attrs={**_POOL_ATTRS, **{k: v for k, v in _QLINEAR_ATTRS.items() if not k.startswith("b_")}})
def qlinear_avg_pool2d(x: np.ndarray, *, a_scale: float, a_zero: int, y_scale: float, y_zero: int, dtype: str,
                       **pool) -> np.ndarray:
    """com.microsoft QLinearAveragePool (NCHW, pads not counted) as onnxruntime computes it: the float32
    dequantized window summed in order, divided by the count of input cells, then
    saturate(rint(mean / y_scale + y_zero)); int8 as uint8 with both zero points + 128."""
    values = np.multiply((x.astype(np.int32) - a_zero).astype(np.float32), np.float32(a_scale), dtype=np.float32)
    windows = _pool_windows(values, 0.0, **pool)
    total = np.zeros(windows.shape[:4], np.float32)
    for i in range(windows.shape[4]):
        for j in range(windows.shape[5]):
            total += windows[..., i, j]  # onnxruntime's order: the window's rows, then its columns
    mean = np.divide(total, pool_counts(x.shape, pool), dtype=np.float32)
    # int8 runs as uint8 with zero points + 128 (onnxruntime's QDQ int8 → uint8 rewrite), and the zero
    # point is added in float32 before rounding, so the shift can change a rounding: reproduce it.
    shift = 128 if dtype == "i8" else 0
    scaled = np.add(np.divide(mean, np.float32(y_scale), dtype=np.float32), np.float32(y_zero + shift),
                    dtype=np.float32)
    low, high = integer_limits(dtype)
    return (np.clip(np.rint(scaled), low + shift, high + shift) - shift).astype(TensorType((), dtype).np_dtype)


def _subtract_zero_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    x, zero = types
    if x.dtype not in QDQ_DTYPES or zero.dtype != x.dtype or zero.size != 1:
        raise ValueError(f"expects a u8/i8/u16/i16 tensor and one zero point of its dtype, got {x} and {zero}")
    return [TensorType(x.shape, "i32")]


@define("vec.subtract_zero", operands=("x", "zero_point"), infer=_subtract_zero_infer)
def subtract_zero(x: np.ndarray, zero_point: np.ndarray) -> np.ndarray:
    """x − zero_point as int32: a quantized activation as the signed or unsigned integers crossbars take."""
    return (x.astype(np.int32) - np.int32(zero_point.reshape(-1)[0])).astype(np.int32)


def _accumulators_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    if types[0].dtype not in ("i32", "i64"):
        raise ValueError(f"expects integer accumulators, got {types[0]}")
    return [TensorType(types[0].shape, "i32")]


@define("vec.accumulators_i32", operands=("acc",), infer=_accumulators_infer)
def accumulators_i32(acc: np.ndarray) -> np.ndarray:
    """Crossbar accumulators as the int32 tensor ConvInteger and MatMulInteger produce (wrapping as int32 does)."""
    return acc.astype(np.int32)
