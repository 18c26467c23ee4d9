"""Running a model with narrow-typed graph inputs or outputs (bfloat16, float8, float4, 4- and 2-bit integers) in
onnxruntime, whose Python API takes and gives no such arrays: each such input is fed as its carrier (float32
for the narrow floats, int8/uint8 for the integers) through a Cast inside the model, and each such output
leaves through a Cast to its carrier and is converted back. Both conversions are exact."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

_TYPE = onnx.TensorProto
CARRIERS = {**{t: _TYPE.FLOAT for t in (_TYPE.BFLOAT16, _TYPE.FLOAT8E4M3FN, _TYPE.FLOAT8E4M3FNUZ, _TYPE.FLOAT8E5M2,
                                        _TYPE.FLOAT8E5M2FNUZ, _TYPE.FLOAT8E8M0, _TYPE.FLOAT4E2M1)},
            _TYPE.INT4: _TYPE.INT8, _TYPE.INT2: _TYPE.INT8, _TYPE.UINT4: _TYPE.UINT8, _TYPE.UINT2: _TYPE.UINT8}


_EXACT = {t: {"saturate": 0} for t in (_TYPE.FLOAT8E4M3FN, _TYPE.FLOAT8E4M3FNUZ, _TYPE.FLOAT8E5M2, _TYPE.FLOAT8E5M2FNUZ,
                                      _TYPE.FLOAT8E8M0)}


def _elem_type(info: onnx.ValueInfoProto) -> int:
    return info.type.tensor_type.elem_type if info.type.HasField("tensor_type") else 0


def has_narrow_io(graph: onnx.GraphProto) -> bool:
    return any(_elem_type(info) in CARRIERS for info in [*graph.input, *graph.output])


def carried_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with each narrow-typed graph input and output exchanged through a Cast from or to its carrier."""
    carried = onnx.ModelProto()
    carried.CopyFrom(model)
    graph, before, after = carried.graph, [], []
    inputs = {info.name for info in graph.input}
    for info in [*graph.input, *graph.output]:
        narrow = _elem_type(info)
        if narrow not in CARRIERS:
            continue
        inner = info.name + ".narrow"
        for node in graph.node:   # the graph reads and writes the narrow tensor under its inner name
            node.input[:] = [inner if name == info.name else name for name in node.input]
            node.output[:] = [inner if name == info.name else name for name in node.output]
        info.type.tensor_type.elem_type = CARRIERS[narrow]
        if info.name in inputs:   # without saturation, so that an inf stays inf in float8 e5m2
            before.append(helper.make_node("Cast", [info.name], [inner], to=narrow, **_EXACT.get(narrow, {})))
        else:
            after.append(helper.make_node("Cast", [inner], [info.name], to=CARRIERS[narrow]))
    nodes = before + list(graph.node) + after
    del graph.node[:]
    graph.node.extend(nodes)
    return carried


def carrier_feeds(graph: onnx.GraphProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`feeds` with each narrow graph input's array as its carrier's."""
    narrow = {info.name: CARRIERS[_elem_type(info)] for info in graph.input if _elem_type(info) in CARRIERS}
    return {name: array.astype(helper.tensor_dtype_to_np_dtype(narrow[name])) if name in narrow else array
            for name, array in feeds.items()}


def narrow_results(graph: onnx.GraphProto, results: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`results` by output name with each narrow graph output converted back from its carrier."""
    narrow = {info.name: _elem_type(info) for info in graph.output if _elem_type(info) in CARRIERS}
    return {name: array.astype(helper.tensor_dtype_to_np_dtype(narrow[name])) if name in narrow else array
            for name, array in results.items()}
