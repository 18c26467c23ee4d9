"""Lowering of ONNX's quantization ops: QuantizeLinear, DequantizeLinear (opsets 10–21 and onnxruntime's
com.microsoft versions, which its `quantize_static` writes for 4-bit weights; per tensor, per axis and
blocked; int8, uint8, int16, uint16, int4, uint4, int2 and uint2, and float8 and float4 in
rules_quant_float.py), QLinearConv, QLinearMatMul, ConvInteger and MatMulInteger.

int4/uint4 (int2/uint2) tensors are carried as i8/u8 with `bits = 4` (2) on the Q/DQ ops (their values always
fit); a graph input or output of such a type is cast from or to its carrier. A
blocked scale (`block_size`, opset 21) is expanded to one value per element of the tensor.

Scales and zero points must be compile-time constants (but for the input zero point of ConvInteger and
MatMulInteger, which DynamicQuantizeLinear computes at run time: rules_quant_dynamic.py), and are checked here, so a malformed quantized
model is one line naming its node: a scale that is zero, negative or not finite, a zero point of another
dtype than the tensor (or a non-zero one for int32), one that does not fit `output_dtype`, per-axis
parameters whose length is not the axis's, scale and zero point of different shapes, an axis out of
range, a block size that does not divide the axis. 16-bit
tensors (onnxruntime's A16W8 models) carry `bits = 16`; onnxruntime runs their groups as float kernels
(`fuse-qdq`).
QLinearConv and QLinearMatMul become an integer product and `nn.requantize` (onnxruntime's output
stage; `ir/ops/nn_quant.py`).
"""

from __future__ import annotations

import numpy as np
from onnx import helper

from rcc.compiler.frontend.context import LowerContext
from rcc.compiler.frontend.registry import MS_DOMAIN, rule
from rcc.compiler.frontend.rules_quant_float import lower_dequantize_from_float, lower_quantize_to_float
from rcc.compiler.frontend.rules_index import slice_value
from rcc.compiler.frontend.rules_spatial import explicit_pads
from rcc.ir.core import Value
from rcc.ir.ops.nn_quant import QDQ_DTYPES, QUANT_DTYPES, integer_limits, requantize_multiplier
from rcc.ir.types import NARROW_DTYPES, TensorType, dtype_name, is_narrow, is_narrow_float, stand_in

_EIGHT_BIT = {np.dtype(np.uint8), np.dtype(np.int8)}
_CARRIED = _EIGHT_BIT | {np.dtype(np.uint16), np.dtype(np.int16)}
_HANDLED = "uint8, int8, uint16, int16, uint4, int4, uint2, int2, float8 and float4"
_FLOAT_QUANTIZED = frozenset(NARROW_DTYPES[name] for name in NARROW_DTYPES if is_narrow_float(name) and name != "bf16")
_SUB_BYTE = {"int4": 4, "uint4": 4, "int2": 2, "uint2": 2}   # ONNX's 4- and 2-bit types (ml_dtypes): their width


def _dtype_label(array: np.ndarray) -> str:
    return str(array.dtype) if array.dtype.names is None else "a custom type"


def is_sub_byte(array: np.ndarray) -> bool:
    return array.dtype.name in _SUB_BYTE


def widened(array: np.ndarray) -> np.ndarray:
    """An int4/uint4/int2/uint2 array as the int8/uint8 values rcc carries it in; other arrays unchanged."""
    return stand_in(array) if is_sub_byte(array) else array


def _is_float_quantization(dtype: np.dtype | None) -> bool:
    """Whether `dtype` is a float8 or float4 type (quantization without an integer grid)."""
    return dtype is not None and dtype in _FLOAT_QUANTIZED


