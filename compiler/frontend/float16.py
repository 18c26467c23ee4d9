"""Float16 models, computed as onnxruntime's CPU provider computes them: in float32 between float16 roundings.

onnxruntime has float16 CPU kernels for data movement and a few ops (FLOAT16_KERNELS); every other float16 node
it runs in float32 behind inserted casts, and it keeps consecutive such nodes in float32, so a value is rounded
to float16 only where it leaves that region: into a float16 kernel, or as a graph output. rcc lowers the same
way. A float16 node outside FLOAT16_KERNELS is lowered on float32 copies of its float16 inputs (a constant
converted exactly; a value its producer left in float32, else one `nn.cast`), and each float32 result is
rounded to float16 by one `nn.cast` that only its float16 readers keep (dead-code elimination drops the rest),
while later float32 nodes read the unrounded value. Crossbars see float32 weights.

    %y1.f32 = nn.conv2d(%x.f32, %w1.f32) {...}     : f32    %w1.f32: the float16 weights, exact
    %y2.f32 = nn.relu(%y1.f32)                     : f32    (%y1 = nn.cast(%y1.f32), unread: dropped)
    %y2     = nn.cast(%y2.f32) {to = "f16"}        : f16    read by a Reshape (a float16 kernel) or an output

Measured on onnxruntime 1.32 (x86-64): Conv, Gemm, MatMul, BatchNormalization, Relu, Add, Softmax, pooling, the
reductions, Resize, Where and the other arithmetic get casts; Reshape, Transpose, Concat, Slice, Gather,
Split, Expand, Squeeze, Unsqueeze, Flatten, Identity, Clip, Max, Min, Round, Sign, Cast, IsNaN, Shrink,
GatherElements and LayerNormalization are float16 kernels.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx

from rcc.compiler.frontend.context import LowerContext

FLOAT16_KERNELS = frozenset({
    "Reshape", "Transpose", "Concat", "Slice", "Gather", "GatherElements", "Split", "Expand", "Squeeze",
    "Unsqueeze", "Flatten", "Identity", "Clip", "Max", "Min", "Round", "Sign", "Cast", "CastLike", "IsNaN",
    "Shrink", "LayerNormalization",
    # not arithmetic on float16 values, or holding subgraphs and sequences
    "Shape", "Size", "If", "Loop", "Scan", "SequenceConstruct", "SequenceAt", "SequenceInsert", "SequenceEmpty",
    "SplitToSequence", "ConcatFromSequence", "SequenceLength"})
_FLOAT16_RESULTLESS = frozenset({"Cast", "CastLike", "IsNaN", "Shape", "Size", "If", "Loop", "Scan", "SequenceConstruct",
                                 "SequenceAt", "SequenceInsert", "SequenceEmpty", "SplitToSequence",
                                 "ConcatFromSequence", "SequenceLength"})  # no float16 result, or a subgraph


def computes_in_float32(ctx: LowerContext, node: onnx.NodeProto) -> bool:
    """Whether onnxruntime runs float16 node `node` (its first float input float16) in float32: a standard op
    outside FLOAT16_KERNELS, or an isolated one inside (`_isolated`). A float32 node reading float16 weights is
    not one: onnxruntime refuses the mixed types, and so does lowering it."""
    if node.domain not in ("", "ai.onnx") or _first_float(ctx, node) != np.float16:
        return False
    return node.op_type not in FLOAT16_KERNELS or _isolated(ctx, node)


def _isolated(ctx: LowerContext, node: onnx.NodeProto) -> bool:
    """onnxruntime's isolated float16 node (its InsertCastTransformer, 1.32), which it moves to float32 to spare
    the casts around it: a float16 kernel that reads some node's result and gives no graph output, whose
    float16 operands (the first tensor of each typed input of its schema: a Concat's first input only) come
    from nodes that run in float32 where they come from a node at all, and whose float16 results are read only
    by nodes outside FLOAT16_KERNELS. Nodes are visited in order: a node moved earlier counts as float32, a
    later one as what its kernel is."""
    if node.op_type in _FLOAT16_RESULTLESS or any(name in ctx.graph_outputs for name in node.output) or \
            not any(name in ctx.producers for name in node.input if name):
        return False
    for index in _typed_operands(node, ctx.opset):
        name = node.input[index]
        if name in ctx.producers and _dtype(ctx, name) == np.float16 and name not in ctx.float32_results and \
                (name not in ctx.constants or ctx.producers[name].op_type in FLOAT16_KERNELS):
            return False
    readers = [reader for name in node.output if name for reader in ctx.readers.get(name, [])]
    return all(reader.op_type not in FLOAT16_KERNELS for reader in readers)


def _typed_operands(node: onnx.NodeProto, opset: int) -> list[int]:
    """The positions of the inputs onnxruntime looks at for float16: per formal input of the node's schema typed
    by a type variable, its first tensor."""
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain)
    except onnx.defs.SchemaError:
        return []
    variables = {constraint.type_param_str for constraint in schema.type_constraints}
    return [index for index, formal in enumerate(schema.inputs)
            if index < len(node.input) and node.input[index] and formal.type_str in variables]


def lower_in_float32(ctx: LowerContext, lowering: Callable[[LowerContext], None]) -> None:
    """Run `lowering` on the float16 node with its float16 inputs in float32; its float32 results are bound
    rounded to float16, with their float32 values kept for later float32 nodes."""
    node = ctx.node
    widened = onnx.NodeProto()
    widened.CopyFrom(node)
    for position, name in enumerate(node.input):
        if name and _dtype(ctx, name) == np.float16:
            widened.input[position] = _float32_copy(ctx, name)
    for position, name in enumerate(node.output):
        if name:
            widened.output[position] = _unused_name(ctx, f"{name}.f32")
    ctx.node = widened
    try:
        lowering(ctx)
    finally:
        ctx.node = node
    for position, name in enumerate(node.output):
        result = ctx.values.get(widened.output[position]) if name else None
        if result is None:
            continue
        if result.type.dtype == "f32":
            ctx.float32_copies[name] = widened.output[position]
            ctx.float32_results.add(name)
            result = ctx.op("nn.cast", [result], {"to": "f16"})
        ctx.bind(position, result)


def _first_float(ctx: LowerContext, node: onnx.NodeProto) -> np.dtype | None:
    """The type of the node's first float input: its float results' type (Where's first input is a condition)."""
    return next((_dtype(ctx, name) for name in node.input if name and (_dtype(ctx, name) or np.dtype(bool)).kind == "f"),
                None)


def _dtype(ctx: LowerContext, name: str) -> np.dtype | None:
    if name in ctx.constants:
        return ctx.constants[name].dtype
    return ctx.values[name].type.np_dtype if name in ctx.values else None


def _float32_copy(ctx: LowerContext, name: str) -> str:
    """The name of `name`'s float32 value: the one its producer computed, else a copy made on first use (a
    constant converted, a value cast)."""
    if name in ctx.float32_copies:
        return ctx.float32_copies[name]
    wide = ctx.float32_copies[name] = _unused_name(ctx, f"{name}.f32")
    if name in ctx.constants:
        ctx.constants[wide] = ctx.constants[name].astype(np.float32)
    else:
        ctx.values[wide] = ctx.op("nn.cast", [ctx.values[name]], {"to": "f32"}, name=wide)
    return wide


def _unused_name(ctx: LowerContext, base: str) -> str:
    """`base`, or `base` with a number, that names no ONNX tensor of the graph and nothing lowered yet."""
    name, count = base, 0
    while name in ctx.used or name in ctx.values or name in ctx.constants or name in ctx.sequences:
        count += 1
        name = f"{base}.{count}"
    return name
