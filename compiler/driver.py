"""The Python calls behind the CLI: compile a model, run it with an executor, verify it.

    compiled = compile_model("models/lenet5.onnx", Target(xbar_rows=64, xbar_cols=64))
    result = verify_compiled("models/lenet5.onnx", compiled, samples=4)

`compile_model` is import → `run_pipeline` (the default pipeline, `pass_manager.DEFAULT_PIPELINE`, or
yours) → emit; everything the passes decided is in the returned `Compiled`, their reports included.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from rcc.backends.device import Device
from rcc.backends.emit import emit_program
from rcc.backends.faults import FaultMap
from rcc.backends.program import Instruction, Program
from rcc.backends.target import Target
from rcc.compiler.calibrate import calibration_samples
from rcc.compiler.frontend import lower_model
from rcc.compiler.frontend.host_split import HostSplit, split_for_host
from rcc.compiler.frontend.rules_control import DataDependentIf
from rcc.compiler.host_run import HostPart
from rcc.compiler.noise_gain import output_snrs
from rcc.compiler.frontend.loader import ShapeOverrides, load_onnx
from rcc.compiler.pass_context import DECONV_PASSES, PassContext, PassReport, PruneBudget
from rcc.compiler.pass_manager import PipelineSpec, default_pipeline, run_pipeline
from rcc.compiler.verify_detections import verify_host_outputs
from rcc.compiler.verify_quant import (bit_exact_summary, dynamically_quantized, float_kernel_boundaries,
                                      is_quantized, quantized_boundaries)
from rcc.compiler.verify import (DEFAULT_SAMPLES, FLOAT_MACHINE_TOLERANCE, INTERPRETER_TOLERANCE, Tolerance, VerifyResult, compare_outputs,
                                 integer_snr_bound, judge_on_logits, mark_input_bound, onnxruntime_runner,
                                 operand_snr_db)
from rcc.ir import interpreter
from rcc.ir.core import Module
from rcc.ir.errors import RccError
from rcc.ir.progress import stage
from rcc.ir.inputs import check_inputs, random_inputs
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
    mixed_precision: dict | None = None  # the layers `--mixed-precision` widened and the SNR it measured


def pruning_summary(ctx: PassContext) -> dict | None:
    """What the prune budget removed (the `prune-crossbars` report), or None without a budget."""
    report = ctx.report_of("prune-crossbars")
    if ctx.prune is None or report is None or "budget" not in report.figures:
        return None
    return {**report.figures, "layers": report.removed}


def mixed_precision_summary(ctx: PassContext) -> dict | None:
    """The goal, the SNR measured before and after and the widened widths (the `mixed-precision` report): in the
    order chosen, and by kind (`widened_inputs`, `widened_weights`: layer → bits); None when the pass had no goal."""
    report = ctx.report_of("mixed-precision")
    if report is None or "goal_db" not in report.figures:
        return None
    by_kind = {kind: {entry["layer"]: entry[f"{kind}_bits"] for entry in report.removed if f"{kind}_bits" in entry}
               for kind in ("input", "weight")}
    return {**report.figures, "widened_in_order": report.removed, "widened_inputs": by_kind["input"],
            "widened_weights": by_kind["weight"]}


def _lazy_reference(path: str | os.PathLike) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """The original model's outputs by onnxruntime, one session built at the first call and kept (the passes
    that measure against it, pruning and mixed precision, call it once per sample)."""
    runner: list[Callable] = []

    def reference(sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not runner:
            runner.append(onnxruntime_runner(path))
        return runner[0](sample)
    return reference


def lower_for_chip(model, source: str, input_shapes: ShapeOverrides | None, allow_nonfinite: bool
                   ) -> tuple[Module, HostSplit | None]:
    """The graph IR of what runs on the chip, and the host split when a data-dependent node sends the rest of the
    model to the host: cut first at NonZero and the like, then, when the lowering meets an If whose condition is
    computed at run time (an If on shapes alone takes its branch: `rules_control.py`), at that If."""
    split = split_for_host(model, source, static_ifs=True)
    try:
        return lower_model(split.prefix if split else model, source, input_shapes, allow_nonfinite), split
    except DataDependentIf as stop:
        split = split_for_host(model, source, static_ifs=True, cut_if=stop.index)
        return lower_model(split.prefix, source, input_shapes, allow_nonfinite), split


def compile_model(path: str | os.PathLike, target: Target | None = None, precision: str = "int",
                  input_shapes: ShapeOverrides | None = None, pipeline: PipelineSpec | None = None,
                  calibration: dict | None = None, print_after_all: bool = False, deconv: str = "pixelwise",
                  packing: str = "best", prune: PruneBudget | None = None, replicate: str = "none",
                  pipelining: str = "none", allow_nonfinite: bool = False,
                  calibration_method: str = "max", layer_input_bits: dict[str, int] | None = None,
                  mixed_precision: float | None = None, layer_weight_bits: dict[str, int] | None = None,
                  mixed_precision_widths: str = "auto") -> Compiled:
    """ONNX model → graph IR → (`pipeline`, by default `default_pipeline(deconv)`) → crossbar IR → program.
    Pruning error is measured against onnxruntime on the model at `path`. NaN/Inf weights are refused
    unless `allow_nonfinite`. `calibration_method`: how activation ranges are chosen (calibrate.METHODS).
    `layer_input_bits`, `layer_weight_bits`: input and weight widths of single crossbar layers; `mixed_precision`: an SNR goal (dB) the
    `mixed-precision` pass widens layers' inputs or weights (`mixed_precision_widths`: auto, both, inputs or weights) to
    reach."""
    ctx = PassContext(target=target or Target(), precision=precision, calibration=calibration,
                      calibration_method=calibration_method, packing=packing,
                      layer_input_bits=dict(layer_input_bits or {}), mixed_precision=mixed_precision,
                      layer_weight_bits=dict(layer_weight_bits or {}), mixed_precision_widths=mixed_precision_widths,
                      deconv=deconv, prune=prune, replicate=replicate, pipelining=pipelining,
                      reference=_lazy_reference(path))
    with stage("import"):
        model = load_onnx(path)
        module, split = lower_for_chip(model, str(path), input_shapes, allow_nonfinite)
    run_pipeline(module, default_pipeline(deconv) if pipeline is None else pipeline, ctx, print_after_all)
    if ctx.graph is None:
        raise RccError("the pipeline has no lower-to-xbar, so there is no crossbar-level IR to emit")
    with stage("emit"):
        program = emit_program(module, ctx.target, ctx.precision)
        if split is not None:
            program.host, program.host_model = split.info, split.suffix
    return Compiled(ctx.graph, module, program, ctx.target, ctx.precision, pruning_summary(ctx), ctx.reports,
                    mixed_precision_summary(ctx))


def input_samples(module: Module, inputs: dict[str, np.ndarray] | None, seed: int, samples: int
                  ) -> list[dict[str, np.ndarray]]:
    """The input sets to verify on: the user's `inputs` (one set, or several when every array has a
    leading axis of samples, as `--calibrate` allows), else `samples` (≥ 2) seeded random sets from seeds
    `seed`, `seed + 1`, …"""
    if inputs is not None:
        check_inputs([], inputs, baked=module.baked_inputs)     # a fed weight default is refused, never ignored
        one_set = all(np.shape(inputs.get(v.name)) == v.type.shape for v in module.inputs
                      if v.name in inputs or v.name not in module.input_defaults)
        return [inputs] if one_set else calibration_samples(module, inputs, flag="--inputs")
    if samples < 2:
        raise RccError(f"--samples {samples}: at least 2 (the input-dependent SNR needs the output's spread)")
    return [random_inputs(module, seed + index) for index in range(samples)]


def verify_model(path: str | os.PathLike, module: Module, executor: str = "interpreter",
                 inputs: dict[str, np.ndarray] | None = None, seed: int = 0,
                 samples: int = DEFAULT_SAMPLES, host: HostPart | None = None) -> VerifyResult:
    """Run `module` with `executor` (then the `host` part, when the model was split) and the original model
    with onnxruntime on the same `samples` inputs (see `input_samples`); compare."""
    if executor not in EXECUTORS:
        raise RccError(f"--executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    feeds = input_samples(module, inputs, seed, samples)
    reference = onnxruntime_runner(path, host.handed_over if host is not None else ())
    actual = [EXECUTORS[executor](module, f) for f in feeds]
    if host is None:
        return compare_outputs(actual, [reference(f) for f in feeds], executor)
    finals = [host.finish(outputs, f) for outputs, f in zip(actual, feeds)]
    return verify_host_outputs(actual, finals, [reference(f) for f in feeds], executor, INTERPRETER_TOLERANCE,
                               host.info, host.nms_iou)


def integer_reference_match(compiled: Compiled, trace: dict[str, tuple[np.ndarray, np.ndarray]]) -> bool:
    """Whether every crossbar layer's integer accumulators equal the exact product of the same quantised
    operands (`exact_grouped_product`: int64, or float64 BLAS where its bound proves exactness). Layers whose
    weights are written at run time (`write_mvm`) are checked by tests/passes/test_place_attention.py."""
    weights = {i.dst[0]: compiled.program.constants[i.src[1]] for i in compiled.program.instructions
               if i.opcode == "mvm"}
    return all(np.array_equal(acc, exact_grouped_product(x, weights[name])) for name, (x, acc) in trace.items()
               if name in weights)


def crossbar_depth(program: Program) -> int:
    """Crossbar layers (`mvm` instructions) on the longest path from an input to an output."""
    depth: dict[str, int] = {}
    for instruction in program.instructions:
        reached = max((depth.get(name, 0) for name in instruction.src), default=0)
        for name in instruction.dst:
            depth[name] = reached + (instruction.opcode == "mvm")
    return max((depth.get(i.src[0], 0) for i in program.instructions if i.opcode == "store"), default=0)


def with_extra_stores(program: Program, buffers: list[str]) -> tuple[Program, list[str]]:
    """A copy of `program` that also stores each of `buffers` the program writes, as an output of the
    same name; and the names it stores (those that are not outputs already)."""
    written = {name for i in program.instructions for name in i.dst}
    added = [name for name in dict.fromkeys(buffers) if name in written and name not in program.outputs]
    stores = [Instruction("store", [], [name], {"output": name}) for name in added]
    return replace(program, outputs=[*program.outputs, *added], instructions=[*program.instructions, *stores]), added


def softmax_logits(path: str | os.PathLike) -> dict[str, str]:
    """Graph output → the input of the Softmax that produces it, for the model's softmax outputs."""
    graph = load_onnx(path).graph
    outputs = {o.name for o in graph.output}
    return {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Softmax" and n.output[0] in outputs}


def hold_to_bit_exactness(result: VerifyResult, summary: dict, strict: bool) -> None:
    """Record a quantized model's bit-exact comparison; when `strict` (lossless ADC, ideal cells) an output
    passes only if every element equals onnxruntime's."""
    result.extra.update(summary)
    for name, metrics in result.outputs.items():
        metrics["differing"] = summary["differing_per_output"].get(name)
        if strict:
            metrics["passed"] = metrics["differing"] == 0
    if strict:
        result.extra["tolerance"] = "bit-exact (quantized model, lossless ADC)"


def rcc_quantized_layers(compiled: Compiled) -> int:
    """The float conv and matmul layers rcc quantized itself (`lower-to-xbar`), beside a quantized model's own."""
    return sum(report.figures.get("layers", 0) for report in compiled.reports if report.name == "lower-to-xbar")


ONE_STEP_MODELS = {"dynamic": "dynamically quantized model",
                   "wide": "16-bit activations, whose groups onnxruntime runs as float32 kernels"}


def hold_to_one_step(result: VerifyResult, summary: dict, strict: bool, kind: str = "dynamic") -> None:
    """A model whose integers onnxruntime takes from float32 kernels is held to the integer bound, and, when `strict`
    (every crossbar layer the model's own integers, lossless ADC, ideal cells), each of its quantized boundaries to
    within one integer step of onnxruntime's (its 8- or 16-bit codes; an int32 accumulator moves by a weight when a
    code moves by one). `kind` "dynamic": a dynamically quantized model (DynamicQuantizeLinear), whose run-time
    quantizers take their ranges from float kernels (the scales' products, Softmax, LayerNormalization) that rcc
    computes in float32 but not with MLAS's instructions, and an ulp there can move a value across a rounding tie
    (seen: 84 dB on one seed, 140 dB on another). "wide": 16-bit activations (onnxruntime's A16W8 models), whose
    every Conv/MatMul/Gemm group onnxruntime runs as a float32 kernel (it has no 16-bit integer kernel) and rcc
    exactly, rounded once: at 2^16 codes per range, values within float32 error of a tie are common, and a code
    moved by one moves the next layer's sums by its weights, so only the first differing boundary, where the two
    part, is held to one step (LeNet-5 A16W8 per channel, 4 inputs: 15 of 18,816 relu1 codes one step apart, 56
    one and 6 two steps apart of relu4's 336)."""
    which = "every quantized boundary" if kind == "dynamic" else "the first differing boundary"
    step = summary["max_step" if kind == "dynamic" else "first_step"]
    result.extra["tolerance"] += f" ({ONE_STEP_MODELS[kind]}" + (
        f"; {which} within one step of onnxruntime's: {'yes' if step <= 1 else f'NO, {step} steps apart'})"
        if strict else "; quantized boundaries reported)")
    if strict and step > 1:
        for metrics in result.outputs.values():
            metrics["passed"] = False


def integer_widths(compiled: Compiled) -> tuple[int, int]:
    """The weight and input widths integer verification holds a program to: the narrowest of its crossbar layers'
    (`--layer-weight-bits` and `--layer-input-bits` may set them apart from the target's), or the target's for a
    quantized model (whose layers keep the model's own integers and are held to bit exactness)."""
    layers = [i.attrs for i in compiled.program.instructions if i.opcode == "mvm"]
    if not layers or is_quantized(compiled.program):
        return compiled.target.weight_bits, compiled.target.input_bits
    return min(a["weight_bits"] for a in layers), min(a["input_bits"] for a in layers)


def noise_probe(compiled: Compiled, reference: Callable, feeds: list[dict[str, np.ndarray]], bound: float,
                names: list[str], clean: list[dict[str, np.ndarray]] | None = None) -> dict[str, Any]:
    """A failed integer verification's probe of the model itself (compiler/noise_gain.py): each output's SNR in
    onnxruntime alone with every float input perturbed at one operand's rounding level; per output a number,
    "not moved", "diverged" (driven to infinity) or None (not a float output, or a data-dependent shape).
    `clean`: onnxruntime's outputs on `feeds`, when verification already ran them."""
    level = operand_snr_db(*integer_widths(compiled))
    probe: dict[str, Any] = {"input_snr_db": level, "bound_db": bound}
    if not any(np.asarray(value).dtype.kind == "f" for feed in feeds for value in feed.values()):
        return {**probe, "skipped": "no float input to perturb"}
    snrs = output_snrs(reference, feeds, level, names, clean=clean)
    return {**probe, "output_snr_db": {name: round(snr, 2) if math.isfinite(snr) else
                                       None if math.isnan(snr) else "not moved" if snr > 0 else "diverged"
                                       for name, snr in snrs.items()}}


def verify_compiled(path: str | os.PathLike, compiled: Compiled, executor: str = "machine",
                    inputs: dict[str, np.ndarray] | None = None, seed: int = 0,
                    allow_nonfinite: bool = False, samples: int = DEFAULT_SAMPLES, device: Device | None = None,
                    device_seed: int = 0, faults: FaultMap | None = None) -> VerifyResult:
    """Run the compiled model (`machine`: the program on the machine model, its cells those of `device`
    with `faults`; `interpreter`: the graph IR) and the original model in onnxruntime on the same `samples`
    inputs (see `input_samples`), and compare. A softmax output of very large logits is judged on its
    logits (`judge_on_logits`)."""
    non_ideal = device is not None and not (device.is_ideal and faults is None)
    host = HostPart.of(compiled.program)
    if executor != "machine":
        if non_ideal:
            raise RccError("--device, --faults and --fault-map act on the machine: use --executor machine")
        return verify_model(path, compiled.graph, executor, inputs, seed, samples, host)
    feeds = input_samples(compiled.graph, inputs, seed, samples)
    logits = softmax_logits(path) if host is None else {}  # a host part computes those outputs itself
    boundaries = quantized_boundaries(path, compiled.program) if is_quantized(compiled.program) else []
    program, extra = with_extra_stores(compiled.program, [*logits.values(), *boundaries])
    machine = Machine(program, device=device, seed=device_seed, faults=faults)
    reference = onnxruntime_runner(path, [*(name for name in extra if name in logits.values()),
                                          *(host.handed_over if host is not None else ())])
    traced = compiled.precision == "int"
    widths = integer_widths(compiled)
    runs = [machine.run(f, trace=traced, allow_nonfinite=allow_nonfinite) for f in feeds]
    expected = [reference(f) for f in feeds]
    exact_integers = not non_ideal and compiled.target.adc_is_lossless
    dynamic = is_quantized(compiled.program) and dynamically_quantized(path)
    if compiled.precision == "float":
        tolerance = FLOAT_MACHINE_TOLERANCE
    else:
        tolerance = Tolerance("snr", bound=integer_snr_bound(*widths))
    outputs = compiled.program.outputs
    finals = [{n: r.outputs[n] for n in outputs if n in r.outputs} for r in runs]
    if host is not None:
        parts, finals = finals, [host.finish(final, feed) for final, feed in zip(finals, feeds)]
        result = verify_host_outputs(parts, finals, expected, "machine", tolerance, host.info, host.nms_iou)
    else:
        result = compare_outputs(finals, [{n: e[n] for n in e if n not in extra} for e in expected], "machine",
                                 tolerance)
    for output, tensor in logits.items():
        if tensor in extra and output in result.outputs:
            judge_on_logits(result.outputs[output], [r.outputs[tensor] for r in runs],
                            [e[tensor] for e in expected], tolerance)
    result.extra["precision"] = compiled.precision
    if is_quantized(compiled.program):
        exposed = onnxruntime_runner(path, boundaries) if boundaries else reference
        summary = bit_exact_summary([r.outputs for r in runs], expected, outputs, boundaries,
                                    [exposed(f) for f in feeds] if boundaries else expected,
                                    float_kernel_boundaries(path))
        wide = summary["wide_boundaries"] > 0
        hold_to_bit_exactness(result, summary, strict=exact_integers and not dynamic and not wide)
        if dynamic or wide:
            hold_to_one_step(result, summary, exact_integers and not rcc_quantized_layers(compiled),
                             "dynamic" if dynamic else "wide")
    if non_ideal:
        stuck = f", stuck-at {device.stuck_off_rate:g}/{device.stuck_on_rate:g}" if device.has_faults else ""
        listed = ", fault map" if faults is not None else ""
        result.extra["device"] = f"{device.name} (seed {device_seed}{stuck}{listed})"
    if traced:
        mark_input_bound(result, *widths, crossbar_depth(compiled.program))
        result.extra["adc_lossless"] = compiled.target.adc_is_lossless
        result.extra["integer_reference_match"] = all(integer_reference_match(compiled, r.mvm_trace) for r in runs)
        if not result.passed and not non_ideal:
            result.extra["noise_probe"] = noise_probe(compiled, reference, feeds, tolerance.bound,
                                                      host.handed_over if host is not None else outputs, expected)
    result.extra["counts"] = runs[0].totals.to_json()
    return result
