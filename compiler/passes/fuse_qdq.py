"""`fuse-qdq`: turn a QDQ model's DequantizeLinear → op → QuantizeLinear groups into the integer kernels
onnxruntime runs for them under its default session options (QLinearConv, QGemm/QLinearMatMul,
QLinearAdd, QLinearAveragePool, QLinearGlobalAveragePool, and data movement on the integers themselves).

    %x  = nn.dequantize_linear(%xq, %sx, %zx)                 %acc = nn.conv_integer(%xq, %wq, %zx, %zw)
    %w  = nn.dequantize_linear(%wq, %sw, %zw) {axis = 0}  →   %yq  = nn.requantize(%acc, %m, %zy, %bq)
    %b  = nn.dequantize_linear(%bq, %sb, %zb)                  (%m = float32(float32(sx · sw) / sy))
    %y  = nn.conv2d(%x, %w, %b)
    %yq = nn.quantize_linear(%y, %sy, %zy)

Groups (the result of the float op must have the QuantizeLinear as its only reader):
- conv2d / matmul (+ add of a bias) / matmul of a transposed weight, with constant integer weights,
  per-tensor activations and per-tensor or per-output-channel weights, an int32 bias; with 4-bit weights
  or activations onnxruntime runs the float kernel, so the exact product is rescaled once instead
  (`float_kernel_ops`, as for conv_transpose2d);
- add or multiply of two per-tensor quantized tensors → `nn.qlinear_add`, `nn.qlinear_mul`; average
  pools (pads not counted) → `nn.qlinear_avg_pool2d`, `nn.qlinear_global_avg_pool`; not when onnxruntime's
  int8 → uint8 rewrite leaves the activations of two dtypes (`QdqGroup.onnxruntime_fuses`): it keeps those
  groups in float, and so does rcc;
- max pool, reshape, transpose, identity, depth/space rearrangements with equal input and output
  quantization → the same op on the integers (exactly what the float detour gives);
- sigmoid, leaky relu, softmax, concat → onnxruntime's lookup-table kernels (`fuse_qdq_tables.py`);
- conv_transpose2d, which onnxruntime runs in float → the exact integer product rescaled once
  (`fuse_qdq_deconv.py`);
- a float tanh or sigmoid of a dequantized tensor → a float32 table of MLAS's function (`fuse_qdq_tables.py`).
The float ops left without readers are removed by `dce`. A group that does not match stays in float.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from rcc.compiler.pass_context import PassContext
from rcc.compiler.passes.base import Pass
from rcc.compiler.passes.fuse_qdq_deconv import fuse_conv_transpose
from rcc.compiler.passes.fuse_qdq_tables import TABLE_MATCHERS, fuse_dequantized_function
from rcc.compiler.passes.qdq_group import Dequantized, QdqGroup, dequantized, float_bias, float_kernel_ops
from rcc.ir.builder import make_op
from rcc.ir.core import Module, Op, Value
from rcc.ir.ops.nn_quant import QUANT_DTYPES, requantize_multiplier

_ELEMENTWISE = ("nn.add", "nn.mul", "nn.global_avg_pool", "nn.avg_pool2d")
_PASSTHROUGH = ("nn.max_pool2d", "nn.reshape", "nn.transpose", "nn.identity", "nn.depth_to_space",
                "nn.space_to_depth", "nn.global_max_pool")


def _requantized(group: QdqGroup, product: str, operands: list[Value], attrs: dict, x: Dequantized,
                 w: Dequantized, bias: Value | None, axis: int) -> list[Op]:
    acc = make_op(product, operands, attrs, [group.module.fresh_name(f"{group.name}.acc")])
    multiplier = requantize_multiplier(x.scale.data, w.scale.data, group.scale.data)
    requant_operands = [acc.result, group.constant("multiplier", multiplier), group.zero]
    out = make_op("nn.requantize", requant_operands + ([bias] if bias is not None else []), {"axis": axis},
                  [group.name])
    return [acc, out]


def _integer_bias(value: Value | None) -> Value | None | bool:
    """The int32 constant under a bias's DequantizeLinear; None without a bias; False when not one."""
    if value is None:
        return None
    bias = dequantized(value)
    if bias is None or not bias.x.is_constant or bias.x.type.dtype != "i32" or bias.x.type.rank != 1:
        return False
    return bias.x


