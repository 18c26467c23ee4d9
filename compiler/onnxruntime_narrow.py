"""Running a model with narrow-typed graph inputs or outputs (bfloat16, float8, float4, 4- and 2-bit integers) in
onnxruntime, whose Python API takes and gives no such arrays: each such input is fed as its carrier (float32
for the narrow floats, int8/uint8 for the integers) through a Cast inside the model, and each such output
leaves through a Cast to its carrier and is converted back. Both conversions are exact."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from rcc.ir.types import NARROW_DTYPES, stand_in

_TYPE = onnx.TensorProto
# each narrow ONNX element type → the element type of its stand-in (ir.types.stand_in: float32, int8 or uint8)
CARRIERS = {helper.np_dtype_to_tensor_dtype(dtype): helper.np_dtype_to_tensor_dtype(stand_in(np.zeros(0, dtype)).dtype)
            for dtype in NARROW_DTYPES.values()}
_EXACT = {t: {"saturate": 0} for t in (_TYPE.FLOAT8E4M3FN, _TYPE.FLOAT8E4M3FNUZ, _TYPE.FLOAT8E5M2, _TYPE.FLOAT8E5M2FNUZ,
                                      _TYPE.FLOAT8E8M0)}   # Casts that would saturate an exact inf otherwise


def _elem_type(info: onnx.ValueInfoProto) -> int:
    return info.type.tensor_type.elem_type if info.type.HasField("tensor_type") else 0


def has_narrow_io(graph: onnx.GraphProto) -> bool:
    return any(_elem_type(info) in CARRIERS for info in [*graph.input, *graph.output])


def _renamed(graph: onnx.GraphProto, old: str, new: str, outputs: bool = False) -> None:
    """Every node of `graph` and of its subgraphs reads and writes `new` where it read or wrote `old` (and a
    subgraph's outputs name it so)."""
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
        for attribute in node.attribute:
            for subgraph in ([attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else
                             attribute.graphs if attribute.type == onnx.AttributeProto.GRAPHS else []):
                _renamed(subgraph, old, new, outputs=True)
    if outputs:
        for info in graph.output:
            if info.name == old:
                info.name = new


def _mentions_narrow(graph: onnx.GraphProto) -> bool:
    """Whether a narrow type can arise in `graph`: a narrow input, output or initializer, or a Cast to one (a
    QuantizeLinear's type is its zero point's, an initializer)."""
    return has_narrow_io(graph) or any(tensor.data_type in CARRIERS for tensor in graph.initializer) or \
        any(attribute.name == "to" and attribute.i in CARRIERS for node in graph.node for attribute in node.attribute)


def carried_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with each narrow-typed graph input and output exchanged through a Cast from or to its carrier."""
    carried = onnx.ModelProto()
    carried.CopyFrom(model)
    graph, before, after = carried.graph, [], []
    inputs = {info.name for info in graph.input}
    for info, is_input in [(i, True) for i in graph.input] + [(o, False) for o in graph.output]:
        narrow = _elem_type(info)
        if narrow not in CARRIERS:
            continue
        info.type.tensor_type.elem_type = CARRIERS[narrow]
        if not is_input and info.name in inputs:
            continue   # an input given back as an output: the carrier itself
        inner = info.name + ".narrow"
        _renamed(graph, info.name, inner)   # the graph reads and writes the narrow tensor under its inner name
        if is_input:   # without saturation, so that an inf stays inf in float8 e5m2
            before.append(helper.make_node("Cast", [info.name], [inner], to=narrow, **_EXACT.get(narrow, {})))
        else:
            after.append(helper.make_node("Cast", [inner], [info.name], to=CARRIERS[narrow]))
    nodes = before + list(graph.node) + after
    del graph.node[:]
    graph.node.extend(nodes)
    return carried


def exposed_model(model: onnx.ModelProto, names: list[str]) -> tuple[onnx.ModelProto, dict[str, tuple[str, int]]]:
    """`model` with the tensors `names` as extra outputs, each of a narrow type through a Cast to its carrier
    (types from onnx's shape inference); and the output name → (tensor name, narrow type) of those Casts."""
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    types = {info.name: _elem_type(info) for info in onnx.shape_inference.infer_shapes(model).graph.value_info} \
        if _mentions_narrow(model.graph) else {}
    known = {info.name for info in exposed.graph.output}
    renames = {}
    for name in names:
        if name in known:
            continue
        if types.get(name) in CARRIERS:
            renames[name + ".exposed"] = (name, types[name])
            exposed.graph.node.append(helper.make_node("Cast", [name], [name + ".exposed"], to=CARRIERS[types[name]]))
            exposed.graph.output.append(helper.make_tensor_value_info(name + ".exposed", CARRIERS[types[name]], None))
        else:
            exposed.graph.output.append(onnx.ValueInfoProto(name=name))
    return exposed, renames


def _converted(arrays: dict[str, np.ndarray], element_types: dict[str, int]) -> dict[str, np.ndarray]:
    """`arrays` with those named in `element_types` converted to that ONNX element type (exact both ways here)."""
    return {name: array.astype(helper.tensor_dtype_to_np_dtype(element_types[name])) if name in element_types else array
            for name, array in arrays.items()}


def exposed_results(results: dict[str, np.ndarray], renames: dict[str, tuple[str, int]]) -> dict[str, np.ndarray]:
    """`results` of an `exposed_model` with its Casts' outputs under their tensors' names and types."""
    renamed = {renames[name][0] if name in renames else name: array for name, array in results.items()}
    return _converted(renamed, dict(renames.values()))


def carrier_feeds(graph: onnx.GraphProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`feeds` with each narrow graph input's array as its carrier's."""
    return _converted(feeds, {info.name: CARRIERS[_elem_type(info)] for info in graph.input
                              if _elem_type(info) in CARRIERS})


def narrow_results(graph: onnx.GraphProto, results: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`results` by output name with each narrow graph output converted back from its carrier."""
    return _converted(results, {info.name: _elem_type(info) for info in graph.output if _elem_type(info) in CARRIERS})
