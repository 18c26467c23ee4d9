"""`fuse-qdq`'s groups that onnxruntime runs as lookup-table kernels (`ir/ops/nn_quant_tables.py`):

    DequantizeLinear → Sigmoid / LeakyRelu → QuantizeLinear   →  nn.qlinear_lookup(%xq, %table)
    DequantizeLinear → Softmax → QuantizeLinear               →  nn.qlinear_softmax(%xq)
    DequantizeLinear (each input) → Concat → QuantizeLinear   →  nn.concat of each input as it is (same scale
                                                                 and zero point) or requantised by a table

All per tensor, the integers of one dtype throughout (onnxruntime's QLinearSigmoid, QLinearLeakyRelu,
QLinearSoftmax, QLinearConcat; a concat it leaves in float, DequantizeLinear → Concat → QuantizeLinear,
gives the same integers as the table). A float Tanh or Sigmoid of a DequantizeLinear (the float tail of a
quantized model) becomes a lookup in a float32 table of MLAS's function (`fuse_dequantized_function`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rcc.compiler.passes.qdq_group import Dequantized, QdqGroup, dequantized
from rcc.ir.builder import make_op
from rcc.ir.core import Module, Op, Value
from rcc.ir.ops.nn_quant import QUANT_DTYPES
from rcc.ir.ops.nn_quant_tables import float_table, leaky_relu_function, lookup_table, mlas_logistic, mlas_tanh

_FUNCTIONS: dict[str, Callable[[dict], Callable[[np.ndarray], np.ndarray]]] = {
    "nn.sigmoid": lambda attrs: mlas_logistic,
    "nn.leaky_relu": lambda attrs: leaky_relu_function(attrs["alpha"]),
}


def _scalar(value: Value) -> float | int:
    return value.data.reshape(-1)[0].item()


def _float_operands(group: QdqGroup, opnames: tuple[str, ...]) -> tuple[Op, list[Dequantized]] | None:
    """The float op under the group's QuantizeLinear and its per-tensor dequantized operands, all of the
    group's dtype; None when the group is not one of these."""
    y = group.quantize.operands[0]
    op = y.producer
    if op is None or op.opname not in opnames or not group.only_read_by_quantize(y) or group.scale.type.size != 1:
        return None
    inputs = [dequantized(v) for v in op.operands]
    if any(d is None or not d.per_tensor or d.x.type.dtype != group.zero.type.dtype for d in inputs) \
            or group.zero.type.dtype not in QUANT_DTYPES:   # 256-entry tables: 16-bit groups stay in float
        return None
    return op, inputs


def _table(group: QdqGroup, x: Dequantized, function: Callable[[np.ndarray], np.ndarray] | None = None) -> Value:
    table = lookup_table(group.zero.type.dtype, _scalar(x.scale), _scalar(x.zero), _scalar(group.scale),
                         _scalar(group.zero), *([function] if function else []))
    return group.constant("table", table)


def fuse_lookup(group: QdqGroup) -> list[Op] | None:
    """Sigmoid or LeakyRelu → one table lookup."""
    found = _float_operands(group, tuple(_FUNCTIONS))
    if found is None:
        return None
    op, (x,) = found
    return [make_op("nn.qlinear_lookup", [x.x, _table(group, x, _FUNCTIONS[op.opname](op.attrs))], {},
                    [group.name])]


def fuse_softmax(group: QdqGroup) -> list[Op] | None:
    found = _float_operands(group, ("nn.softmax",))
    if found is None:
        return None
    op, (x,) = found
    attrs = {"axis": op.attrs["axis"], "x_scale": float(_scalar(x.scale)), "y_scale": float(_scalar(group.scale)),
             "y_zero": int(_scalar(group.zero)), "dtype": group.zero.type.dtype}
    return [make_op("nn.qlinear_softmax", [x.x], attrs, [group.name])]


def _same(x: Dequantized, group: QdqGroup) -> bool:
    return np.float32(_scalar(x.scale)) == np.float32(_scalar(group.scale)) and _scalar(x.zero) == _scalar(group.zero)


def fuse_concat(group: QdqGroup) -> list[Op] | None:
    found = _float_operands(group, ("nn.concat",))
    if found is None:
        return None
    op, inputs = found
    ops, parts = [], []
    for index, x in enumerate(inputs):
        if _same(x, group):
            parts.append(x.x)
            continue
        lookup = make_op("nn.qlinear_lookup", [x.x, _table(group, x)], {},
                         [group.module.fresh_name(f"{group.name}.in{index}")])
        ops.append(lookup)
        parts.append(lookup.result)
    return ops + [make_op("nn.concat", parts, op.attrs, [group.name])]


_FLOAT_FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"nn.tanh": mlas_tanh, "nn.sigmoid": mlas_logistic}


def fuse_dequantized_function(module: Module, op: Op) -> list[Op] | None:
    """Tanh or Sigmoid of a per-tensor DequantizeLinear (left in float: no QuantizeLinear after it) → a
    lookup in a float32 table of MLAS's function of the 256 dequantized codes, which onnxruntime's float
    kernel gives for each of them."""
    x = dequantized(op.operands[0]) if op.opname in _FLOAT_FUNCTIONS else None
    if x is None or not x.per_tensor or x.x.type.dtype not in QUANT_DTYPES:
        return None
    table = float_table(x.x.type.dtype, _scalar(x.scale), _scalar(x.zero), _FLOAT_FUNCTIONS[op.opname])
    constant = module.add_constant(module.fresh_name(f"{op.result.name}.table"), table)
    return [make_op("nn.qlinear_lookup", [x.x, constant], {}, [op.result.name])]


TABLE_MATCHERS: tuple[Callable[[QdqGroup], list[Op] | None], ...] = (fuse_lookup, fuse_softmax, fuse_concat)