def _checked_values(ctx: LowerContext, scale_index: int, zero_index: int, zero_dtype: np.dtype | None,
                    label: str) -> tuple[np.ndarray, np.ndarray]:
    """Scale and zero point (int4/uint4 widened, defaulting to zeros of `zero_dtype`, else uint8) with their
    dtypes and values checked, not their shapes."""
    scale = ctx.constant(scale_index, f"{label}scale")
    if scale.dtype != np.float32:
        raise ctx.unsupported(f"{label}scale is {scale.dtype}; rcc reads float32 scales")
    if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        raise ctx.error(f"{label}scale must be positive and finite, got {scale.reshape(-1)[:4].tolist()}")
    if ctx.has_input(zero_index):
        zero = widened(ctx.constant(zero_index, f"{label}zero point"))
    else:
        zero = np.zeros(scale.shape, zero_dtype or np.uint8)
    if zero.dtype not in _CARRIED and zero.dtype != np.int32 and not _is_float_quantization(zero.dtype):
        raise ctx.unsupported(f"{label}zero point of type {_dtype_label(zero)}: rcc handles {_HANDLED} "
                              f"quantization")
    if zero_dtype is not None and zero.dtype != zero_dtype:
        raise ctx.error(f"{label}zero point is {zero.dtype} but the tensor is {np.dtype(zero_dtype)}")
    if zero.dtype == np.int32 and np.any(zero != 0):
        raise ctx.error(f"{label}zero point of an int32 tensor must be 0, got {zero.reshape(-1)[:4].tolist()}")
    return scale, zero


def quant_params(ctx: LowerContext, scale_index: int, zero_index: int, tensor: TensorType, axis: int,
                 zero_dtype: np.dtype | None = None, what: str = "") -> tuple[np.ndarray, np.ndarray]:
    """The (scale f32, zero point) constants of a quantized tensor, checked; the zero point defaults to a
    zero of `zero_dtype` (uint8 when None)."""
    label = f"{what} " if what else ""
    scale, zero = _checked_values(ctx, scale_index, zero_index, zero_dtype, label)
    if scale.size == 1 and zero.size == 1 and scale.ndim <= 1 and zero.ndim <= 1:
        return scale.reshape(()), zero.reshape(())
    if scale.shape != zero.shape:
        raise ctx.error(f"{label}scale {list(scale.shape)} and zero point {list(zero.shape)} differ in shape")
    if scale.ndim > 1:
        raise ctx.error(f"{label}scale has rank {scale.ndim}; per-axis scales are 1-D (a blocked scale needs "
                        f"block_size)")
    if scale.ndim == 1 and scale.size != 1:
        if not -tensor.rank <= axis < tensor.rank:
            raise ctx.error(f"axis {axis} is out of range for a rank-{tensor.rank} tensor")
        if scale.size != tensor.shape[axis]:
            raise ctx.error(f"{label}scale has {scale.size} values but axis {axis} of {tensor} has "
                            f"{tensor.shape[axis]}")
    return scale, zero


def _param(ctx: LowerContext, name: str, array: np.ndarray) -> Value:
    return ctx.builder.constant(f"{ctx.node.output[0]}.{name}", array)


