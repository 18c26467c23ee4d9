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

Also as onnxruntime has it: an isolated float16 kernel between float32 nodes moves into float32 (`_isolated`);
the model's own Casts next to a float32 region lose their rounding where onnxruntime's cast remover drops them
(`lower_cast`); and a float16 node on constants is folded in float32 and rounded once (`fold_node`), since an
unrewritten onnxruntime run folds nothing and computes it so.

Measured on onnxruntime 1.32 (x86-64), op by op: Conv, Gemm, MatMul, BatchNormalization, Relu, Add, Softmax,
pooling, the reductions, Resize, Where, Size and the other arithmetic get casts; the ops in FLOAT16_KERNELS
have float16 kernels. Its source (InsertCastTransformer, RemoveDuplicateCastTransformer) gave the rules.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx

from rcc.compiler.frontend.context import LowerContext

FLOAT16_KERNELS = frozenset({
    "Reshape", "Transpose", "Concat", "Slice", "Gather", "GatherElements", "GatherND", "Split", "Expand", "Squeeze",
    "Unsqueeze", "Flatten", "Identity", "Clip", "Max", "Min", "Round", "Sign", "Cast", "CastLike", "IsNaN",
    "Shrink", "LayerNormalization", "QuantizeLinear", "DequantizeLinear", "ScatterND", "ScatterElements",
    "Compress", "Mod",
    # not arithmetic on float16 values, or holding subgraphs and sequences
    "Shape", "If", "Loop", "Scan", "SequenceConstruct", "SequenceAt", "SequenceInsert", "SequenceEmpty",
    "SplitToSequence", "ConcatFromSequence", "SequenceLength"})
_FLOAT16_RESULTLESS = frozenset({"Cast", "CastLike", "IsNaN", "Shape", "QuantizeLinear", "If", "Loop", "Scan",
                                 "SequenceConstruct", "SequenceAt", "SequenceInsert", "SequenceEmpty",
                                 "SplitToSequence", "ConcatFromSequence", "SequenceLength"})  # or a subgraph


def computes_in_float32(ctx: LowerContext, node: onnx.NodeProto) -> bool:
    """Whether onnxruntime runs float16 node `node` (its first float input float16) in float32: a standard op
    outside FLOAT16_KERNELS, or an isolated one inside (`_isolated`). A node whose inputs of one type variable
    are not all float16 is not one: onnxruntime refuses the mixed types, and lowering refuses them too."""
    return _float16_node(ctx, node) and (node.op_type not in FLOAT16_KERNELS or _isolated(ctx, node))


def _float16_node(ctx: LowerContext, node: onnx.NodeProto) -> bool:
    """A standard node whose first float input, and every input of that type variable, is float16."""
    first = _first_float(ctx, node)
    return node.domain in ("", "ai.onnx") and first is not None and \
        _dtype(ctx, node.input[first]) == np.float16 and not _mixed(ctx, node, first)


def _isolated(ctx: LowerContext, node: onnx.NodeProto) -> bool:
    """onnxruntime's isolated float16 node (its InsertCastTransformer, 1.32), which it moves to float32 to spare
    the casts around it: a float16 kernel that reads some node's result (a Constant node's is an initializer
    there) and gives no graph output, whose float16 operands (the first tensor of each typed input of its
    schema: a Concat's first input only) come from nodes that run in float32 where they come from a node at
    all, and whose results are read only by nodes outside FLOAT16_KERNELS. Nodes are visited in order: a node
    moved earlier counts as float32, a later one as what its kernel is."""
    if node.op_type in _FLOAT16_RESULTLESS or any(name in ctx.graph_outputs for name in node.output) or \
            not any(_computed(ctx, name) for name in node.input):
        return False
    for index in _typed_operands(node, ctx.opset):
        name = node.input[index]
        if _computed(ctx, name) and _dtype(ctx, name) == np.float16 and not _from_float32_node(ctx, name):
            return False
    readers = [reader for name in node.output if name for reader in ctx.readers.get(name, [])]
    return all(reader.op_type not in FLOAT16_KERNELS for reader in readers)


def _computed(ctx: LowerContext, name: str) -> bool:
    """Whether a node (other than a Constant, an initializer to onnxruntime) computes `name`."""
    return name in ctx.producers and ctx.producers[name].op_type != "Constant"


def _from_float32_node(ctx: LowerContext, name: str) -> bool:
    """Whether onnxruntime computes `name` (a node's float16 result) in float32: a node rcc lowered or folded in
    float32, or (folded from constants) one outside FLOAT16_KERNELS that reads a float16 tensor."""
    if name in ctx.float32_results:
        return True
    producer = ctx.producers[name]
    return name in ctx.constants and producer.op_type not in FLOAT16_KERNELS and \
        any(_dtype(ctx, source) == np.float16 for source in producer.input if source)


def _schema(node: onnx.NodeProto, opset: int) -> onnx.defs.OpSchema | None:
    try:
        return onnx.defs.get_schema(node.op_type, opset, node.domain)
    except onnx.defs.SchemaError:
        return None


def _typed_operands(node: onnx.NodeProto, opset: int) -> list[int]:
    """The positions of the inputs onnxruntime looks at for float16: per formal input of the node's schema typed
    by a type variable, its first tensor."""
    schema = _schema(node, opset)
    if schema is None:
        return []
    variables = {constraint.type_param_str for constraint in schema.type_constraints}
    return [index for index, formal in enumerate(schema.inputs)
            if index < len(node.input) and node.input[index] and formal.type_str in variables]


