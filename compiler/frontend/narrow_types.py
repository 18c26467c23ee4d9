"""Where ONNX's narrow element types (bfloat16, float8, float4, int4/uint4, int2/uint2) may go in a model rcc lowers.

onnxruntime's CPU provider stores, moves, casts, quantizes and dequantizes these types and has no arithmetic
kernels for them (measured on 1.32: Add, Relu, MatMul, Where, Expand of bfloat16 are "not implemented"; float8
and 4-bit tensors are refused by its type checks), so rcc takes them in the same places: the ops of
`CARRYING_OPS`. Any other node that reads or writes one is refused in one line naming the node and the type.

A graph output declared as a 4- or 2-bit type whose value rcc carries in int8/uint8 (a QuantizeLinear's,
`rules_quant.py`) is cast to the declared type (`declared_output`).
"""

from __future__ import annotations

import onnx

from rcc.compiler.frontend.context import LowerContext
from rcc.ir.core import Value
from rcc.ir.types import dtype_name, is_narrow, is_narrow_float

CARRYING_OPS = frozenset({
    "Cast", "CastLike", "QuantizeLinear", "DequantizeLinear", "Identity", "Reshape", "Flatten", "Squeeze",
    "Unsqueeze", "Transpose", "Concat", "Split", "Slice", "Gather", "Pad", "Shape", "Size", "Constant",
})


def _narrow_dtype(ctx: LowerContext, name: str) -> str | None:
    if name in ctx.values:
        dtype = ctx.values[name].type.dtype
    elif name in ctx.constants:
        dtype = dtype_name(ctx.constants[name].dtype) if ctx.constants[name].dtype.names is None else ""
    else:
        return None
    return dtype if is_narrow(dtype) else None


def check_narrow_use(ctx: LowerContext, node: onnx.NodeProto, names: list[str]) -> None:
    """UnsupportedError naming the node when one of `names` (its inputs, or its results once lowered) holds a
    narrow type and the node is not one of `CARRYING_OPS`."""
    if node.op_type in CARRYING_OPS:   # com.microsoft's QuantizeLinear and DequantizeLinear too
        return
    for name in names:
        dtype = _narrow_dtype(ctx, name) if name else None
        if dtype is not None:
            raise ctx.unsupported(f"{dtype} tensor {name!r}: rcc (as onnxruntime's CPU kernels) computes nothing on "
                                  f"this type; it casts, quantizes, dequantizes and moves it "
                                  f"({', '.join(sorted(CARRYING_OPS))})")


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
