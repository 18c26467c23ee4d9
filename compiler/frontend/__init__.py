"""The ONNX frontend: `import_onnx(path)` loads, checks and lowers an ONNX model into graph-level IR.

Nodes are visited in the graph's topological order. A node whose inputs are all known at compile time
is folded (`fold.py`); any other node is lowered by its rule in `RULES` (`rules_*.py`). An op type
without a rule is an UnsupportedError naming the node.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import onnx

from rcc.compiler.frontend import (rules_activation, rules_math, rules_norm, rules_sequence,  # noqa: F401  (fill RULES)
                                   rules_shape, rules_spatial)
from rcc.compiler.frontend import (rules_einsum, rules_index, rules_logic, rules_reduce,  # noqa: F401  (fill RULES)
                                   rules_control, rules_recurrent, rules_resize, rules_select)
from rcc.compiler.frontend.context import LowerContext, initializer_arrays, node_label
from rcc.compiler.frontend.float16 import computes_in_float32, fold_node, in_float32, lower_cast
from rcc.compiler.frontend.fold import try_fold
from rcc.compiler.frontend.input_types import input_dtype
from rcc.compiler.frontend.loader import (ShapeOverrides, graph_inputs, input_shape, load_onnx, overridable_inputs,
                                          shadowed_inputs)
from rcc.compiler.frontend.narrow_types import check_narrow_use, declared_output
from rcc.compiler.frontend.opsets import conversion_summary, default_opset  # noqa: F401  (frontend API)
from rcc.compiler.frontend.registry import RULES, rule_for  # noqa: F401  (RULES: re-exported)
from rcc.ir.core import Module, Value
from rcc.ir.errors import InternalError, RccError, UnsupportedError, VerifyError
from rcc.ir.inputs import check_finite
from rcc.ir.types import TensorType
from rcc.ir.verifier import verify


def _module_name(model: onnx.ModelProto, source: str) -> str:
    name = model.graph.name or Path(source).stem or "model"
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", name)


def _add_inputs(ctx: LowerContext, model: onnx.ModelProto, shapes: ShapeOverrides) -> None:
    unknown = set(shapes) - {i.name for i in graph_inputs(model)}
    if unknown:
        raise RccError(f"--input-shape names {sorted(unknown)[0]!r}, which is not an input of {ctx.source}")
    for info in graph_inputs(model):
        dtype = input_dtype(info, ctx.source)
        value = Value(info.name, TensorType(input_shape(info, shapes, ctx.source), dtype))
        ctx.module.inputs.append(value)
        ctx.values[info.name] = value
    # An initializer named like a graph input is that input's default (ONNX IR >= 4; old exporters list every
    # weight so). Used only as run-time data, it stays an input with that default; otherwise (a weight to
    # map onto crossbars, a shape) it is compiled in as a constant and feeding it is refused, never ignored.
    overridable = overridable_inputs(model)
    for name in overridable:
        default = ctx.constants.pop(name)
        value = Value(name, TensorType.of(default))
        ctx.module.inputs.append(value)
        ctx.module.input_defaults[name] = default
        ctx.values[name] = value
    ctx.module.baked_inputs = [name for name in shadowed_inputs(model) if name not in overridable]


def _bind_outputs(ctx: LowerContext, model: onnx.ModelProto) -> None:
    """Module outputs keep the ONNX output names, so results can be matched with onnxruntime's. A graph input
    that is also a graph output is that output itself: an identity could not take the input's name."""
    for info in model.graph.output:
        if info.name in ctx.sequences:
            ctx.module.outputs.extend(rules_sequence.bind_sequence_output(ctx, info.name))
            continue
        value = declared_output(ctx, info, ctx.value_of(info.name))
        if value.is_constant and value.name == info.name:  # free the name for the output
            value.name = ctx.builder.fresh(info.name + ".value")
            ctx.builder.taken.discard(info.name)
        if value.name != info.name or value.is_constant:
            value = ctx.builder.op("nn.identity", [value], name=info.name)
        ctx.module.outputs.append(value)


def register_nodes(ctx: LowerContext, nodes) -> None:
    """Record what `nodes` read and write (the main graph's, or an inlined If branch's)."""
    for node in nodes:
        ctx.used.update(node.input)
        ctx.producers.update((name, node) for name in node.output if name)
        for name in node.input:
            ctx.readers.setdefault(name, []).append(node)