def _mixed(ctx: LowerContext, node: onnx.NodeProto, first: int) -> bool:
    """Whether the inputs bound to the type variable of input `first` are not all of one type."""
    schema = _schema(node, ctx.opset)
    if schema is None or not schema.inputs:
        return False
    formals = [schema.inputs[min(index, len(schema.inputs) - 1)].type_str for index in range(len(node.input))]
    return len({_dtype(ctx, name) for name, formal in zip(node.input, formals)
                if name and formal == formals[first]}) > 1


def fold_node(ctx: LowerContext, node: onnx.NodeProto, folding: Callable[[onnx.NodeProto], bool],
              widened: bool) -> bool:
    """`folding` (constant folding) of `node`; a float16 node on constants is folded in float32 and rounded
    once, as onnxruntime, which folds nothing in an unrewritten run, computes it (float16 arithmetic rounds
    every step), its float32 value kept when onnxruntime computes the node in float32 (`widened`)."""
    if not all(name in ctx.constants for name in node.input if name) or not _float16_node(ctx, node):
        return folding(node)
    return bool(in_float32(ctx, folding, keep=widened))


def in_float32(ctx: LowerContext, action: Callable[[onnx.NodeProto], bool | None], keep: bool = True) -> bool | None:
    """Run `action` (lowering or folding) on a copy of the float16 node whose float16 inputs are their float32
    values; its float32 results are bound rounded to float16 under the node's names, with (`keep`) their float32
    values kept for later float32 nodes. Returns what `action` returned."""
    node = ctx.node
    widened = _copy(node)
    for position, name in enumerate(node.input):
        if name and _dtype(ctx, name) == np.float16:
            widened.input[position] = _float32_copy(ctx, name)
    for position, name in enumerate(node.output):
        if name:
            widened.output[position] = _unused_name(ctx, f"{name}.f32")
            if name in ctx.used:   # so that a rule refusing a read output sees it read
                ctx.used.add(widened.output[position])
    done = _as(ctx, widened, lambda: action(widened))
    for position, name in enumerate(node.output):
        wide = widened.output[position] if name else ""
        if wide not in ctx.constants and wide not in ctx.values:
            continue
        wide32 = ctx.constants[wide].dtype == np.float32 if wide in ctx.constants else ctx.values[wide].type.dtype == "f32"
        if wide32 and keep:
            ctx.float32_copies[name] = wide
            ctx.float32_results.add(name)
        if wide in ctx.constants:
            ctx.bind_constant(name, ctx.constants[wide].astype(np.float16) if wide32 else ctx.constants[wide])
        else:
            ctx.bind(position, ctx.op("nn.cast", [ctx.values[wide]], {"to": "f16"}) if wide32 else ctx.values[wide])
    return done


def _copy(node: onnx.NodeProto) -> onnx.NodeProto:
    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    return copy


def _as(ctx: LowerContext, node: onnx.NodeProto, action: Callable[[], object]) -> object:
    """`action` with `node` as the context's current node (restored after)."""
    current, ctx.node = ctx.node, node
    try:
        return action()
    finally:
        ctx.node = current


def lower_cast(ctx: LowerContext, lowering: Callable[[LowerContext], None]) -> None:
    """A model's own Cast as onnxruntime leaves it once its cast remover has run (1.32): a Cast to float16 of a
    float32 tensor rounds only for its float16 readers (float32 readers read the tensor itself) unless a Cast
    reads it; a Cast of a float16 tensor computed in float32 reads the unrounded value when it casts to float32
    and gives no graph output, or when every reader of that tensor is a Cast or a float32 node and it is no
    graph output."""
    node = ctx.node
    source, target = node.input[0], ctx.attr("to")
    if _dtype(ctx, source) == np.float16 and source in ctx.float32_results and (
            target == onnx.TensorProto.FLOAT and node.output[0] not in ctx.graph_outputs or
            source not in ctx.graph_outputs and all(reader.op_type == "Cast" or reader.op_type not in FLOAT16_KERNELS
                                                    for reader in ctx.readers.get(source, []))):
        widened = _copy(node)
        widened.input[0] = ctx.float32_copies[source]
        _as(ctx, widened, lambda: lowering(ctx))
        return
    lowering(ctx)
    if target == onnx.TensorProto.FLOAT16 and _dtype(ctx, source) == np.float32 and \
            not any(reader.op_type == "Cast" for reader in ctx.readers.get(node.output[0], [])):
        ctx.float32_copies[node.output[0]] = source


_RESULT_TYPED_BY = {"OneHot": 2}   # op type → the input whose type its results have, when not the first float one


def _first_float(ctx: LowerContext, node: onnx.NodeProto) -> int | None:
    """The position of the input whose type the node's float results have: its first float input (Where's first
    input is a condition), or OneHot's values."""
    positions = [_RESULT_TYPED_BY[node.op_type]] if node.op_type in _RESULT_TYPED_BY else range(len(node.input))
    return next((index for index in positions if index < len(node.input) and node.input[index] and
                 (_dtype(ctx, node.input[index]) or np.dtype(bool)).kind == "f"), None)


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
    while name in ctx.used or name in ctx.producers or name in ctx.values or name in ctx.constants or \
            name in ctx.sequences:
        count += 1
        name = f"{base}.{count}"
    return name
