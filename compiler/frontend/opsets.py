"""Models from opsets onnxruntime no longer runs (below 7): converted with onnx's version converter.

Before the converter runs, two legacy layouts it gets wrong are made explicit at the old opset:
- legacy broadcast with an `axis` (`Add(A[N,C,H,W], B[C]) {broadcast = 1, axis = 1}`): B gets the
  trailing unit axes it means (an Unsqueeze to [C, 1, 1]) and the node loses `broadcast` and `axis`,
  so numpy broadcasting from opset 7 on reads it the same way;
- PRelu's per-channel slope given as a 1-D tensor [C]: unsqueezed to [C, 1, ..., 1].
The converted model is what rcc lowers and what onnxruntime runs to verify it; its metadata records the
opset it came from (`converted_from`), so the summary can say "converted from opset 6 to 7".
"""

from __future__ import annotations

import functools
import os
import re

import onnx
from onnx import helper, shape_inference, version_converter

from rcc.ir.errors import RccError

OLDEST_RUNNABLE_OPSET = 7  # onnxruntime runs no model below it
CONVERTED_FROM_KEY = "rcc.converted_from_opset"
_LEGACY_BROADCAST_OPS = {"Add", "Sub", "Mul", "Div", "Pow", "And", "Or", "Xor", "Equal", "Greater", "Less"}


def default_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def _ranks(model: onnx.ModelProto) -> dict[str, int]:
    """Rank of every tensor whose shape onnx's shape inference knows."""
    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception:  # inference is a help here, not a requirement; unknown ranks are reported by name
        inferred = model
    graph = inferred.graph
    ranks = {init.name: len(init.dims) for init in graph.initializer}
    for info in list(graph.input) + list(graph.value_info) + list(graph.output):
        tensor_type = info.type.tensor_type
        if info.type.HasField("tensor_type") and tensor_type.HasField("shape"):
            ranks[info.name] = len(tensor_type.shape.dim)
    return ranks


def _unit_axes(graph: onnx.GraphProto, node: onnx.NodeProto, index: int, axes: list[int]) -> None:
    """Insert an opset-1 Unsqueeze of node input `index` at `axes` before `node`, and read it instead."""
    name = f"{node.input[index]}.{node.name or node.output[0]}.unsqueezed"
    graph.node.append(helper.make_node("Unsqueeze", [node.input[index]], [name], axes=axes))
    node.input[index] = name


def _explicit_legacy_layouts(model: onnx.ModelProto, source: str, opset: int) -> onnx.ModelProto:
    """A copy of `model` with legacy axis broadcasting and 1-D PRelu slopes made explicit (see above)."""
    ranks = _ranks(model)
    prepared = onnx.ModelProto()
    prepared.CopyFrom(model)
    nodes = list(prepared.graph.node)
    del prepared.graph.node[:]
    for position, node in enumerate(nodes):
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        legacy = node.op_type in _LEGACY_BROADCAST_OPS and attrs.get("broadcast") == 1
        prelu = node.op_type == "PRelu" and len(node.input) > 1
        if legacy or prelu:
            unknown = [name for name in node.input[:2] if name not in ranks]
            if unknown:
                label = node.name or f"#{position} (output {node.output[0]})"
                raise RccError(f"{source}: node {label!r} ({node.op_type}): cannot convert from opset {opset} to "
                               f"{OLDEST_RUNNABLE_OPSET}: the rank of {unknown[0]!r} is unknown")
            rank_a, rank_b = ranks[node.input[0]], ranks[node.input[1]]
        if legacy:
            trailing = rank_a - int(attrs.get("axis", rank_a - rank_b)) - rank_b
            if trailing > 0:
                _unit_axes(prepared.graph, node, 1, list(range(rank_b, rank_b + trailing)))
            kept = [a for a in node.attribute if a.name not in ("broadcast", "axis")]
            del node.attribute[:]
            node.attribute.extend(kept)
        elif prelu and rank_b == 1 and rank_a >= 3:
            _unit_axes(prepared.graph, node, 1, list(range(1, rank_a - 1)))
        prepared.graph.node.append(node)
    return prepared


def _failing_node(model: onnx.ModelProto, message: str) -> str:
    """The first node whose op type the converter's message names, as `node 'name' (OpType)`."""
    for position, node in enumerate(model.graph.node):
        if node.op_type and node.op_type in message:
            return f"node {node.name or f'#{position} (output {node.output[0]})'!r} ({node.op_type})"
    return "the model"


def upgrade_old_opset(model: onnx.ModelProto, source: str) -> onnx.ModelProto:
    """`model` itself from opset 7 on; below, the model converted to opset 7 (RccError naming the node and
    both opsets when the converter cannot)."""
    opset = default_opset(model)
    if opset >= OLDEST_RUNNABLE_OPSET:
        return model
    prepared = _explicit_legacy_layouts(model, source, opset)
    try:
        converted = version_converter.convert_version(prepared, OLDEST_RUNNABLE_OPSET)
    except Exception as err:  # the converter raises RuntimeError, ValueError or its own C++ errors
        message = str(err).strip().splitlines()[0] if str(err).strip() else err.__class__.__name__
        message = re.sub(r"^\S+\.h:\d+: \w+: ", "", message)  # the converter's source file and function
        raise RccError(f"{source}: {_failing_node(prepared, message)}: cannot convert from opset {opset} to "
                       f"{OLDEST_RUNNABLE_OPSET}: {message[:160]}") from None
    typed = [info for info in converted.graph.value_info if info.type.tensor_type.elem_type]
    del converted.graph.value_info[:]
    converted.graph.value_info.extend(typed)  # the converter leaves untyped entries onnxruntime refuses
    helper.set_model_props(converted, {**{p.key: p.value for p in converted.metadata_props},
                                       CONVERTED_FROM_KEY: str(opset)})
    return converted


def conversion_summary(model: onnx.ModelProto) -> str | None:
    """"converted from opset N to M" for a model `upgrade_old_opset` converted, else None."""
    source = next((p.value for p in model.metadata_props if p.key == CONVERTED_FROM_KEY), None)
    return None if source is None else f"converted from opset {source} to {default_opset(model)}"


@functools.lru_cache(maxsize=8)
def _runnable(path: str, modified_ns: int, size: int) -> tuple[str | bytes, str | None]:
    model = onnx.load(path, load_external_data=False)
    if default_opset(model) >= OLDEST_RUNNABLE_OPSET:
        return path, None
    converted = upgrade_old_opset(model, path)
    return converted.SerializeToString(), conversion_summary(converted)


def _runnable_file(path: str | os.PathLike) -> tuple[str | bytes, str | None]:
    status = os.stat(path)
    return _runnable(str(path), status.st_mtime_ns, status.st_size)


def model_for_onnxruntime(path: str | os.PathLike) -> str | bytes:
    """What onnxruntime should load for the model at `path`: the path itself, or the converted model's
    bytes when the model's opset is below 7 (the conversion rcc lowered)."""
    return _runnable_file(path)[0]


def conversion_note(path: str | os.PathLike) -> str | None:
    """"converted from opset N to M" when rcc converts the model at `path` before lowering it, else None."""
    return _runnable_file(path)[1]