def _lower_nodes(ctx: LowerContext, nodes, within: str = "") -> None:
    """Fold or lower each (node, index) in order (nodes of a subgraph `within`, as messages name it)."""
    for node, index in nodes:
        ctx.node, ctx.label = node, node_label(node, index) + (f" in {within}" if within else "")
        widened = computes_in_float32(ctx, node)   # a float16 node onnxruntime computes in float32
        if fold_node(ctx, node, lambda copy: try_fold(ctx, copy, ctx.opsets), widened):
            continue
        lowering = rule_for(node)
        if lowering is None:
            domain = f"{node.domain}." if node.domain else ""
            raise UnsupportedError(f"{ctx.source}: {ctx.label}: unsupported op {domain}{node.op_type}")
        check_narrow_use(ctx, node, list(node.input))
        if widened:
            in_float32(ctx, lambda copy: lowering(ctx))
        elif node.op_type == "Cast":
            lower_cast(ctx, lowering)
        else:
            lowering(ctx)
        check_narrow_use(ctx, node, list(node.output))
        unbound = [name for name in node.output[:1] if name and name in ctx.used
                   and not any(name in bound for bound in (ctx.values, ctx.constants, ctx.sequences))]
        assert not unbound, f"rule for {node.op_type} left {unbound} unbound"


def _lower_branch(ctx: LowerContext, nodes, within: str) -> None:
    """A subgraph's (node, index) pairs (an If's taken branch), recorded, then lowered in order."""
    register_nodes(ctx, [node for node, _ in nodes])
    _lower_nodes(ctx, nodes, within)


def lower_model(model: onnx.ModelProto, source: str, input_shapes: ShapeOverrides | None = None,
                allow_nonfinite: bool = False) -> Module:
    """Graph-level IR of an already loaded model; RccError naming the tensor when a weight holds NaN/Inf
    (unless `allow_nonfinite`) or a node's result would exceed the tensor budget (`rcc.ir.limits`);
    InternalError (a bug in rcc, not in the model) when the IR it built fails the verifier."""
    if not model.graph.output:  # onnx.checker accepts a graph without outputs
        raise RccError(f"{source}: the graph has no outputs, so there is nothing to compile")
    ctx = LowerContext(Module(_module_name(model, source)), default_opset(model), source, allow_nonfinite)
    ctx.constants.update(initializer_arrays(model.graph, source))
    if not allow_nonfinite:
        for name, array in ctx.constants.items():
            check_finite(f"{source}: initializer {name!r}", array)
    _add_inputs(ctx, model, input_shapes or {})
    ctx.graph_outputs = {o.name for o in model.graph.output}
    ctx.opsets = list(model.opset_import)
    ctx.lower_nodes = lambda nodes, within: _lower_branch(ctx, nodes, within)
    register_nodes(ctx, model.graph.node)
    ctx.used |= ctx.graph_outputs
    for index, node in enumerate(model.graph.node):
        ctx.top_index = index
        _lower_nodes(ctx, [(node, index)])
    ctx.node, ctx.label = None, "graph outputs"
    _bind_outputs(ctx, model)
    ctx.module.drop_unused_constants()
    try:
        verify(ctx.module)
    except VerifyError as err:  # IR that rcc built from a checked model: a bug in rcc, not in the model
        raise InternalError(f"{source}: the frontend produced invalid IR: {err}") from err
    return ctx.module


def import_onnx(path: str | os.PathLike, input_shapes: ShapeOverrides | None = None,
                allow_nonfinite: bool = False) -> Module:
    """Load the ONNX model at `path` and lower it into graph-level IR."""
    return lower_model(load_onnx(path), str(path), input_shapes, allow_nonfinite)

from rcc.compiler.frontend import rules_quant  # noqa: E402,F401  (quantized-model rules)
from rcc.compiler.frontend import rules_quant_ms  # noqa: E402,F401  (com.microsoft quantized-model rules)
from rcc.compiler.frontend import rules_quant_dynamic  # noqa: E402,F401  (onnxruntime's dynamic quantization)
from rcc.compiler.frontend import rules_ms_transformer  # noqa: E402,F401  (onnxruntime's fused transformer ops)
from rcc.compiler.frontend import rules_ms_attention  # noqa: E402,F401  (onnxruntime's fused attention ops)
from rcc.compiler.frontend import rules_quant_lstm  # noqa: E402,F401  (onnxruntime's DynamicQuantizeLSTM)
