"""ONNX forms of the element-wise, logic, reduction and normalisation ops (`nn_logic`, `nn_reduce`,
`nn_transcendental`, `nn.layer_norm`): one small exporter each, merged into onnx_export's EXPORTERS.

An exporter gets onnx_export's GraphEmitter (`node`, `ints`, `require_opset`) and the op; reductions
give their axes as an input, so need opset 18 (13 for ReduceSum).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from onnx import helper

from rcc.ir.core import Op

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


def _cast(emitter: Any, op: Op) -> None:
    emitter.node("Cast", [op.operands[0].name], op.result.name,
                 to=helper.np_dtype_to_tensor_dtype(op.result.type.np_dtype))


def _layer_norm(emitter: Any, op: Op) -> None:
    emitter.require_opset(17)
    emitter.node("LayerNormalization", [v.name for v in op.operands], op.result.name, axis=op.attrs["axis"],
                 epsilon=op.attrs["epsilon"], stash_type=_STASH_TYPES[op.attrs["stash_type"]])


MORE_EXPORTERS: dict[str, Callable[[Any, Op], None]] = {
    **{name: _one_node(*spec) for name, spec in _ONE_NODE.items()},
    **{name: _reduction(op_type) for name, op_type in _REDUCTIONS.items()},
    "nn.argmax": _arg_reduction("ArgMax"),
    "nn.argmin": _arg_reduction("ArgMin"),
    "nn.cast": _cast,
    "nn.layer_norm": _layer_norm,
}
