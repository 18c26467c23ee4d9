"""Splitting a model at its first data-dependent node: the part before it runs on the machine, the rest
on the host (onnxruntime).

An op whose output shape depends on tensor values (NonZero, NonMaxSuppression, Unique, Compress, control
flow: If, Loop, Scan; TopK with a computed K) cannot be given a static shape, so it cannot be compiled for
the chip. `split_for_host(model)` cuts the graph's node list (topologically ordered, as ONNX requires) at
the first such node: the prefix keeps every graph input and outputs the tensors the rest reads (and the
model outputs it produces); the suffix is a one-piece ONNX model (built with onnx.helper) whose inputs are
those tensors and the graph inputs it reads, whose initializers are those it uses, and whose outputs are
the model's others. Every node from the cut on runs on the host, whether or not rcc could lower it. A cut
that leaves the chip nothing to compute (the first node is data-dependent) is refused: rcc compiles for
crossbars, and a program that only hands its inputs to onnxruntime would hide that nothing runs on them.

    split = split_for_host(model, "m.onnx")  # None: nothing data-dependent, compile the whole model
    module = lower_model(split.prefix, ...)
    split.info    # {"node", "op_type", "nodes", "inputs", "outputs", "final_outputs"}: the program's `host`
    split.suffix  # the suffix's ONNX bytes: the program's `host.onnx` member
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import onnx
from onnx import helper

from rcc.compiler.frontend.context import node_label
from rcc.ir.errors import RccError, UnsupportedError

ALWAYS_DATA_DEPENDENT = frozenset({"NonZero", "NonMaxSuppression", "Unique", "Compress", "If", "Loop", "Scan"})


@dataclass(frozen=True)
class HostSplit:
    prefix: onnx.ModelProto
    suffix: bytes
    info: dict[str, Any]


def _constant_names(graph: onnx.GraphProto) -> set[str]:
    return {init.name for init in graph.initializer} | \
        {out for node in graph.node if node.op_type == "Constant" for out in node.output}


def is_data_dependent(node: onnx.NodeProto, constants: set[str]) -> bool:
    """Whether the node's output shape depends on tensor values rather than shapes alone."""
    if node.op_type in ALWAYS_DATA_DEPENDENT:
        return True
    return node.op_type == "TopK" and len(node.input) > 1 and node.input[1] not in constants


def _names_read(node: onnx.NodeProto) -> set[str]:
    """Every tensor a node reads, including outer-scope names its subgraphs (If, Loop, Scan) refer to."""
    names = {name for name in node.input if name}
    for attribute in node.attribute:
        for graph in [attribute.g] * attribute.HasField("g") + list(attribute.graphs):
            for inner in graph.node:
                names |= _names_read(inner)
    return names


def split_for_host(model: onnx.ModelProto, source: str = "<model>", static_ifs: bool = False,
                   cut_if: int | None = None) -> HostSplit | None:
    """The machine prefix and host suffix of `model` (read from `source`), or None when no node is
    data-dependent; UnsupportedError naming the node when the prefix would compute nothing, RccError naming
    the tensor when a tensor crossing the cut has no known element type. Every If is data-dependent, unless
    `static_ifs`: the lowering then decides (`rules_control.py` takes the branch of an If on a compile-time
    condition), and only the If at node index `cut_if`, the first it could not take (`DataDependentIf`), is."""
    graph = model.graph
    constants = _constant_names(graph)

    def cuts(index: int, node: onnx.NodeProto) -> bool:
        if node.op_type == "If" and static_ifs:
            return index == cut_if
        return is_data_dependent(node, constants)
    cut = next((index for index, node in enumerate(graph.node) if cuts(index, node)), None)
    if cut is None:
        return None
    head, tail = graph.node[:cut], graph.node[cut:]
    produced = {name for node in head for name in node.output}
    read_by_tail = set().union(*(_names_read(node) for node in tail))
    initializers = {init.name: init for init in graph.initializer}
    graph_inputs = [value.name for value in graph.input if value.name not in initializers]
    crossing = [name for node in head for name in node.output if name in read_by_tail]
    final = [value.name for value in graph.output]
    if not crossing and not any(name in produced for name in final):
        raise UnsupportedError(f"{source}: {node_label(tail[0], cut)}: its output shape depends on tensor values, "
                               f"so it and every node after it would run on the host, and nothing before it "
                               f"computes a result the model uses: nothing would run on the crossbars")
    prefix_outputs = list(dict.fromkeys(crossing + [name for name in final if name in produced or
                                                    name in graph_inputs]))
    types = _value_types(model)
    for name in prefix_outputs:
        if name not in types:
            raise RccError(f"{source}: tensor {name!r} crosses from the chip to the host (before "
                           f"{node_label(tail[0], cut)}) but onnx's shape inference gives it no element type")
    read_by_head = set().union(*(_names_read(node) for node in head))
    prefix_graph = helper.make_graph(head, graph.name,
                                     [value for value in graph.input
                                      if value.name not in initializers or value.name in read_by_head],
                                     [types[name] for name in prefix_outputs],
                                     [init for name, init in initializers.items() if name in read_by_head])
    suffix_inputs = list(dict.fromkeys(crossing + [name for name in graph_inputs if name in read_by_tail]))
    host_outputs = [name for name in final if name not in prefix_outputs]
    suffix_graph = helper.make_graph(tail, f"{graph.name}_host", [types[name] for name in suffix_inputs],
                                     [value for value in graph.output if value.name in host_outputs],
                                     [init for name, init in initializers.items() if name in read_by_tail])
    prefix = _model_like(model, prefix_graph)
    suffix = _model_like(model, suffix_graph)
    info = {"node": tail[0].name or tail[0].output[0], "op_type": tail[0].op_type, "nodes": len(tail),
            "inputs": suffix_inputs, "outputs": host_outputs, "final_outputs": final}
    return HostSplit(prefix, suffix.SerializeToString(), info)


def _model_like(model: onnx.ModelProto, graph: onnx.GraphProto) -> onnx.ModelProto:
    part = helper.make_model(graph, opset_imports=list(model.opset_import))
    part.ir_version = model.ir_version
    return part


def _value_types(model: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    """Value infos with a known element type, by tensor name, after onnx's shape inference. Their shapes may
    be partly symbolic (onnx does not propagate shapes computed by Shape → Gather → Concat → Reshape, as in
    SSDlite's head): rcc's own lowering of the prefix gives every tensor a static shape, and onnxruntime
    takes symbolic dimensions on the host part's inputs."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except (onnx.shape_inference.InferenceError, ValueError) as err:
        raise RccError(f"shape inference failed while splitting the model for the host: {err}") from None
    graph = inferred.graph
    values = list(graph.input) + list(graph.value_info) + list(graph.output)
    return {value.name: value for value in values
            if value.type.HasField("tensor_type") and value.type.tensor_type.elem_type}
