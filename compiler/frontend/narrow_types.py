"""Where ONNX's narrow element types (bfloat16, float8, float4, int4/uint4, int2/uint2) may go in a model rcc lowers.

onnxruntime's CPU provider casts, quantizes and dequantizes these types, moves some of them, and has no arithmetic
kernels for them (Add, Relu, MatMul, Where, Expand of bfloat16 are "not implemented"; float8 and 4-bit tensors are
refused by its type checks). rcc takes them where onnxruntime 1.32 creates a session for them (measured at opset
25, `MOVING_OPS`): any other node that reads or writes one is refused in one line naming the node and the type.

A graph output declared as a 4- or 2-bit type whose value rcc carries in int8/uint8 (a QuantizeLinear's,
`rules_quant.py`) is cast to the declared type (`declared_output`).
"""

from __future__ import annotations

import onnx

from rcc.compiler.frontend.context import LowerContext
from rcc.ir.core import Value
from rcc.ir.types import dtype_name, is_narrow, is_narrow_float

CONVERTING_OPS = frozenset({"Cast", "CastLike", "QuantizeLinear", "DequantizeLinear", "Constant"})   # every type
_FLOAT8_MOVES = frozenset({"Identity", "Reshape", "Transpose", "Shape", "If"})
MOVING_OPS = {   # the data movement onnxruntime has kernels for, by type
    "bf16": frozenset({"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Split",
                       "Slice", "Gather", "Pad", "Shape", "If"}),
    **dict.fromkeys(("f8e4m3fn", "f8e4m3fnuz", "f8e5m2", "f8e5m2fnuz"), _FLOAT8_MOVES),
    **dict.fromkeys(("f8e8m0", "f4e2m1"), frozenset({"Shape"})),
    **dict.fromkeys(("i4", "u4", "i2", "u2"), frozenset({"Transpose", "Shape"})),
}


def _narrow_dtype(ctx: LowerContext, name: str) -> str | None:
    if name in ctx.values:
        dtype = ctx.values[name].type.dtype
    elif name in ctx.constants:
        try:
            dtype = dtype_name(ctx.constants[name].dtype)
        except KeyError:   # a dtype the IR does not carry (strings): the rule that reads it says so
            return None
    else:
        return None
    return dtype if is_narrow(dtype) else None


def check_narrow_use(ctx: LowerContext, node: onnx.NodeProto, names: list[str]) -> None:
    """UnsupportedError naming the node when one of `names` (its inputs, or its results once lowered) holds a
    narrow type that the node's op does not take (`CONVERTING_OPS`, `MOVING_OPS`)."""
    if node.op_type in CONVERTING_OPS:   # com.microsoft's QuantizeLinear and DequantizeLinear too
        return
    for name in names:
        dtype = _narrow_dtype(ctx, name) if name else None
        if dtype is not None and node.op_type not in MOVING_OPS[dtype]:
            raise ctx.unsupported(f"{dtype} tensor {name!r}: onnxruntime has no {node.op_type} kernel for this type "
                                  f"(it casts, quantizes and dequantizes it, and moves it with "
                                  f"{', '.join(sorted(MOVING_OPS[dtype]))})")


def declared_output(ctx: LowerContext, info: onnx.ValueInfoProto, value: Value) -> Value:
    """`value`, cast to the graph output's declared 4- or 2-bit type when it is carried in int8/uint8."""
    if not info.type.HasField("tensor_type") or not info.type.tensor_type.elem_type:
        return value
    try:
        declared = dtype_name(onnx.helper.tensor_dtype_to_np_dtype(info.type.tensor_type.elem_type))
    except (KeyError, ValueError, TypeError):
        return value
    if not is_narrow(declared) or is_narrow_float(declared) or value.type.dtype not in ("i8", "u8"):
        return value
    if value.name == info.name:  # free the name for the output
        value.name = ctx.builder.fresh(info.name + ".carried")
        ctx.builder.taken.discard(info.name)
    return ctx.builder.op("nn.cast", [value], {"to": declared}, name=info.name)
