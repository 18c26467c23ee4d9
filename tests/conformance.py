"""The ONNX conformance node cases rcc runs: which cases, how inputs are frozen, and the tally.

A case is selected when every node of its model has a lowering rule. rcc needs shapes, axes, pads,
scales, clip bounds, split sizes and sequence positions at compile time, so inputs in those positions are
frozen into initializers with the case's own data before lowering; data inputs stay inputs. rcc needs the
length of a sequence at compile time too, so a sequence input becomes one input per element of the
case's sequence, gathered by a SequenceConstruct node.
"""

from __future__ import annotations

import functools
import warnings
from collections import Counter

import numpy as np
import onnx
from onnx import helper, numpy_helper

from rcc.compiler.frontend.registry import RULES

# (op type, input index from which on inputs are parameters rcc needs at compile time)
PARAMETER_INPUTS = {"Resize": 1, "Upsample": 1, "Clip": 1, "Pad": 1, "Reshape": 1, "Squeeze": 1,
                    "Unsqueeze": 1, "Dropout": 1, "SplitToSequence": 1, "SequenceInsert": 2, "SequenceAt": 1,
                    "SequenceErase": 1}
PARAMETER_INPUTS.update({"QuantizeLinear": 1, "DequantizeLinear": 1, "QLinearConv": 1, "QLinearMatMul": 1,
                         "ConvInteger": 2, "MatMulInteger": 2})  # scales and zero points (weights too for QLinear*)

TALLY: Counter = Counter()


@functools.cache
def selected_cases() -> list:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from onnx.backend.test.case.node import collect_testcases

        cases = collect_testcases()
    return [c for c in cases if c.data_sets and {n.op_type for n in c.model.graph.node} <= set(RULES)]


def frozen_model(case, also: dict[str, int] | None = None) -> tuple[onnx.ModelProto, list[int]]:
    """The case's model with parameter inputs turned into initializers (those of PARAMETER_INPUTS, and of
    `also`: op type → first input index to freeze, e.g. {"ConvTranspose": 1} for its weight and bias);
    the indices of the inputs left."""
    model = onnx.ModelProto()
    model.CopyFrom(case.model)
    parameter_names = set()
    freeze = {**PARAMETER_INPUTS, **(also or {})}
    for node in model.graph.node:
        first = freeze.get(node.op_type)
        if first is not None:
            parameter_names.update(name for name in node.input[first:] if name)
    inputs = case.data_sets[0][0]
    kept, keep_index, constructs = [], [], []
    for index, (info, data) in enumerate(zip(list(model.graph.input), inputs)):
        array = np.asarray(data) if not isinstance(data, (list, type(None))) else None
        if isinstance(data, onnx.TensorProto) and info.name in parameter_names:  # 4-bit, float8, ...
            model.graph.initializer.append(onnx.TensorProto())
            model.graph.initializer[-1].CopyFrom(data)
            model.graph.initializer[-1].name = info.name
        elif array is not None and info.name in parameter_names:
            model.graph.initializer.append(numpy_helper.from_array(array, info.name))
        elif isinstance(data, list):  # a sequence input: its elements become inputs, its length fixed
            names = [f"{info.name}.{position}" for position in range(len(data))]
            element_type = info.type.sequence_type.elem_type.tensor_type.elem_type
            kept.extend(helper.make_tensor_value_info(name, element_type, np.shape(element))
                        for name, element in zip(names, data))
            keep_index.extend((index, position) for position in range(len(data)))
            constructs.append(helper.make_node("SequenceConstruct", names, [info.name]))
        else:
            kept.append(info)
            keep_index.append(index)
    del model.graph.input[:]
    model.graph.input.extend(kept)
    nodes = constructs + list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model, keep_index


def case_feeds(model: onnx.ModelProto, keep: list, inputs: list) -> dict[str, np.ndarray]:
    """The inputs of a `frozen_model` from one data set's inputs (elements of sequence inputs one by one)."""
    return {model.graph.input[i].name: np.asarray(inputs[k] if isinstance(k, int) else inputs[k[0]][k[1]])
            for i, k in enumerate(keep)}


def case_outputs(model: onnx.ModelProto, expected: list) -> dict[str, np.ndarray]:
    """A data set's expected outputs by module output name: a sequence output `s` gives `s.0`, `s.1`, ..."""
    outputs = {}
    for info, reference in zip(model.graph.output, expected):
        if isinstance(reference, list):
            outputs.update({f"{info.name}.{i}": np.asarray(element) for i, element in enumerate(reference)})
        else:
            outputs[info.name] = reference
    return outputs
