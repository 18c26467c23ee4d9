"""Folding ONNX nodes whose inputs are all known at compile time, with onnx's reference evaluator.

This is how weights built by subgraphs (`ConstantOfShape`, `Shape`, `Gather`, `Unsqueeze`, `Concat`,
`Reshape` on constants, ...) become plain constants before lowering. `Shape` and `Size` of a tensor
with a static type fold too, since every IR value has a static shape.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from rcc.compiler.frontend.context import LowerContext
from rcc.ir.limits import check_tensor_bytes

_NEVER_FOLD = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
               "Bernoulli", "If", "Loop", "Scan", "SequenceEmpty", "SequenceConstruct", "SequenceInsert",
               "SequenceErase", "SequenceAt", "SequenceLength", "SplitToSequence", "ConcatFromSequence"}
_NEVER_FOLD |= {"DequantizeLinear"}  # quantized weights stay integers for `fuse-qdq` (rules_quant.py)


def _fold_shape(ctx: LowerContext, node: onnx.NodeProto) -> bool:
    shape = ctx.input_type(0).shape
    if node.op_type == "Size":
        ctx.bind_constant(node.output[0], np.array(int(np.prod(shape, dtype=np.int64)), dtype=np.int64))
        return True
    rank = len(shape)
    start, end = (max(0, min(rank, i + rank if i < 0 else i)) for i in (ctx.attr("start", 0), ctx.attr("end", rank)))
    ctx.bind_constant(node.output[0], np.array(shape[start:end], dtype=np.int64))
    return True


def _evaluate(ctx: LowerContext, node: onnx.NodeProto, opsets: list[onnx.OperatorSetIdProto]) -> list[np.ndarray]:
    names = [name for name in node.input if name]
    inputs = [numpy_helper.from_array(ctx.constants[name], name) for name in names]
    outputs = [helper.make_empty_tensor_value_info(name) for name in node.output if name]
    graph = helper.make_graph([node], "fold", [], outputs, initializer=inputs)
    model = helper.make_model(graph, opset_imports=list(opsets))
    return ReferenceEvaluator(model).run(None, {})


def _check_folded_size(ctx: LowerContext, node: onnx.NodeProto) -> None:
    """LimitError naming the node before folding would build a constant over the tensor budget (the ops
    whose output size comes from input values rather than input sizes)."""
    inputs = [ctx.constants[name] for name in node.input if name]
    try:
        if node.op_type == "ConstantOfShape":
            shape = tuple(int(d) for d in inputs[0].reshape(-1))
        elif node.op_type == "Expand":
            shape = np.broadcast_shapes(inputs[0].shape, tuple(int(d) for d in inputs[1].reshape(-1)))
        elif node.op_type == "Tile":
            shape = tuple(int(d) * int(r) for d, r in zip(inputs[0].shape, inputs[1].reshape(-1)))
        elif node.op_type == "Range":
            start, limit, delta = (float(a.reshape(-1)[0]) for a in inputs[:3])
            shape = (max(0, int(np.ceil((limit - start) / delta))) if delta else 0,)
        else:
            return
    except (ValueError, IndexError, OverflowError, TypeError):
        return  # malformed: the evaluator names the problem
    dtype = inputs[0].dtype if node.op_type in ("Expand", "Tile", "Range") else np.float32
    check_tensor_bytes(f"{ctx.source}: {ctx.label}: folded constant", tuple(max(d, 0) for d in shape), dtype)


def try_fold(ctx: LowerContext, node: onnx.NodeProto, opsets: list[onnx.OperatorSetIdProto]) -> bool:
    """Fold `node` into constants if its value is known at compile time; True when it was folded."""
    if node.op_type in _NEVER_FOLD or node.domain not in ("", "ai.onnx"):
        return False
    if node.op_type in ("Shape", "Size") and node.input and node.input[0] not in ctx.constants:
        return _fold_shape(ctx, node)
    if any(name and name not in ctx.constants for name in node.input):
        return False
    _check_folded_size(ctx, node)
    try:
        results = _evaluate(ctx, node, opsets)
    except Exception as err:  # the reference evaluator raises many kinds; name the node instead
        raise ctx.error(f"cannot evaluate on constant inputs: {err.__class__.__name__}: {str(err)[:160]}") from None
    for name, array in zip([n for n in node.output if n], results):
        ctx.bind_constant(name, np.asarray(array))
    return True
