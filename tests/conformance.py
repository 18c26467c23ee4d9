"""The ONNX conformance node cases rcc runs: which cases, how inputs are frozen, and the tally.

A case is selected when every node of its model has a lowering rule. rcc needs shapes, axes, pads,
scales and clip bounds at compile time, so inputs in those positions are
frozen into initializers with the case's own data before lowering; data inputs stay inputs.
"""

from __future__ import annotations

import functools
import warnings
from collections import Counter

import numpy as np
import onnx
from onnx import numpy_helper

from rcc.compiler.frontend.registry import RULES

# (op type, input index from which on inputs are parameters rcc needs at compile time)
PARAMETER_INPUTS = {"Resize": 1, "Upsample": 1, "Clip": 1, "Pad": 1, "Reshape": 1, "Squeeze": 1,
                    "Unsqueeze": 1, "Dropout": 1}

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
    kept, keep_index = [], []
    for index, (info, data) in enumerate(zip(list(model.graph.input), inputs)):
        array = np.asarray(data) if not isinstance(data, (list, type(None))) else None
        if array is not None and info.name in parameter_names:
            model.graph.initializer.append(numpy_helper.from_array(array, info.name))
        else:
            kept.append(info)
            keep_index.append(index)
    del model.graph.input[:]
    model.graph.input.extend(kept)
    return model, keep_index
