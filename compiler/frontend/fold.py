"""Folding ONNX nodes whose inputs are all known at compile time, with onnx's reference evaluator, and
with onnxruntime (the same node as a one-node model) where the reference evaluator fails: it has bugs of
its own (GatherElements over an axis of 64 or more entries, onnx 1.23 with numpy 2.4). A node that both
fail on is an error naming the node and both evaluators' messages.

This is how weights built by subgraphs (`ConstantOfShape`, `Shape`, `Gather`, `Unsqueeze`, `Concat`,
`Reshape` on constants, ...) become plain constants before lowering. `Shape` and `Size` of a tensor
with a static type fold too, since every IR value has a static shape. A Cast or CastLike folds with rcc's own
`nn.cast` (onnxruntime's conversions, `ir/ops/narrow_cast.py`), since onnx's reference evaluator converts to
4-bit, 2-bit and float8 types otherwise (9.0 to int4: 0 there, −7 in onnxruntime).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from rcc.compiler.frontend.context import LowerContext
from rcc.ir.limits import check_tensor_bytes
from rcc.ir.ops.narrow_cast import ROUND_MODES, convert
from rcc.ir.types import dtype_name

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


def _one_node_model(ctx: LowerContext, node: onnx.NodeProto, opsets: list[onnx.OperatorSetIdProto],
                    inputs_as_initializers: bool) -> onnx.ModelProto:
    names = [name for name in node.input if name]
    arrays = [numpy_helper.from_array(ctx.constants[name], name) for name in names]
    outputs = [helper.make_empty_tensor_value_info(name) for name in node.output if name]
    if inputs_as_initializers:
        graph = helper.make_graph([node], "fold", [], outputs, initializer=arrays)
    else:  # fed at run time, so that onnxruntime computes the node rather than its own constant folding
        infos = [helper.make_tensor_value_info(name, array.data_type, list(array.dims))
                 for name, array in zip(names, arrays)]
        graph = helper.make_graph([node], "fold", list({i.name: i for i in infos}.values()), outputs)
    return helper.make_model(graph, opset_imports=list(opsets))


def _evaluate_with_reference(ctx: LowerContext, node: onnx.NodeProto,
                             opsets: list[onnx.OperatorSetIdProto]) -> list[np.ndarray]:
    return ReferenceEvaluator(_one_node_model(ctx, node, opsets, True)).run(None, {})


def _evaluate_with_onnxruntime(ctx: LowerContext, node: onnx.NodeProto,
                               opsets: list[onnx.OperatorSetIdProto]) -> list[np.ndarray]:
    model = _one_node_model(ctx, node, opsets, False)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 4
    session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {name: ctx.constants[name] for name in node.input if name})


def _message(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{err.__class__.__name__}: {text[:160]}"


def _evaluate(ctx: LowerContext, node: onnx.NodeProto, opsets: list[onnx.OperatorSetIdProto]) -> list[np.ndarray]:
    """The node's outputs by onnx's reference evaluator, or by onnxruntime when that fails; an error naming the
    node and both evaluators when both fail."""
    try:
        return _evaluate_with_reference(ctx, node, opsets)
    except Exception as reference_error:  # the reference evaluator raises many kinds (and has bugs)
        try:
            return _evaluate_with_onnxruntime(ctx, node, opsets)
        except Exception as runtime_error:  # onnxruntime raises its own exception classes
            raise ctx.error(f"cannot evaluate on constant inputs: onnx's reference evaluator: "
                            f"{_message(reference_error)}; onnxruntime: {_message(runtime_error)}") from None


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


def _folded_cast(ctx: LowerContext, node: onnx.NodeProto) -> np.ndarray | None:
    """A Cast or CastLike of a constant as `nn.cast` computes it (onnxruntime's conversions; onnx's reference
    evaluator converts to 4-bit and float8 types otherwise); None when either dtype is one the IR does not carry."""
    try:
        source = ctx.constants[node.input[0]]
        dtype_name(source.dtype)
        target = ctx.constants[node.input[1]].dtype if node.op_type == "CastLike" else \
            helper.tensor_dtype_to_np_dtype(ctx.attr("to"))
        to = dtype_name(target)
    except (KeyError, ValueError, TypeError, IndexError):
        return None
    round_mode = ctx.attr("round_mode", "up")
    if round_mode not in ROUND_MODES or ctx.attr("saturate", 1) not in (0, 1):
        return None   # lowering names the bad attribute
    return convert(source, to, bool(ctx.attr("saturate", 1)), round_mode)


def try_fold(ctx: LowerContext, node: onnx.NodeProto, opsets: list[onnx.OperatorSetIdProto]) -> bool:
    """Fold `node` into constants if its value is known at compile time; True when it was folded."""
    if node.op_type in _NEVER_FOLD or node.domain not in ("", "ai.onnx"):
        return False
    if node.op_type in ("Shape", "Size") and node.input and node.input[0] not in ctx.constants:
        return _fold_shape(ctx, node)
    if any(name and name not in ctx.constants for name in node.input):
        return False
    _check_folded_size(ctx, node)
    cast = _folded_cast(ctx, node) if node.op_type in ("Cast", "CastLike") else None
    results = [cast] if cast is not None else _evaluate(ctx, node, opsets)
    for name, array in zip([n for n in node.output if n], results):
        ctx.bind_constant(name, np.asarray(array))
    return True
