"""The Python calls behind the CLI: compile a model, run it with an executor, verify it.

    module = compile_model("models/lenet5.onnx")
    result = verify_model("models/lenet5.onnx", module, executor="interpreter")
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from dataclasses import dataclass

import numpy as np

from rcc.compiler.frontend import import_onnx, random_inputs
from rcc.compiler.frontend.loader import ShapeOverrides
from rcc.backends.emit import emit_program
from rcc.backends.program import Program
from rcc.backends.target import Target
from rcc.compiler.pass_manager import GRAPH_PIPELINE, make_pass, run_pipeline
from rcc.compiler.passes.lower_to_xbar import LowerToXbar
from rcc.compiler.passes.pack_crossbars import PackCrossbars
from rcc.compiler.passes.prune_crossbars import PruneCrossbars
from rcc.compiler.calibrate import calibration_samples
from rcc.compiler.verify import (FLOAT_MACHINE_TOLERANCE, Tolerance, VerifyResult, compare_outputs, integer_snr_bound,
                             onnxruntime_outputs)
from rcc.ir.ops.xbar import exact_grouped_product
from rcc.runtime.machine import Machine
from rcc.ir import interpreter
from rcc.ir.core import Module
from rcc.ir.parser import parse_module
from rcc.ir.printer import print_module
from rcc.ir.errors import RccError

def copy_module(module: Module) -> Module:
    """A deep copy through the text form (constants shared: passes never mutate constant data)."""
    return parse_module(print_module(module, inline_limit=0), {c.name: c.data for c in module.constants})


Executor = Callable[[Module, dict[str, np.ndarray]], dict[str, np.ndarray]]
EXECUTORS: dict[str, Executor] = {"interpreter": interpreter.run}  # executors of graph-level IR


def compile_model(path: str | os.PathLike, input_shapes: ShapeOverrides | None = None,
                  pipeline: str | Sequence[str] = GRAPH_PIPELINE, print_after_all: bool = False,
                  allow_nonfinite: bool = False) -> Module:
    """Import the ONNX model at `path` and run the pipeline on it."""
    module = import_onnx(path, input_shapes, allow_nonfinite)
    return run_pipeline(module, pipeline, print_after_all=print_after_all)


@dataclass
class Compiled:
    """Every stage of one compilation: graph-level IR (transposed convolutions already rewritten),
    crossbar-level IR, and the program."""

    graph: Module
    xbar: Module
    program: Program
    target: Target
    precision: str
    pruning: dict | None = None  # what `--prune-budget` removed and the error it caused


def lower_for_target(graph: Module, target: Target, precision: str = "int", calibration: dict | None = None,
                     print_after_all: bool = False, packing: str = "best") -> Module:
    """Crossbar-level IR of a graph-level module (the module is copied, not changed)."""
    xbar = copy_module(graph)
    passes = [LowerToXbar(precision=precision, target=target, calibration=calibration),
              PackCrossbars(mode=packing), make_pass("dce")]
    return run_pipeline(xbar, passes, print_after_all=print_after_all)


@dataclass(frozen=True)
class PruneBudget:
    """`--prune-budget`: a fraction of each layer's array blocks to remove, or the largest output error
    (relative L2 against onnxruntime on the calibration inputs) that removal may cause."""

    fraction: float | None = None
    max_error: float | None = None

    @staticmethod
    def parse(text: str) -> PruneBudget:
        try:
            if text.startswith("error="):
                bound = float(text.removeprefix("error="))
                if bound > 0:
                    return PruneBudget(max_error=bound)
            elif 0 < float(text) < 1:
                return PruneBudget(fraction=float(text))
        except ValueError:
            pass
        raise RccError(f"--prune-budget {text!r}: give a fraction of crossbars in (0, 1) or error=MAX_REL_L2")


PRUNE_STEPS = tuple(round(0.05 * i, 2) for i in range(1, 20))


def pruning_error(path: str | os.PathLike, graph: Module, samples: list[dict[str, np.ndarray]]) -> float:
    """The largest relative L2 error of any output of `graph` against onnxruntime on the samples."""
    worst = 0.0
    for sample in samples:
        expected = onnxruntime_outputs(path, sample)
        actual = interpreter.run(graph, sample)
        for name, reference in expected.items():
            norm = float(np.linalg.norm(reference.astype(np.float64)))
            error = float(np.linalg.norm(actual[name].astype(np.float64) - reference))
            worst = max(worst, error / norm if norm > 0 else error)
    return worst


def prune_graph(path: str | os.PathLike, graph: Module, target: Target, budget: PruneBudget, packing: str,
                calibration: dict | None = None) -> tuple[Module, dict]:
    """A copy of `graph` with crossbar blocks pruned under `budget`, and what was removed and its error."""
    samples = calibration_samples(graph, calibration)[:4]
    fractions = [budget.fraction] if budget.fraction is not None else list(PRUNE_STEPS)
    best = (copy_module(graph), PruneCrossbars(fraction=0.0), 0.0)
    for fraction in fractions:
        candidate = copy_module(graph)
        pruner = PruneCrossbars(fraction=fraction, mode=packing if packing != "dense" else "compact",
                                target=target)
        run_pipeline(candidate, [pruner])
        error = pruning_error(path, candidate, samples)
        if budget.max_error is not None and error > budget.max_error:
            break
        best = (candidate, pruner, error)
    pruned, pruner, error = best
    report = {"budget": budget.fraction if budget.fraction is not None else f"error<={budget.max_error}",
              "fraction": pruner.fraction, "rel_l2_error": error, "samples": len(samples),
              "layers": pruner.removed}
    return pruned, report


DECONV_PASSES = {"pixelwise": "deconv-to-pixelwise", "zero-insertion": "deconv-zero-insertion"}


def compile_program(path: str | os.PathLike, target: Target | None = None, precision: str = "int",
                    input_shapes: ShapeOverrides | None = None, pipeline: str | Sequence[str] = GRAPH_PIPELINE,
                    calibration: dict | None = None, print_after_all: bool = False,
                    deconv: str = "pixelwise", packing: str = "best", prune: PruneBudget | None = None,
                    allow_nonfinite: bool = False) -> Compiled:
    """ONNX model → graph IR (pipeline, then the deconvolution lowering) → crossbar IR → program."""
    if precision not in ("int", "float"):
        raise RccError(f"--precision {precision!r}: choose int or float")
    if deconv not in DECONV_PASSES:
        raise RccError(f"--deconv {deconv!r}: choose {' or '.join(DECONV_PASSES)}")
    target = target or Target()
    graph = compile_model(path, input_shapes, pipeline, print_after_all, allow_nonfinite)
    run_pipeline(graph, [DECONV_PASSES[deconv]], print_after_all=print_after_all)
    pruning = None
    if prune is not None:
        graph, pruning = prune_graph(path, graph, target, prune, packing, calibration)
    xbar = lower_for_target(graph, target, precision, calibration, print_after_all, packing)
    return Compiled(graph, xbar, emit_program(xbar, target, precision), target, precision, pruning)


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