def _blocked_params(ctx: LowerContext, tensor: TensorType, axis: int, block_size: int,
                    zero_dtype: np.dtype | None) -> tuple[np.ndarray, np.ndarray]:
    """A blocked (opset 21) scale and zero point, checked and repeated to one value per element of `tensor`."""
    if block_size < 0:
        raise ctx.error(f"block_size must be positive, got {block_size}")
    if not -tensor.rank <= axis < tensor.rank:
        raise ctx.error(f"axis {axis} is out of range for a rank-{tensor.rank} tensor")
    axis %= tensor.rank
    length = tensor.shape[axis]
    if length % block_size:
        raise ctx.error(f"block_size {block_size} does not divide axis {axis} of {tensor} ({length})")
    scale, zero = _checked_values(ctx, 1, 2, zero_dtype, "")
    expected = tensor.shape[:axis] + (length // block_size,) + tensor.shape[axis + 1:]
    if scale.shape != expected or zero.shape != expected:
        raise ctx.error(f"blocked scale {list(scale.shape)} and zero point {list(zero.shape)} must both be "
                        f"{list(expected)} for {tensor} with block_size {block_size} on axis {axis}")
    return np.repeat(scale, block_size, axis), np.repeat(zero, block_size, axis)


def _bits_of(dtype: np.dtype) -> int:
    """The `bits` of a quantized dtype: 4 or 2 for int4/uint4 and int2/uint2 (carried in 8 bits), 16 for
    int16/uint16, else 8 (int32 tensors, biases, are not narrowed)."""
    zero = np.zeros((), dtype)
    return _SUB_BYTE[zero.dtype.name] if is_sub_byte(zero) else 16 if zero.dtype.itemsize == 2 else 8


def _range_of(dtype: np.dtype) -> tuple[int, int]:
    """The integers a quantized dtype holds, 4-bit ones included."""
    return integer_limits(widened(np.zeros((), dtype)).dtype, _bits_of(dtype))


def _qdq_params(ctx: LowerContext, tensor: TensorType, zero_dtype: np.dtype | None,
                output_dtype: np.dtype | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Scale, zero point (int4/uint4 widened) and the Q/DQ op's attributes (`axis`, `bits`)."""
    axis, block_size = int(ctx.attr("axis", 1)), int(ctx.attr("block_size", 0))
    declared = ctx.constant(2, "zero point") if ctx.has_input(2) else None
    if declared is not None and output_dtype is not None and declared.dtype != output_dtype:
        low, high = _range_of(output_dtype)
        values = widened(declared).reshape(-1)[:4].tolist()
        raise ctx.error(f"zero point {values} is {declared.dtype} but output_dtype is {output_dtype} "
                        f"(range [{low}, {high}])")
    if zero_dtype is None and declared is None:
        zero_dtype = output_dtype
    dtypes = [d for d in (declared.dtype if declared is not None else None, zero_dtype) if d is not None]
    bits = min((_bits_of(d) for d in dtypes), default=8)
    if zero_dtype is not None:
        zero_dtype = widened(np.zeros((), zero_dtype)).dtype
    if block_size:
        scale, zero = _blocked_params(ctx, tensor, axis, block_size, zero_dtype)
    else:
        scale, zero = quant_params(ctx, 1, 2, tensor, axis, zero_dtype)
    return scale, zero, {"axis": axis % max(tensor.rank, 1), "bits": bits}


def _quantized_input(ctx: LowerContext) -> Value:
    """Input 0 of a DequantizeLinear; a 4- or 2-bit constant or value becomes its i8/u8 carrier."""
    name = ctx.node.input[0]
    if name in ctx.constants and is_sub_byte(ctx.constants[name]):
        return ctx.builder.constant(f"{ctx.node.output[0]}.x", widened(ctx.constants[name]))
    x = ctx.input(0)
    if is_narrow(x.type.dtype) and not is_narrow_float(x.type.dtype):
        carrier = dtype_name(widened(np.zeros((), x.type.np_dtype)).dtype)
        return ctx.op("nn.cast", [x], {"to": carrier}, name=f"{ctx.node.output[0]}.x")
    return x


def _float_params(ctx: LowerContext, tensor: TensorType, zero_dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, int]:
    """Scale, zero point and axis of a float8/float4 Q/DQ (per tensor, per axis or blocked)."""
    axis, block_size = int(ctx.attr("axis", 1)), int(ctx.attr("block_size", 0))
    if block_size:
        scale, zero = _blocked_params(ctx, tensor, axis, block_size, zero_dtype)
    else:
        scale, zero = quant_params(ctx, 1, 2, tensor, axis, zero_dtype)
    return scale, zero, axis % max(tensor.rank, 1)


@rule("QuantizeLinear")
@rule("QuantizeLinear", domain=MS_DOMAIN)
def lower_quantize_linear(ctx: LowerContext) -> None:
    x = ctx.input(0)
    if x.type.dtype != "f32":
        raise ctx.unsupported(f"QuantizeLinear of {x.type.dtype}: rcc quantizes float32 tensors")
    output_dtype = int(ctx.attr("output_dtype", 0))
    declared = helper.tensor_dtype_to_np_dtype(output_dtype) if output_dtype else None
    zero_type = ctx.constant(2, "zero point").dtype if ctx.has_input(2) else declared
    if _is_float_quantization(zero_type):
        lower_quantize_to_float(ctx, x, *_float_params(ctx, x.type, zero_type))
        return
    if declared is not None and declared.name not in _SUB_BYTE and declared not in _CARRIED:
        raise ctx.unsupported(f"QuantizeLinear to {declared}: rcc handles {_HANDLED}")
    scale, zero, attrs = _qdq_params(ctx, x.type, None, declared)
    if zero.dtype not in _CARRIED:
        raise ctx.error(f"zero point is {zero.dtype}; QuantizeLinear produces {_HANDLED.replace(' and ', ' or ')}")
    operands = [x, _param(ctx, "scale", scale), _param(ctx, "zero_point", zero)]
    ctx.bind(0, ctx.op("nn.quantize_linear", operands, attrs))


@rule("DequantizeLinear")
@rule("DequantizeLinear", domain=MS_DOMAIN)
def lower_dequantize_linear(ctx: LowerContext) -> None:
    name = ctx.node.input[0]
    raw = ctx.constants.get(name)
    x = _quantized_input(ctx)
    if _is_float_quantization(x.type.np_dtype):
        lower_dequantize_from_float(ctx, x, *_float_params(ctx, x.type, x.type.np_dtype))
        return
    if x.type.dtype not in (*QDQ_DTYPES, "i32"):
        raise ctx.unsupported(f"DequantizeLinear of {x.type.dtype}: rcc handles {_HANDLED.replace(' and', ',')} and "
                              f"int32")
    scale, zero, attrs = _qdq_params(ctx, x.type, raw.dtype if raw is not None else x.type.np_dtype)
    if x.producer is not None and x.producer.opname == "nn.quantize_linear" and x.producer.attrs["bits"] < 8:
        attrs["bits"] = x.producer.attrs["bits"]
    operands = [x, _param(ctx, "scale", scale), _param(ctx, "zero_point", zero)]
    ctx.bind(0, ctx.op("nn.dequantize_linear", operands, attrs))


def _per_tensor(ctx: LowerContext, scale: np.ndarray, what: str) -> None:
    if scale.size != 1:
        raise ctx.error(f"{what} scale must be one value (per tensor), got {scale.size}")


def _integer_operand(ctx: LowerContext, index: int, what: str) -> Value:
    value = ctx.input(index)
    if value.type.dtype not in QUANT_DTYPES:
        raise ctx.unsupported(f"{what} of type {value.type.dtype}: rcc handles uint8 and int8")
    return value


def _conv_attrs(ctx: LowerContext, x: Value, w: Value) -> dict:
    if x.type.rank != 4 or w.type.rank != 4:
        raise ctx.unsupported(f"{x.type.rank - 2}-D {ctx.node.op_type} (rcc handles 2-D)")
    kernel = list(w.type.shape[2:])
    strides = [int(v) for v in ctx.attr("strides", [1, 1])]
    dilations = [int(v) for v in ctx.attr("dilations", [1, 1])]
    pads = explicit_pads(ctx, x.type.shape[2:], kernel, strides, dilations)
    return {"strides": strides, "pads": pads, "dilations": dilations, "group": int(ctx.attr("group", 1))}


def _weight_zero(ctx: LowerContext, index: int, w: Value, channels: int, what: str) -> np.ndarray | None:
    if not ctx.has_input(index):
        return None
    zero = ctx.constant(index, f"{what} zero point")
    if zero.dtype != w.type.np_dtype:
        raise ctx.error(f"{what} zero point is {zero.dtype} but the weight is {w.type.np_dtype}")
    if zero.size not in (1, channels) or zero.ndim > 1:
        raise ctx.error(f"{what} zero point has shape {list(zero.shape)}; expected one value or {channels}")
    return zero


def _input_zero(ctx: LowerContext, index: int, x: Value) -> np.ndarray | Value | None:
    """The input zero point: a constant, or a value computed at run time (DynamicQuantizeLinear's)."""
    if not ctx.has_input(index):
        return None
    if ctx.node.input[index] not in ctx.constants:
        zero = ctx.input(index)
        if zero.type.dtype != x.type.dtype or zero.type.size != 1:
            raise ctx.error(f"input zero point must be one {x.type.dtype}, got {zero.type}")
        return zero
    zero = ctx.constant(index, "input zero point")
    if zero.dtype != x.type.np_dtype or zero.size != 1:
        raise ctx.error(f"input zero point must be one {x.type.np_dtype}, got {zero.dtype}{list(zero.shape)}")
    return zero


def _product(ctx: LowerContext, opname: str, x: Value, w: Value, x_zero: np.ndarray | Value | None,
             w_zero: np.ndarray | None, attrs: dict, name: str | None = None) -> Value:
    operands = [x, w]
    if isinstance(x_zero, Value):
        operands.append(x_zero)
    elif x_zero is not None or w_zero is not None:
        operands.append(_param(ctx, "x_zero", x_zero if x_zero is not None else np.zeros((), x.type.np_dtype)))
    if w_zero is not None:
        operands.append(_param(ctx, "w_zero", w_zero))
    return ctx.op(opname, operands, attrs, name=name)


@rule("ConvInteger")
def lower_conv_integer(ctx: LowerContext) -> None:
    x, w = _integer_operand(ctx, 0, "input"), _integer_operand(ctx, 1, "weight")
    attrs = _conv_attrs(ctx, x, w)
    ctx.bind(0, _product(ctx, "nn.conv_integer", x, w, _input_zero(ctx, 2, x),
                         _weight_zero(ctx, 3, w, w.type.shape[0], "weight"), attrs))


@rule("MatMulInteger")
def lower_matmul_integer(ctx: LowerContext) -> None:
    a, b = _integer_operand(ctx, 0, "A"), _integer_operand(ctx, 1, "B")
    if b.type.rank != 2:
        raise ctx.unsupported(f"MatMulInteger with a rank-{b.type.rank} B (rcc handles a 2-D B)")
    ctx.bind(0, _product(ctx, "nn.matmul_integer", a, b, _input_zero(ctx, 2, a),
                         _weight_zero(ctx, 3, b, b.type.shape[1], "B"), {}))


def _requantized(ctx: LowerContext, acc: Value, x_scale: np.ndarray, w_scale: np.ndarray, y_scale: np.ndarray,
                 y_zero: np.ndarray, bias: Value | None, axis: int) -> Value:
    multiplier = requantize_multiplier(x_scale, w_scale, y_scale)
    operands = [acc, _param(ctx, "multiplier", multiplier), _param(ctx, "y_zero", y_zero.reshape(()))]
    if bias is not None:
        if bias.type.dtype != "i32" or bias.type.rank != 1:
            raise ctx.error(f"bias must be a 1-D int32 tensor, got {bias.type}")
        operands.append(bias)
    return ctx.op("nn.requantize", operands, {"axis": axis}, name=ctx.node.output[0])


@rule("QLinearConv")
def lower_qlinear_conv(ctx: LowerContext) -> None:
    x, w = _integer_operand(ctx, 0, "x"), _integer_operand(ctx, 3, "w")
    channels = w.type.shape[0]
    x_scale, x_zero = quant_params(ctx, 1, 2, x.type, 1, x.type.np_dtype, "x")
    w_scale, w_zero = quant_params(ctx, 4, 5, w.type, 0, w.type.np_dtype, "w")
    y_scale, y_zero = quant_params(ctx, 6, 7, x.type, 1, None, "y")
    _per_tensor(ctx, x_scale, "x")
    _per_tensor(ctx, y_scale, "y")
    if y_zero.dtype not in _EIGHT_BIT:
        raise ctx.error(f"y zero point is {y_zero.dtype}; QLinearConv produces uint8 or int8")
    if w_scale.size not in (1, channels):
        raise ctx.error(f"w scale has {w_scale.size} values; expected one or {channels} (output channels)")
    acc = _product(ctx, "nn.conv_integer", x, w, x_zero.reshape(()), w_zero.reshape(-1) if w_zero.size > 1
                   else w_zero.reshape(()), _conv_attrs(ctx, x, w), name=f"{ctx.node.output[0]}.acc")
    bias = ctx.input(8) if ctx.has_input(8) else None
    ctx.bind(0, _requantized(ctx, acc, x_scale, w_scale, y_scale, y_zero, bias, 1))


@rule("QLinearMatMul")
def lower_qlinear_matmul(ctx: LowerContext) -> None:
    a, b = _integer_operand(ctx, 0, "a"), _integer_operand(ctx, 3, "b")
    if b.type.rank not in (2, 3) or (b.type.rank == 3 and a.type.rank not in (2, 3)):
        raise ctx.unsupported(f"QLinearMatMul with a rank-{a.type.rank} a and a rank-{b.type.rank} b (rcc handles a "
                              "2-D b, and a 3-D b with a 2-D or 3-D a)")
    a_scale, a_zero = quant_params(ctx, 1, 2, a.type, -1, a.type.np_dtype, "a")
    y_scale, y_zero = quant_params(ctx, 6, 7, a.type, -1, None, "y")
    _per_tensor(ctx, a_scale, "a")
    _per_tensor(ctx, y_scale, "y")
    if y_zero.dtype not in _EIGHT_BIT:
        raise ctx.error(f"y zero point is {y_zero.dtype}; QLinearMatMul produces uint8 or int8")
    if b.type.rank == 3:
        ctx.bind(0, _batched_qlinear_matmul(ctx, a, b, a_scale, a_zero.reshape(()), y_scale, y_zero))
        return
    b_scale, b_zero = quant_params(ctx, 4, 5, b.type, 1, b.type.np_dtype, "b")
    b_zero = b_zero.reshape(-1) if b_zero.size > 1 else b_zero.reshape(())
    acc = _product(ctx, "nn.matmul_integer", a, b, a_zero.reshape(()), b_zero, {}, name=f"{ctx.node.output[0]}.acc")
    ctx.bind(0, _requantized(ctx, acc, a_scale, b_scale, y_scale, y_zero, None, -1 % acc.type.rank))


def _batch_params(ctx: LowerContext, b: Value) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A 3-D b's scale and zero point for each of its batches: one value for all, or, as onnxruntime takes them
    per column, [B, 1, N] (each batch's own columns)."""
    batches, columns = b.type.shape[0], b.type.shape[2]
    scale = ctx.constant(4, "b scale")
    if scale.size == 1:
        b_scale, b_zero = quant_params(ctx, 4, 5, b.type, 1, b.type.np_dtype, "b")
        return [b_scale] * batches, [b_zero.reshape(())] * batches
    scale, zero = _checked_values(ctx, 4, 5, b.type.np_dtype, "b ")
    per_column = (batches, 1, columns)
    scale, zero = (np.broadcast_to(a, per_column) if a.size == 1 else a for a in (scale, zero))   # one for all
    if scale.shape != per_column or zero.shape != per_column:
        raise ctx.error(f"b scale {list(scale.shape)} and zero point {list(zero.shape)} of a 3-D b {list(b.type.shape)} "
                        f"must be one value or [{batches}, 1, {columns}] (per column of each batch)")
    return list(scale.reshape(batches, columns)), list(zero.reshape(batches, columns))


def _batched_qlinear_matmul(ctx: LowerContext, a: Value, b: Value, a_scale: np.ndarray, a_zero: np.ndarray,
                            y_scale: np.ndarray, y_zero: np.ndarray) -> Value:
    """QLinearMatMul of a 3-D b [B, K, N] and a [P, K] or [B', P, K], batches broadcast as ONNX's MatMul: one 2-D
    `nn.matmul_integer` per batch (a constant b's slices are each a weight matrix for crossbars), requantized with
    that batch's b scale, stacked along the batch axis."""
    a_batches, b_batches = (a.type.shape[0] if a.type.rank == 3 else 1), b.type.shape[0]
    if a_batches != b_batches and 1 not in (a_batches, b_batches):
        raise ctx.error(f"a {list(a.type.shape)} and b {list(b.type.shape)}: batch sizes do not broadcast")
    rows, columns = a.type.shape[-2], b.type.shape[-1]
    scales, zeros = _batch_params(ctx, b)

    def batch(x: Value, index: int) -> Value:
        if x.type.rank == 2:
            return x
        part = slice_value(ctx, x, {0: (min(index, x.type.shape[0] - 1), 1, 1)})
        return ctx.op("nn.reshape", [part], {"shape": tuple(x.type.shape[1:])})

    parts = []
    for index in range(max(a_batches, b_batches)):
        scale, zero = scales[min(index, b_batches - 1)], zeros[min(index, b_batches - 1)]
        acc = _product(ctx, "nn.matmul_integer", batch(a, index), batch(b, index), a_zero,
                       zero if zero.size > 1 else zero.reshape(()), {})
        multiplier = requantize_multiplier(a_scale, scale, y_scale)
        requantized = ctx.op("nn.requantize", [acc, _param(ctx, f"multiplier{index}", multiplier),
                                               _param(ctx, "y_zero", y_zero.reshape(()))], {"axis": 1})
        parts.append(ctx.op("nn.reshape", [requantized], {"shape": (1, rows, columns)}))
    return ctx.op("nn.concat", parts, {"axis": 0}, name=ctx.node.output[0])

