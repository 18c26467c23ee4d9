"""ONNX forms of the quantized-model ops (`ir/ops/nn_quant.py`), in standard ONNX ops only.

QuantizeLinear, DequantizeLinear, ConvInteger and MatMulInteger export as themselves (16-bit Q/DQ at opset 21;
an integer product of a 16-bit input has no ONNX form and is refused). The requantisations
are spelled with the float32 steps they are defined by, ending in QuantizeLinear with scale 1, which
rounds ties to even and saturates: `nn.requantize` → Add(bias) → Cast(float) → Mul(multiplier) →
QuantizeLinear(1, y_zero); `nn.qlinear_add`, `nn.qlinear_global_avg_pool` and `nn.qlinear_avg_pool2d`
(its windows summed slice by slice in rcc's order, not by a float AveragePool) likewise, so onnxruntime
runs every one of them to the integers rcc's semantics give. `nn.qlinear_lookup` is a Gather from its table;
`nn.qlinear_softmax` a Gather from its float table, summed in order by CumSum.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from onnx import TensorProto

from rcc.ir.core import Op, Value
from rcc.ir.errors import UnsupportedError
from rcc.ir.ops.nn_quant import WIDE_DTYPES, fma32, integer_limits, pool_counts
from rcc.ir.ops.nn_quant_tables import softmax_multiplier, softmax_table


class Emitter(Protocol):
    """What an exporter needs of `backends.onnx_export.GraphEmitter`."""

    def constant(self, base: str, array: np.ndarray) -> str: ...

    def node(self, op_type: str, inputs: list[str], output: str, **attrs: Any) -> str: ...

    def require_opset(self, version: int) -> None: ...

    def fresh(self, base: str) -> str: ...


def _scalar_or_vector(emitter: Emitter, op: Op, index: int, suffix: str) -> str:
    """Operand `index` (a constant scale or zero point) as ONNX wants it: a scalar, or 1-D per axis (a
    zero point whose values are all equal is one value: onnxruntime's ConvInteger takes no other)."""
    value = op.operands[index]
    if value.data is None or (value.type.size != 1 and not (suffix.endswith("zero")
                                                            and np.all(value.data == value.data.flat[0]))):
        return value.name
    return emitter.constant(f"{op.result.name}.{suffix}", np.asarray(value.data.flat[0]))


def require_wide_opset(emitter: Emitter, zero: Value) -> None:
    """QuantizeLinear and DequantizeLinear take int16/uint16 from opset 21 on."""
    if zero.type.dtype in WIDE_DTYPES:
        emitter.require_opset(21)


def refuse_wide_product(op: Op) -> None:
    """ONNX's integer products take 8-bit operands only, and a 16-bit one's sums outgrow an exact float32 product."""
    if op.operands[0].type.dtype in WIDE_DTYPES:
        raise UnsupportedError(f"ONNX export: {op.opname} (result {op.result.name}) of a 16-bit input: ONNX's "
                               f"integer products take 8-bit operands")


def _linear(op_type: str) -> Callable[[Emitter, Op], None]:
    def export(emitter: Emitter, op: Op) -> None:
        require_wide_opset(emitter, op.operands[2])
        inputs = [op.operands[0].name, _scalar_or_vector(emitter, op, 1, "scale"),
                  _scalar_or_vector(emitter, op, 2, "zero_point")]
        narrowed = op_type == "QuantizeLinear" and op.attrs["bits"] < 8
        output = emitter.fresh(f"{op.result.name}.8bit") if narrowed else op.result.name
        per_element = op.operands[1].type.rank > 1   # a blocked scale, expanded: blocks of one element (opset 21)
        if per_element:
            emitter.require_opset(21)
        emitter.node(op_type, inputs, output, axis=op.attrs["axis"], **({"block_size": 1} if per_element else {}))
        if narrowed:   # 4- and 2-bit codes in their 8-bit carrier: saturating to 8 bits, then to `bits`, is exact
            low, high = integer_limits(op.result.type.dtype, op.attrs["bits"])
            bounds = [emitter.constant(f"{op.result.name}.{end}", np.array(limit, op.result.type.np_dtype))
                      for end, limit in (("low", low), ("high", high))]
            emitter.node("Clip", [output, *bounds], op.result.name)

    return export


def _integer_product(op_type: str) -> Callable[[Emitter, Op], None]:
    def export(emitter: Emitter, op: Op) -> None:
        refuse_wide_product(op)
        inputs = [op.operands[0].name, op.operands[1].name]
        if len(op.operands) > 2:
            inputs.append(_scalar_or_vector(emitter, op, 2, "x_zero"))
        if len(op.operands) > 3:
            inputs.append(_scalar_or_vector(emitter, op, 3, "w_zero"))
        attrs = {}
        if op_type == "ConvInteger":
            attrs = {"kernel_shape": list(op.operands[1].type.shape[2:]), "strides": list(op.attrs["strides"]),
                     "pads": list(op.attrs["pads"]), "dilations": list(op.attrs["dilations"]),
                     "group": op.attrs["group"]}
        emitter.node(op_type, inputs, op.result.name, **attrs)

    return export


def _quantize_unit(emitter: Emitter, value: str, op: Op, zero: int | str) -> None:
    """QuantizeLinear(value, 1.0, zero): rint ties to even, + zero, saturated to the result's dtype."""
    if isinstance(zero, int):
        zero = emitter.constant(f"{op.result.name}.y_zero", np.array(zero, op.result.type.np_dtype))
    one = emitter.constant(f"{op.result.name}.one", np.array(1.0, np.float32))
    emitter.node("QuantizeLinear", [value, one, zero], op.result.name)


def _centred_float(emitter: Emitter, x: str, zero: int, base: str) -> str:
    """float32(x − zero) of a u8/i8 tensor."""
    wide = emitter.node("Cast", [x], base + "/", to=TensorProto.INT32)
    shifted = emitter.node("Sub", [wide, emitter.constant(base + ".zero", np.array(zero, np.int32))], base + "/")
    return emitter.node("Cast", [shifted], base + "/", to=TensorProto.FLOAT)


def _requantize(emitter: Emitter, op: Op) -> None:
    acc, multiplier, zero = op.operands[:3]
    total = emitter.node("Cast", [acc.name], op.result.name + "/", to=TensorProto.INT32)
    rank, axis = acc.type.rank, op.attrs["axis"]
    shape = [1] * rank
    shape[axis % rank] = -1

    def along_axis(name: str, data: np.ndarray | None, fallback: str) -> str:
        if data is None:  # a computed bias: ONNX broadcasting puts it on the last axis
            return fallback
        return emitter.constant(name, data.reshape(shape) if data.size > 1 else data.reshape(()))

    if len(op.operands) > 3:
        bias = along_axis(f"{op.result.name}.bias", op.operands[3].data, op.operands[3].name)
        total = emitter.node("Add", [total, bias], op.result.name + "/")
    values = emitter.node("Cast", [total], op.result.name + "/", to=TensorProto.FLOAT)
    scaled = emitter.node("Mul", [values, along_axis(f"{op.result.name}.multiplier", multiplier.data, multiplier.name)],
                          op.result.name + "/")
    _quantize_unit(emitter, scaled, op, _scalar_or_vector(emitter, op, 2, "y_zero"))


def _fma(emitter: Emitter, x: str, factor: np.float32, addend: str, base: str) -> str:
    """float32(x · factor + addend) rounded once: the sum taken in float64, where it is exact."""
    wide = emitter.node("Cast", [x], base + "/", to=TensorProto.DOUBLE)
    product = emitter.node("Mul", [wide, emitter.constant(base + ".ratio", np.array(factor, np.float64))], base + "/")
    total = emitter.node("Add", [product, emitter.node("Cast", [addend], base + "/", to=TensorProto.DOUBLE)], base + "/")
    return emitter.node("Cast", [total], base + "/", to=TensorProto.FLOAT)


def _qlinear_add(emitter: Emitter, op: Op) -> None:
    """`nn.qlinear_add`'s fused multiply-adds on the (shifted) codes, then QuantizeLinear(1, 0) and the shift back."""
    attrs, base = op.attrs, op.result.name
    shift = 128 if attrs["as_uint8"] and attrs["dtype"] == "i8" else 0
    ratio_a = np.float32(np.float32(attrs["a_scale"]) / np.float32(attrs["y_scale"]))
    ratio_b = np.float32(np.float32(attrs["b_scale"]) / np.float32(attrs["y_scale"]))
    zero_b = np.float32(ratio_b * np.float32(attrs["b_zero"] + shift))
    fixed = np.float32(np.float32(attrs["y_zero"] + shift) - fma32(ratio_a, np.float32(attrs["a_zero"] + shift), zero_b))
    codes = [emitter.node("Cast", [emitter.node("Add", [
        emitter.node("Cast", [operand.name], base + "/", to=TensorProto.INT32),
        emitter.constant(base + ".shift", np.array(shift, np.int32))], base + "/")], base + "/", to=TensorProto.FLOAT)
        for operand in op.operands]
    fixed_name = emitter.constant(base + ".fixed", np.array(fixed))
    sizes = [operand.type.size for operand in op.operands]
    if sizes[0] == 1 and sizes[1] > 1:
        folded = emitter.node("Add", [fixed_name, emitter.node("Mul", [codes[0], emitter.constant(
            base + ".ratio_a", np.array(ratio_a))], base + "/")], base + "/")
        value = _fma(emitter, codes[1], ratio_b, folded, base)
    elif sizes[1] == 1:
        folded = emitter.node("Add", [fixed_name, emitter.node("Mul", [codes[1], emitter.constant(
            base + ".ratio_b", np.array(ratio_b))], base + "/")], base + "/")
        value = _fma(emitter, codes[0], ratio_a, folded, base)
    else:
        value = _fma(emitter, codes[0], ratio_a, _fma(emitter, codes[1], ratio_b, fixed_name, base), base)
    if shift:
        _round_as_uint8(emitter, value, base, shift)
    else:
        _quantize_unit(emitter, value, op, 0)


def _qlinear_mul(emitter: Emitter, op: Op) -> None:
    attrs, base = op.attrs, op.result.name
    centred = [emitter.node("Sub", [emitter.node("Cast", [op.operands[index].name], base + "/", to=TensorProto.INT32),
                                    emitter.constant(f"{base}.{prefix}_zero", np.array(attrs[f"{prefix}_zero"], np.int32))],
                            base + "/") for index, prefix in enumerate(("a", "b"))]
    product = emitter.node("Cast", [emitter.node("Mul", centred, base + "/")], base + "/", to=TensorProto.FLOAT)
    ratio = np.float32(np.float32(attrs["a_scale"]) * np.float32(attrs["b_scale"])) / np.float32(attrs["y_scale"])
    scaled = emitter.node("Mul", [product, emitter.constant(base + ".ratio", np.array(ratio))], base + "/")
    shifted = emitter.node("Add", [scaled, emitter.constant(base + ".y_zero", np.array(attrs["y_zero"], np.float32))],
                           base + "/")
    _quantize_unit(emitter, shifted, op, 0)


def _qlinear_global_avg_pool(emitter: Emitter, op: Op) -> None:
    attrs, base, x = op.attrs, op.result.name, op.operands[0]
    size = int(np.prod(x.type.shape[2:]))
    wide = emitter.node("Cast", [x.name], base + "/", to=TensorProto.INT32)
    axes = emitter.constant(base + ".axes", np.arange(2, x.type.rank, dtype=np.int64))
    total = emitter.node("ReduceSum", [wide, axes], base + "/", keepdims=1)
    offset = emitter.constant(base + ".offset", np.array(attrs["a_zero"] * size, np.int32))
    centred = emitter.node("Cast", [emitter.node("Sub", [total, offset], base + "/")], base + "/", to=TensorProto.FLOAT)
    scale = np.float32(attrs["a_scale"]) / np.float32(np.float32(attrs["y_scale"]) * np.float32(size))
    scaled = emitter.node("Mul", [centred, emitter.constant(base + ".scale", np.array(scale))], base + "/")
    _quantize_unit(emitter, scaled, op, attrs["y_zero"])


def _window_sum(emitter: Emitter, op: Op, values: str, base: str) -> str:
    """The pooling windows of `values` summed cell by cell in the window's row-major order, in float32
    (pads and ceil mode's extra end area are zeros), as `nn.qlinear_avg_pool2d` sums them."""
    attrs = op.attrs
    (kh, kw), (sh, sw), (dh, dw), pads = attrs["kernel"], attrs["strides"], attrs["dilations"], attrs["pads"]
    _, _, height, width = op.operands[0].type.shape
    _, _, oh, ow = op.result.type.shape
    extra_h = max(0, (oh - 1) * sh + dh * (kh - 1) + 1 - (height + pads[0] + pads[2]))
    extra_w = max(0, (ow - 1) * sw + dw * (kw - 1) + 1 - (width + pads[1] + pads[3]))
    padded = emitter.node("Pad", [values, emitter.constant(base + ".pads", np.array(
        [0, 0, pads[0], pads[1], 0, 0, pads[2] + extra_h, pads[3] + extra_w], np.int64))], base + "/")
    total = None
    for i in range(kh):
        for j in range(kw):
            starts = np.array([i * dh, j * dw], np.int64)
            ends = starts + np.array([(oh - 1) * sh + 1, (ow - 1) * sw + 1], np.int64)
            window = emitter.node("Slice", [padded, emitter.constant(base + ".starts", starts),
                                            emitter.constant(base + ".ends", ends),
                                            emitter.constant(base + ".axes", np.array([2, 3], np.int64)),
                                            emitter.constant(base + ".steps", np.array([sh, sw], np.int64))],
                                  base + "/")
            total = window if total is None else emitter.node("Add", [total, window], base + "/")
    return total


def _qlinear_avg_pool2d(emitter: Emitter, op: Op) -> None:
    attrs, base = op.attrs, op.result.name
    values = emitter.node("Mul", [_centred_float(emitter, op.operands[0].name, attrs["a_zero"], base + ".x"),
                                  emitter.constant(base + ".a_scale", np.array(attrs["a_scale"], np.float32))],
                          base + "/")
    pool = {k: attrs[k] for k in ("kernel", "strides", "pads", "dilations", "ceil_mode")}
    counts = emitter.constant(base + ".counts", pool_counts(op.operands[0].type.shape, pool))
    mean = emitter.node("Div", [_window_sum(emitter, op, values, base), counts], base + "/")
    scaled = emitter.node("Div", [mean, emitter.constant(base + ".y_scale", np.array(attrs["y_scale"], np.float32))],
                          base + "/")
    shift = 128 if attrs["dtype"] == "i8" else 0  # as `nn.qlinear_avg_pool2d`: int8 rounds as uint8 does
    shifted = emitter.node("Add", [scaled, emitter.constant(base + ".zero", np.array(attrs["y_zero"] + shift,
                                                                                      np.float32))], base + "/")
    _round_as_uint8(emitter, shifted, base, shift)


def _round_as_uint8(emitter: Emitter, value: str, base: str, shift: int) -> None:
    """The result `base`: value rounded and saturated as uint8 (QuantizeLinear(1, 0)), then less `shift`
    (128: an int8 result computed as onnxruntime's uint8 rewrite computes it)."""
    one, zero = (emitter.constant(base + name, value) for name, value in
                 ((".one", np.array(1.0, np.float32)), (".u8_zero", np.array(0, np.uint8))))
    rounded = emitter.node("QuantizeLinear", [value, one, zero], base + "/")
    if not shift:
        emitter.node("Identity", [rounded], base)
        return
    wide = emitter.node("Cast", [rounded], base + "/", to=TensorProto.INT32)
    back = emitter.node("Sub", [wide, emitter.constant(base + ".shift", np.array(shift, np.int32))], base + "/")
    emitter.node("Cast", [back], base, to=TensorProto.INT8)


def _qlinear_lookup(emitter: Emitter, op: Op) -> None:
    """Gather from the table at the byte of x (an int8 code k at (k + 256) mod 256)."""
    x, table = op.operands
    base = op.result.name
    index = emitter.node("Cast", [x.name], base + "/", to=TensorProto.INT32)
    if x.type.dtype == "i8":
        byte = emitter.constant(base + ".bytes", np.array(256, np.int32))
        index = emitter.node("Mod", [emitter.node("Add", [index, byte], base + "/"), byte], base + "/")
    emitter.node("Gather", [table.name, index], base, axis=0)


def _qlinear_softmax(emitter: Emitter, op: Op) -> None:
    """The table at x − max + 255, summed in order (CumSum's last element), times floor(1 / y_scale), divided
    by the sum, rounded and saturated by QuantizeLinear(1, y_zero)."""
    attrs, base, axis = op.attrs, op.result.name, op.attrs["axis"]
    x = op.operands[0]
    wide = emitter.node("Cast", [x.name], base + "/", to=TensorProto.INT32)
    largest = emitter.node("GatherElements", [wide, emitter.node("ArgMax", [wide], base + "/", axis=axis, keepdims=1)],
                           base + "/", axis=axis)
    offset = emitter.node("Add", [emitter.node("Sub", [wide, largest], base + "/"),
                                  emitter.constant(base + ".top", np.array(255, np.int32))], base + "/")
    table = softmax_table(attrs["x_scale"], x.type.shape[axis])
    values = emitter.node("Gather", [emitter.constant(base + ".table", table), offset], base + "/", axis=0)
    running = emitter.node("CumSum", [values, emitter.constant(base + ".axis", np.array(axis, np.int64))], base + "/")
    total = emitter.node("Slice", [running, emitter.constant(base + ".starts", np.array([-1], np.int64)),
                                   emitter.constant(base + ".ends", np.array([x.type.shape[axis]], np.int64)),
                                   emitter.constant(base + ".axes", np.array([axis], np.int64))], base + "/")
    multiplier = softmax_multiplier(attrs["y_scale"])
    scaled = emitter.node("Mul", [values, emitter.constant(base + ".multiplier", np.array(multiplier))], base + "/")
    _quantize_unit(emitter, emitter.node("Div", [scaled, total], base + "/"), op, attrs["y_zero"])


QUANT_EXPORTERS: dict[str, Callable[[Emitter, Op], None]] = {
    "nn.quantize_linear": _linear("QuantizeLinear"),
    "nn.dequantize_linear": _linear("DequantizeLinear"),
    "nn.conv_integer": _integer_product("ConvInteger"),
    "nn.matmul_integer": _integer_product("MatMulInteger"),
    "nn.requantize": _requantize,
    "nn.qlinear_add": _qlinear_add,
    "nn.qlinear_global_avg_pool": _qlinear_global_avg_pool,
    "nn.qlinear_avg_pool2d": _qlinear_avg_pool2d,
    "nn.qlinear_mul": _qlinear_mul,
    "nn.qlinear_lookup": _qlinear_lookup,
    "nn.qlinear_softmax": _qlinear_softmax,
}