def _integer_weights(w: Dequantized) -> bool:
    """Constant 8- or 4-bit weights (16-bit weights stay a float layer, which `lower-to-xbar` quantizes)."""
    return w.x.is_constant and w.x.type.dtype in QUANT_DTYPES


def _runs_in_float(group: QdqGroup, x: Dequantized, w: Dequantized) -> bool:
    """Whether onnxruntime runs the group's product as a float kernel: it has no integer kernel for 4-bit operands
    or 16-bit activations, and on x86-64 its QDQ Conv/MatMul/Gemm selectors take uint8 activations only (int8 is
    allowed on ARM alone), so an int8 activation its int8 → uint8 rewrite did not convert keeps the group in float."""
    activations = {group.onnxruntime_dtype(x.x), group.onnxruntime_dtype(group.quantize.result)}
    return x.bits < 8 or w.bits < 8 or activations != {"u8"}


def _float_kernel(group: QdqGroup, product: str, operands: list[Value], attrs: dict, x: Dequantized,
                  w: Dequantized, bias_value: Value | None, axis: int) -> list[Op] | None:
    bias = float_bias(bias_value)
    if bias is False or group.quantize.attrs["bits"] < 8:
        return None
    acc = make_op(product, operands, attrs, [group.module.fresh_name(f"{group.name}.acc")])
    return float_kernel_ops(group, acc, x, w, bias, axis)


def _fuse_conv(group: QdqGroup) -> list[Op] | None:
    y = group.quantize.operands[0]
    conv = y.producer
    if conv is None or conv.opname != "nn.conv2d" or not group.only_read_by_quantize(y) \
            or not group.scale.type.size == 1:
        return None
    x, w = dequantized(conv.operands[0]), dequantized(conv.operands[1])
    bias_value = conv.operands[2] if len(conv.operands) > 2 else None
    bias = _integer_bias(bias_value)
    if x is None or w is None or bias is False or not x.per_tensor or not _integer_weights(w) \
            or not (w.per_tensor or w.per_axis and w.axis == 0):
        return None
    operands = [x.x, w.x, x.zero, w.zero]
    if _runs_in_float(group, x, w):
        return _float_kernel(group, "nn.conv_integer", operands, conv.attrs, x, w, bias_value, 1)
    return _requantized(group, "nn.conv_integer", operands, conv.attrs, x, w, bias, 1)


def _fuse_matmul(group: QdqGroup) -> list[Op] | None:
    y = group.quantize.operands[0]
    if y.producer is None or not group.only_read_by_quantize(y) or not group.scale.type.size == 1:
        return None
    bias_value = None
    product = y.producer
    if product.opname == "nn.add":
        lhs, rhs = product.operands
        product, bias_value = lhs.producer, rhs
        if product is None or not group.only_read_by_quantize(lhs):
            return None
    if product.opname != "nn.matmul":
        return None
    weight, output_axis = product.operands[1], 1
    if weight.producer is not None and weight.producer.opname == "nn.transpose" \
            and tuple(weight.producer.attrs["perm"]) == (1, 0):
        weight, output_axis = weight.producer.operands[0], 0
    x, w = dequantized(product.operands[0]), dequantized(weight)
    bias = _integer_bias(bias_value)
    if x is None or w is None or bias is False or not x.per_tensor or not _integer_weights(w) \
            or w.x.type.rank != 2 or not (w.per_tensor or w.per_axis and w.axis == output_axis):
        return None
    matrix = w.x if output_axis == 1 else group.constant("wq", np.ascontiguousarray(w.x.data.T))
    acc_axis = product.result.type.rank - 1
    operands = [x.x, matrix, x.zero, w.zero]
    if _runs_in_float(group, x, w):
        return _float_kernel(group, "nn.matmul_integer", operands, {}, x, w, bias_value, acc_axis)
    return _requantized(group, "nn.matmul_integer", operands, {}, x, w, bias, acc_axis)


