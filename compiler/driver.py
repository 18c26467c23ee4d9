"""The Python calls behind the CLI: compile a model, run it with an executor, verify it.

    module = compile_model("models/lenet5.onnx")
    result = verify_model("models/lenet5.onnx", module, executor="interpreter")
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

from compiler.frontend import import_onnx, random_inputs
from compiler.frontend.loader import ShapeOverrides
from compiler.pass_manager import GRAPH_PIPELINE, run_pipeline
from compiler.verify import VerifyResult, compare_outputs, onnxruntime_outputs
from ir import interpreter
from ir.core import Module
from ir.errors import RccError

Executor = Callable[[Module, dict[str, np.ndarray]], dict[str, np.ndarray]]
EXECUTORS: dict[str, Executor] = {"interpreter": interpreter.run}


def compile_model(path: str | os.PathLike, input_shapes: ShapeOverrides | None = None,
                  pipeline: str | Sequence[str] = GRAPH_PIPELINE, print_after_all: bool = False) -> Module:
    """Import the ONNX model at `path` and run the pipeline on it."""
    module = import_onnx(path, input_shapes)
    return run_pipeline(module, pipeline, print_after_all=print_after_all)


def verify_model(path: str | os.PathLike, module: Module, executor: str = "interpreter",
                 inputs: dict[str, np.ndarray] | None = None, seed: int = 0) -> VerifyResult:
    """Run `module` with `executor` and the original model with onnxruntime on the same inputs; compare."""
    if executor not in EXECUTORS:
        raise RccError(f"--executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    inputs = random_inputs(module, seed) if inputs is None else inputs
    actual = EXECUTORS[executor](module, inputs)
    expected = onnxruntime_outputs(path, inputs)
    return compare_outputs(actual, expected, executor)
