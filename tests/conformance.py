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
from rcc.compiler.onnxruntime_narrow import carried_model, carrier_feeds, narrow_results

# (op type, input index from which on inputs are parameters rcc needs at compile time, or their indices)
PARAMETER_INPUTS = {"Resize": 1, "Upsample": 1, "Clip": 1, "Pad": 1, "Reshape": 1, "Squeeze": 1,
                    "Unsqueeze": 1, "Dropout": 1, "SplitToSequence": 1, "SequenceInsert": 2, "SequenceAt": 1,
                    "SequenceErase": 1}
PARAMETER_INPUTS.update({"Slice": 1, "Split": 1, "Expand": 1, "Tile": 1, "ConstantOfShape": 0, "Range": 0, "CumSum": 1,
                         "TopK": 1, "OneHot": 1, "Trilu": 1})
# recurrent layers: W, R, B, sequence_lens and LSTM's P (initial_h and initial_c stay data)
PARAMETER_INPUTS.update({"RNN": (1, 2, 3, 4), "GRU": (1, 2, 3, 4), "LSTM": (1, 2, 3, 4, 7)})
PARAMETER_INPUTS.update({op: 1 for op in ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
                                          "ReduceL2", "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp")})
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


def case_array(data) -> np.ndarray | None:
    """A case's input or output as an array (some cases store TensorProtos); None for sequences and optionals."""
    if isinstance(data, onnx.TensorProto):
        return numpy_helper.to_array(data)
    return np.asarray(data) if not isinstance(data, (list, type(None))) else None


def frozen_model(case, also: dict[str, int] | None = None) -> tuple[onnx.ModelProto, list[int]]:
    """The case's model with parameter inputs turned into initializers (those of PARAMETER_INPUTS, and of
    `also`: op type → first input index to freeze, e.g. {"ConvTranspose": 1} for its weight and bias);
    the indices of the inputs left."""
    model = onnx.ModelProto()
    model.CopyFrom(case.model)
    parameter_names = set()
    freeze = {**PARAMETER_INPUTS, **(also or {})}
    for node in model.graph.node:
        positions = freeze.get(node.op_type)
        if positions is not None:
            chosen = node.input[positions:] if isinstance(positions, int) else \
                [node.input[i] for i in positions if i < len(node.input)]
            parameter_names.update(name for name in chosen if name)
    inputs = case.data_sets[0][0]
    kept, keep_index, constructs = [], [], []
    for index, (info, data) in enumerate(zip(list(model.graph.input), inputs)):
        array = case_array(data)
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
    return {model.graph.input[i].name: case_array(inputs[k] if isinstance(k, int) else inputs[k[0]][k[1]])
            for i, k in enumerate(keep)}


def case_outputs(model: onnx.ModelProto, expected: list) -> dict[str, np.ndarray]:
    """A data set's expected outputs by module output name: a sequence output `s` gives `s.0`, `s.1`, ..."""
    outputs = {}
    for info, reference in zip(model.graph.output, expected):
        if isinstance(reference, list):
            outputs.update({f"{info.name}.{i}": np.asarray(element) for i, element in enumerate(reference)})
        else:
            outputs[info.name] = case_array(reference)
    return outputs


# Cases whose expected outputs (from onnx's reference evaluator) onnxruntime does not reproduce; rcc follows
# onnxruntime, so these are checked against onnxruntime's outputs on the case's model instead.
ONNXRUNTIME_DIFFERS = {
    # onnxruntime's align_corners divides by the integer output length − 1, the reference by scale · length − 1
    "test_resize_downsample_scales_linear_align_corners",
    "test_resize_downsample_scales_cubic_align_corners",
}
# Casts of out-of-range floats to 4- and 2-bit integers: onnxruntime rounds half away from zero and keeps the low
# bits (8.0 → int4 −8), ml_dtypes (the reference) gives 0
ONNXRUNTIME_DIFFERS |= {f"test_{op}_{source}_to_{target}{suffix}" for op in ("cast", "castlike")
                        for source in ("FLOAT", "FLOAT16") for target in ("INT4", "UINT4", "INT2", "UINT2")
                        for suffix in (("", "_expanded") if op == "castlike" else ("",))}

def onnxruntime_outputs(case, inputs: list) -> list[np.ndarray]:
    """onnxruntime's outputs of the case's model on one data set's inputs (narrow types through carriers)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(carried_model(case.model).SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    feeds = carrier_feeds(case.model.graph, {info.name: case_array(data)
                                             for info, data in zip(case.model.graph.input, inputs)})
    names = [info.name for info in case.model.graph.output]
    results = narrow_results(case.model.graph, dict(zip(names, session.run(names, feeds))))
    return [results[name] for name in names]