def _same_quantization(a: Dequantized, scale: Value, zero: Value) -> bool:
    return a.scale.type == scale.type and a.zero.type == zero.type and np.array_equal(a.scale.data, scale.data) \
        and np.array_equal(a.zero.data, zero.data)


def _per_tensor_attrs(group: QdqGroup, prefix: str, operand: Dequantized) -> dict:
    return {f"{prefix}_scale": float(operand.scale.data.reshape(-1)[0]),
            f"{prefix}_zero": int(operand.zero.data.reshape(-1)[0])}


def _fuse_elementwise(group: QdqGroup) -> list[Op] | None:
    y = group.quantize.operands[0]
    op = y.producer
    if op is None or op.opname not in _ELEMENTWISE or not group.only_read_by_quantize(y) \
            or group.scale.type.size != 1:
        return None
    inputs = [dequantized(v) for v in op.operands]
    dtype = group.zero.type.dtype
    if any(d is None or not d.per_tensor or d.x.type.dtype != dtype or d.bits != 8 for d in inputs) \
            or group.quantize.attrs["bits"] != 8 or not group.onnxruntime_fuses(inputs):
        return None  # onnxruntime leaves it in float, as rcc does (an exact float32 add or multiply)
    attrs = {"y_scale": float(group.scale.data.reshape(-1)[0]), "y_zero": int(group.zero.data.reshape(-1)[0]),
             "dtype": dtype, **_per_tensor_attrs(group, "a", inputs[0])}
    if op.opname in ("nn.add", "nn.mul"):
        as_uint8 = group.onnxruntime_dtype(group.quantize.result) != dtype  # onnxruntime's int8 → uint8 rewrite
        attrs.update(_per_tensor_attrs(group, "b", inputs[1]), as_uint8=as_uint8)
        return [make_op(f"nn.qlinear_{op.opname[3:]}", [inputs[0].x, inputs[1].x], attrs, [group.name])]
    if op.opname == "nn.avg_pool2d":
        if op.attrs["count_include_pad"]:
            return None
        pool = {k: v for k, v in op.attrs.items() if k != "count_include_pad"}
        return [make_op("nn.qlinear_avg_pool2d", [inputs[0].x], {**attrs, **pool}, [group.name])]
    if y.type.rank != 4:
        return None
    return [make_op("nn.qlinear_global_avg_pool", [inputs[0].x], attrs, [group.name])]


def _fuse_passthrough(group: QdqGroup) -> list[Op] | None:
    y = group.quantize.operands[0]
    op = y.producer
    if op is None or op.opname not in _PASSTHROUGH or len(op.operands) != 1 or not group.only_read_by_quantize(y):
        return None
    x = dequantized(op.operands[0])
    if x is None or not x.per_tensor or not _same_quantization(x, group.scale, group.zero):
        return None
    return [make_op(op.opname, [x.x], op.attrs, [group.name])]


MATCHERS: tuple[Callable[[QdqGroup], list[Op] | None], ...] = (_fuse_conv, _fuse_matmul, _fuse_elementwise,
                                                             _fuse_passthrough, fuse_conv_transpose,
                                                             *TABLE_MATCHERS)


@dataclass
class FuseQdq(Pass):
    name = "fuse-qdq"

    def run(self, module: Module, ctx: PassContext) -> bool:
        changed = False
        for quantize in [op for op in module.ops if op.opname == "nn.quantize_linear"]:
            group = QdqGroup(module, quantize, module.users())
            for matcher in MATCHERS:
                new_ops = matcher(group)
                if new_ops:
                    source = quantize.operands[0].producer
                    module.replace_op(quantize, new_ops)
                    ctx.report.removed.append({"op": source.opname, "value": group.name,
                                               "fused": new_ops[-1].opname})
                    changed = True
                    break
        for op in [op for op in module.ops if op.opname in ("nn.tanh", "nn.sigmoid")]:
            new_ops = fuse_dequantized_function(module, op)
            if new_ops:
                module.replace_op(op, new_ops)
                ctx.report.removed.append({"op": op.opname, "value": op.result.name, "fused": new_ops[-1].opname})
                changed = True
        ctx.report.figures["fused"] = len(ctx.report.removed)
        return changed
