"""ONNX forms of the element-wise, logic, reduction (and running-sum) and normalisation ops (`nn_logic`, `nn_reduce`,
`nn_transcendental`, `nn.layer_norm`): one small exporter each, merged into onnx_export's EXPORTERS.

An exporter gets onnx_export's GraphEmitter (`node`, `ints`, `require_opset`) and the op; reductions
give their axes as an input, so need opset 18 (13 for ReduceSum).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from onnx import helper

from rcc.ir.core import Op
from rcc.ir.ops.nn_math import TRANSCENDENTAL
from rcc.ir.ops.nn_select import ONE_HOT_KERNELS
from rcc.ir.types import DTYPES

# IR op → (ONNX op type, {ONNX attribute: IR attribute}, opset the ONNX op needs)
_ONE_NODE: dict[str, tuple[str, dict[str, str], int]] = {
    "nn.equal": ("Equal", {}, 13), "nn.less": ("Less", {}, 13), "nn.less_equal": ("LessOrEqual", {}, 13),
    "nn.greater": ("Greater", {}, 13), "nn.greater_equal": ("GreaterOrEqual", {}, 13),
    "nn.logical_and": ("And", {}, 13), "nn.logical_or": ("Or", {}, 13), "nn.logical_xor": ("Xor", {}, 13),
    "nn.logical_not": ("Not", {}, 13), "nn.where": ("Where", {}, 13),
    "nn.erf": ("Erf", {}, 13), "nn.gelu": ("Gelu", {"approximate": "approximate"}, 20),
    "nn.hard_sigmoid": ("HardSigmoid", {"alpha": "alpha", "beta": "beta"}, 13),
    "nn.hard_swish": ("HardSwish", {}, 14), "nn.mish": ("Mish", {}, 18),
    "nn.reciprocal": ("Reciprocal", {}, 13), "nn.log": ("Log", {}, 13), "nn.hardmax": ("Hardmax", {"axis": "axis"}, 13),
    **{name: (name[3:].capitalize(), {}, 13) for name in TRANSCENDENTAL},
    "nn.floor": ("Floor", {}, 13), "nn.ceil": ("Ceil", {}, 13), "nn.round": ("Round", {}, 11),
    "nn.isnan": ("IsNaN", {}, 13),
    "nn.bitwise_and": ("BitwiseAnd", {}, 18), "nn.bitwise_or": ("BitwiseOr", {}, 18),
    "nn.bitwise_xor": ("BitwiseXor", {}, 18), "nn.bitwise_not": ("BitwiseNot", {}, 18),
}
_REDUCTIONS = {"nn.reduce_sum": "ReduceSum", "nn.reduce_mean": "ReduceMean", "nn.reduce_max": "ReduceMax",
               "nn.reduce_min": "ReduceMin", "nn.reduce_prod": "ReduceProd", "nn.reduce_l1": "ReduceL1",
               "nn.reduce_l2": "ReduceL2", "nn.reduce_sum_square": "ReduceSumSquare",
               "nn.reduce_log_sum": "ReduceLogSum", "nn.reduce_log_sum_exp": "ReduceLogSumExp"}
_STASH_TYPES = {"f32": 1, "f64": 11}


def _one_node(op_type: str, attrs: dict[str, str], opset: int) -> Callable[[Any, Op], None]:
    def export(emitter: Any, op: Op) -> None:
        emitter.require_opset(opset)
        emitter.node(op_type, [v.name for v in op.operands], op.result.name,
                     **{key: op.attrs[attr] for key, attr in attrs.items()})

    return export


def _reduction(op_type: str) -> Callable[[Any, Op], None]:
    def export(emitter: Any, op: Op) -> None:
        # axes as an input (never as an attribute, which a later op's newer opset would invalidate)
        emitter.require_opset(13 if op_type == "ReduceSum" else 18)
        emitter.node(op_type, [op.operands[0].name, emitter.ints(op.result.name + ".axes", op.attrs["axes"])],
                     op.result.name, keepdims=int(op.attrs["keepdims"]), noop_with_empty_axes=1)

    return export


def _arg_reduction(op_type: str) -> Callable[[Any, Op], None]:
    def export(emitter: Any, op: Op) -> None:
        emitter.node(op_type, [op.operands[0].name], op.result.name, axis=op.attrs["axis"],
                     keepdims=int(op.attrs["keepdims"]), select_last_index=int(op.attrs["select_last_index"]))

    return export


# the opset from which Cast and the data-movement ops take each narrow type (bfloat16 13, float8 and 4-bit 21,
# float4 23, e8m0 24, 2-bit 25)
NARROW_OPSETS = {"bf16": 13, "f8e4m3fn": 21, "f8e4m3fnuz": 21, "f8e5m2": 21, "f8e5m2fnuz": 21, "i4": 21, "u4": 21,
                "f4e2m1": 23, "f8e8m0": 24, "i2": 25, "u2": 25}


def _cast(emitter: Any, op: Op) -> None:
    to, source = op.attrs["to"], op.operands[0].type.dtype
    emitter.require_opset(max(NARROW_OPSETS.get(to, 1), NARROW_OPSETS.get(source, 1)))
    extra = {}
    if to.startswith("f8") and not op.attrs["saturate"]:
        extra["saturate"] = 0
    if to == "f8e8m0" and op.attrs["round_mode"] != "up":
        extra["round_mode"] = op.attrs["round_mode"]
    emitter.node("Cast", [op.operands[0].name], op.result.name,
                 to=helper.np_dtype_to_tensor_dtype(op.result.type.np_dtype), **extra)


def _cumsum(emitter: Any, op: Op) -> None:
    emitter.require_opset(14)
    emitter.node("CumSum", [op.operands[0].name, emitter.ints(op.result.name + ".axis", [op.attrs["axis"]])],
                 op.result.name, exclusive=int(op.attrs["exclusive"]), reverse=int(op.attrs["reverse"]))


def _top_k_indices(emitter: Any, op: Op) -> None:
    """TopK's indices output (its values output unread: rcc gathers them)."""
    emitter.require_opset(11)
    emitter.nodes.append(helper.make_node(
        "TopK", [op.operands[0].name, emitter.ints(op.result.name + ".k", [op.attrs["k"]])],
        [op.result.name + ".values", op.result.name], name=op.result.name, axis=op.attrs["axis"],
        largest=int(op.attrs["largest"]), sorted=1))


