"""ONNX conformance node cases through the frontend and the interpreter, against the cases' outputs.

Each selected case is one test: it passes, fails, or is skipped when rcc names a construct it does not
handle (an If whose condition is computed at run time, the Indices output of MaxPool, training-mode Dropout,
...). The terminal summary prints the tally (see conftest.py). rcc follows onnxruntime: the few cases whose expected outputs
onnxruntime does not reproduce (`ONNXRUNTIME_DIFFERS`) are compared with onnxruntime's outputs instead.
"""

from __future__ import annotations

import numpy as np
import pytest

from rcc.compiler.frontend import lower_model
from rcc.ir import interpreter
from rcc.ir.errors import UnsupportedError
from tests.conformance import (ONNXRUNTIME_DIFFERS, TALLY, case_feeds, case_outputs, frozen_model, onnxruntime_outputs,
                               selected_cases)


@pytest.mark.parametrize("case", selected_cases(), ids=lambda c: c.name)
def test_conformance_case(case) -> None:
    TALLY["selected"] += 1
    model, keep = frozen_model(case)
    try:
        module = lower_model(model, case.name)
    except UnsupportedError as err:
        TALLY["unsupported"] += 1
        pytest.skip(str(err))
    for inputs, expected in case.data_sets:
        if case.name in ONNXRUNTIME_DIFFERS:
            expected = onnxruntime_outputs(case, inputs)
        actual = interpreter.run(module, case_feeds(model, keep, inputs))
        for name, reference in case_outputs(case.model, expected).items():
            np.testing.assert_allclose(actual[name], reference, rtol=max(case.rtol, 1e-4),
                                       atol=max(case.atol, 1e-5), err_msg=f"{case.name}: output {name}")
    TALLY["passed"] += 1
