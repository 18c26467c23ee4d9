"""The Python calls behind the CLI: compile a model, run it with an executor, verify it.

    compiled = compile_model("models/lenet5.onnx", Target(xbar_rows=64, xbar_cols=64))
    result = verify_compiled("models/lenet5.onnx", compiled)

`compile_model` is import → `run_pipeline` (the default pipeline, `pass_manager.DEFAULT_PIPELINE`, or
yours) → emit; everything the passes decided is in the returned `Compiled`, their reports included.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from rcc.backends.emit import emit_program
from rcc.backends.program import Program
from rcc.backends.target import Target
from rcc.compiler.frontend import import_onnx
from rcc.compiler.frontend.loader import ShapeOverrides
from rcc.compiler.pass_context import DECONV_PASSES, PassContext, PassReport, PruneBudget
from rcc.compiler.pass_manager import PipelineSpec, default_pipeline, run_pipeline
from rcc.compiler.verify import (FLOAT_MACHINE_TOLERANCE, Tolerance, VerifyResult, compare_outputs, integer_snr_bound,
                                 onnxruntime_outputs)
from rcc.ir import interpreter
from rcc.ir.core import Module
from rcc.ir.errors import RccError
from rcc.ir.progress import stage
from rcc.ir.inputs import random_inputs
from rcc.ir.ops.xbar import exact_grouped_product
from rcc.runtime.machine import Machine

__all__ = ["Compiled", "DECONV_PASSES", "EXECUTORS", "PruneBudget", "compile_model", "integer_reference_match",
           "verify_compiled", "verify_model"]

Executor = Callable[[Module, dict[str, np.ndarray]], dict[str, np.ndarray]]
EXECUTORS: dict[str, Executor] = {"interpreter": interpreter.run}  # executors of graph-level IR


@dataclass
class Compiled:
    """Every stage of one compilation: graph-level IR (transposed convolutions rewritten, pruned if asked:
    what `lower-to-xbar` started from), crossbar-level IR, the program, and what each pass reported."""

    graph: Module
    xbar: Module
    program: Program
    target: Target
    precision: str
    pruning: dict | None = None  # what `--prune-budget` removed and the error it caused
    reports: list[PassReport] = field(default_factory=list)  # one per pass run, in order


def pruning_summary(ctx: PassContext) -> dict | None:
    """What the prune budget removed (the `prune-crossbars` report), or None without a budget."""
    report = ctx.report_of("prune-crossbars")
    if ctx.prune is None or report is None or "budget" not in report.figures:
        return None
    return {**report.figures, "layers": report.removed}


def compile_model(path: str | os.PathLike, target: Target | None = None, precision: str = "int",
                  input_shapes: ShapeOverrides | None = None, pipeline: PipelineSpec | None = None,
                  calibration: dict | None = None, print_after_all: bool = False, deconv: str = "pixelwise",
                  packing: str = "best", prune: PruneBudget | None = None, replicate: str = "none",
                  pipelining: str = "none", allow_nonfinite: bool = False) -> Compiled:
    """ONNX model → graph IR → (`pipeline`, by default `default_pipeline(deconv)`) → crossbar IR → program.
    Pruning error is measured against onnxruntime on the model at `path`. NaN/Inf weights are refused
    unless `allow_nonfinite`."""
    ctx = PassContext(target=target or Target(), precision=precision, calibration=calibration, packing=packing,
                      deconv=deconv, prune=prune, replicate=replicate, pipelining=pipelining,
                      reference=lambda sample: onnxruntime_outputs(path, sample))
    with stage("import"):
        module = import_onnx(path, input_shapes, allow_nonfinite)
    run_pipeline(module, default_pipeline(deconv) if pipeline is None else pipeline, ctx, print_after_all)
    if ctx.graph is None:
        raise RccError("the pipeline has no lower-to-xbar, so there is no crossbar-level IR to emit")
    with stage("emit"):
        program = emit_program(module, ctx.target, ctx.precision)
    return Compiled(ctx.graph, module, program, ctx.target, ctx.precision, pruning_summary(ctx), ctx.reports)


def verify_model(path: str | os.PathLike, module: Module, executor: str = "interpreter",
                 inputs: dict[str, np.ndarray] | None = None, seed: int = 0) -> VerifyResult:
    """Run `module` with `executor` and the original model with onnxruntime on the same inputs; compare."""
    if executor not in EXECUTORS:
        raise RccError(f"--executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    inputs = random_inputs(module, seed) if inputs is None else inputs
    actual = EXECUTORS[executor](module, inputs)
    expected = onnxruntime_outputs(path, inputs)
    return compare_outputs(actual, expected, executor)


def integer_reference_match(compiled: Compiled, trace: dict[str, tuple[np.ndarray, np.ndarray]]) -> bool:
    """Whether every crossbar layer's integer accumulators equal the exact product of the same quantised
    operands (`exact_grouped_product`: int64, or float64 BLAS where its bound proves exactness)."""
    weights = {i.dst[0]: compiled.program.constants[i.src[1]] for i in compiled.program.instructions
               if i.opcode == "mvm"}
    return all(np.array_equal(acc, exact_grouped_product(x, weights[name])) for name, (x, acc) in trace.items())


def verify_compiled(path: str | os.PathLike, compiled: Compiled, executor: str = "machine",
                    inputs: dict[str, np.ndarray] | None = None, seed: int = 0,
                    allow_nonfinite: bool = False) -> VerifyResult:
    """Run the compiled model (`machine`: the program on the machine model; `interpreter`: the graph IR)
    and the original model in onnxruntime on the same inputs, and compare."""
    if executor != "machine":
        return verify_model(path, compiled.graph, executor, inputs, seed)
    inputs = random_inputs(compiled.graph, seed) if inputs is None else inputs
    run = Machine(compiled.program).run(inputs, trace=compiled.precision == "int", allow_nonfinite=allow_nonfinite)
    if compiled.precision == "float":
        tolerance = FLOAT_MACHINE_TOLERANCE
    else:
        tolerance = Tolerance("snr", bound=integer_snr_bound(compiled.target.weight_bits, compiled.target.input_bits))
    result = compare_outputs(run.outputs, onnxruntime_outputs(path, inputs), "machine", tolerance)
    result.extra["precision"] = compiled.precision
    if compiled.precision == "int":
        result.extra["adc_lossless"] = compiled.target.adc_is_lossless
        result.extra["integer_reference_match"] = integer_reference_match(compiled, run.mvm_trace)
    result.extra["counts"] = run.totals.to_json()
    return result