def _one_hot(emitter: Any, op: Op) -> None:
    """OneHot with a scalar depth of a dtype onnxruntime has a kernel for beside the indices' and values'."""
    emitter.require_opset(11)
    indices, values = (v.type.dtype for v in op.operands)
    depth_dtype = next((d for i, d, v in sorted(ONE_HOT_KERNELS) if (i, v) == (indices, values)), "i64")
    depth = emitter.constant(op.result.name + ".depth", np.array(op.attrs["depth"], DTYPES[depth_dtype]))
    emitter.node("OneHot", [op.operands[0].name, depth, op.operands[1].name], op.result.name, axis=op.attrs["axis"])


def _trilu(emitter: Any, op: Op) -> None:
    emitter.require_opset(14)
    emitter.node("Trilu", [op.operands[0].name, emitter.ints(op.result.name + ".k", [op.attrs["k"]])],
                 op.result.name, upper=int(op.attrs["upper"]))


def _isinf(emitter: Any, op: Op) -> None:
    emitter.require_opset(10)
    emitter.node("IsInf", [op.operands[0].name], op.result.name, detect_negative=int(op.attrs["detect_negative"]),
                 detect_positive=int(op.attrs["detect_positive"]))


def _mod(emitter: Any, op: Op) -> None:
    """Mod-13, or Mod-28 for a float remainder with the divisor's sign (fmod=0)."""
    emitter.require_opset(28 if not op.attrs["fmod"] and op.operands[0].type.dtype.startswith("f") else 13)
    emitter.node("Mod", [v.name for v in op.operands], op.result.name, fmod=int(op.attrs["fmod"]))


def _bit_shift(emitter: Any, op: Op) -> None:
    emitter.require_opset(11 if op.operands[0].type.dtype.startswith("u") else 28)  # signed shifts: opset 28
    emitter.node("BitShift", [v.name for v in op.operands], op.result.name, direction=op.attrs["direction"])


def _normalization(op_type: str, opset: int) -> Callable[[Any, Op], None]:
    def export(emitter: Any, op: Op) -> None:
        emitter.require_opset(opset)
        emitter.node(op_type, [v.name for v in op.operands], op.result.name, axis=op.attrs["axis"],
                     epsilon=op.attrs["epsilon"], stash_type=_STASH_TYPES[op.attrs["stash_type"]])

    return export


MORE_EXPORTERS: dict[str, Callable[[Any, Op], None]] = {
    **{name: _one_node(*spec) for name, spec in _ONE_NODE.items()},
    **{name: _reduction(op_type) for name, op_type in _REDUCTIONS.items()},
    "nn.argmax": _arg_reduction("ArgMax"),
    "nn.argmin": _arg_reduction("ArgMin"),
    "nn.cast": _cast,
    "nn.layer_norm": _normalization("LayerNormalization", 17),
    "nn.rms_norm": _normalization("RMSNormalization", 23),
    "nn.cumsum": _cumsum,
    "nn.top_k_indices": _top_k_indices,
    "nn.one_hot": _one_hot,
    "nn.trilu": _trilu,
    "nn.isinf": _isinf,
    "nn.bit_shift": _bit_shift,
    "nn.mod": _mod,
}
