"""`mixed-precision`: widen the inputs of the crossbar layers that cost the most accuracy until the model
reaches an SNR goal (integer mode; off unless the context has a goal, `--mixed-precision auto|DB`).

A deep network quantised to 8-bit inputs everywhere can fall short of the integer verification bound
(26.2 dB at 8 bits) although most of its layers lose little: the rounding noise of a few inputs with a
wide range for their spread (squeeze-excite vectors, hard-swish outputs, depthwise layers) dominates. This
pass gives those layers wider inputs (more input cycles on the DAC, nothing else changes: the same arrays,
weights and ranges) and leaves the rest at the target's width. The choice goes into the context's
`layer_input_bits`, which `lower-to-xbar` reads; the report lists the widened layers and the SNR measured
before and after.

How the SNR is measured: the graph-level module run with every crossbar layer's input quantised as
`lower-to-xbar` will quantise it (its calibrated range, round half to even, saturation) and its weights
replaced by their dequantised integers, against the same module in float, on HELD_OUT_SAMPLES seeded
random inputs that calibration did not see (the user's `--calibrate` sets when given: then clipping on
unseen inputs cannot show). The figure is the worst output's SNR over all samples' elements, as
`--verify` computes it. Quantised float arithmetic stands in for the integer product: they differ by
float32 rounding, far below any goal.

The search, per width step (target width + 2, + 4, ... up to 16 bits): layers are ranked by the noise
their input quantisation adds to their own output (‖W·(q(x) − x)‖² / ‖W·x‖² on one held-out sample);
the fewest top-ranked layers whose widening reaches the goal are found by doubling, then bisection (the
SNR is taken as growing with the count, which the final measurement checks). If every layer at one step
still misses, all go to that width and the next step starts. A goal that even 16-bit inputs everywhere
miss is out of reach of input widths (weight rounding or clipping limits the model): it is reported as
missed with the SNR measured at the widest setting, and no layer is widened.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rcc.backends.target import MAX_INPUT_BITS, Target
from rcc.compiler.lowering import input_quantization, is_mappable, quantize_weights
from rcc.compiler.pass_context import PassContext
from rcc.compiler.passes.base import Pass
from rcc.compiler.verify import integer_snr_bound
from rcc.ir import interpreter
from rcc.ir.core import Module, Op
from rcc.ir.errors import RccError
from rcc.ir.inputs import random_inputs
from rcc.ir.ops.nn_linear import weight_from_matrix, weight_matrix
from rcc.ir.ops.xbar import quantized_levels
from rcc.ir.optable import OPS

AUTO_MARGIN_DB = 3.0  # `auto`: the verification bound plus this, for inputs the search did not see
HELD_OUT_SAMPLES = 4
HELD_OUT_SEED = 2_000_003
WIDTH_STEP = 2

Widths = dict[str, int]


def mixed_precision_goal(text: str, target: Target) -> float:
    """The SNR goal (dB) of `--mixed-precision TEXT`: a number, or `auto` (the integer verification bound of
    the target's widths plus AUTO_MARGIN_DB)."""
    if text == "auto":
        return integer_snr_bound(target.weight_bits, target.input_bits) + AUTO_MARGIN_DB
    try:
        goal = float(text)
    except ValueError:
        goal = math.nan
    if not 0 < goal < 200:
        raise RccError(f"--mixed-precision {text!r}: give auto or an SNR goal in dB (e.g. 30)")
    return goal


@dataclass
class MixedPrecision(Pass):
    name = "mixed-precision"
    goal_db: float = 0.0  # above 0: this goal instead of the context's

    def run(self, module: Module, ctx: PassContext) -> bool:
        goal = self.goal_db or ctx.mixed_precision
        mapped = [op for op in module.ops if is_mappable(op)]
        if not goal or ctx.precision != "int" or not mapped:
            return False
        search = _Search(module, mapped, ctx)
        widths, snr = search.widths_for(goal)
        widened = {layer: bits for layer, bits in widths.items() if bits != ctx.target.input_bits}
        ctx.layer_input_bits.update(widened)
        ctx.report.figures.update({
            "goal_db": goal, "snr_db_before": round(search.base_snr, 2), "snr_db": round(snr, 2),  # at the widest when missed
            "reached": snr >= goal, "layers": len(mapped), "widened": len(widened),
            "measurements": search.measurements, "samples": len(search.samples)})
        ctx.report.removed = [{"layer": layer, "input_bits": widened[layer]} for layer in search.order
                              if layer in widened]
        return bool(widened)


class _Search:
    """The fake-quantised module's SNR for given layer widths, and the search over them."""

    def __init__(self, module: Module, mapped: list[Op], ctx: PassContext) -> None:
        self.module, self.mapped, self.target = module, mapped, ctx.target
        self.base = {op.result.name: ctx.input_bits_of(op.result.name) for op in mapped}
        self.samples = (ctx.calibration_samples(module)[:HELD_OUT_SAMPLES] if ctx.calibration is not None else
                        [random_inputs(module, HELD_OUT_SEED + i) for i in range(HELD_OUT_SAMPLES)])
        ranges = ctx.activation_ranges(module, [op.operands[0] for op in mapped])
        self.ranges = {op: ranges[op.operands[0]] for op in mapped}
        self.weights = {op: dequantized_weight(op, self.target.weight_bits) for op in mapped}
        self.expected = [interpreter.run(module, sample) for sample in self.samples]
        self.measurements = 0
        self.order: list[str] = []  # the widened layers, in the order the search chose them
        self.base_snr = self.snr(self.base)

    def quantized_input(self, op: Op, x: np.ndarray, bits: int) -> np.ndarray:
        scale, signed = input_quantization(*self.ranges[op], bits)
        return quantized_levels(x, scale, bits, signed) * np.float32(scale)

    def snr(self, widths: Widths) -> float:
        """The worst output's SNR (dB) of the module quantised with these widths, over the samples."""
        self.measurements += 1
        by_op = {op: widths[op.result.name] for op in self.mapped}

        def quantized(op: Op, operands: list[np.ndarray]) -> list[np.ndarray]:
            if op not in by_op:
                return operands
            return [self.quantized_input(op, operands[0], by_op[op]), self.weights[op], *operands[2:]]

        signal: dict[str, float] = {}
        noise: dict[str, float] = {}
        for sample, expected in zip(self.samples, self.expected):
            env = interpreter.evaluate(self.module, sample, quantized)
            for value in self.module.outputs:
                reference = expected[value.name].astype(np.float64)
                signal[value.name] = signal.get(value.name, 0.0) + float(np.sum(reference ** 2))
                error = env[value].astype(np.float64) - reference
                noise[value.name] = noise.get(value.name, 0.0) + float(np.sum(error ** 2))
        return min((10 * math.log10(signal[name] / noise[name]) if noise[name] > 0 else math.inf)
                   for name in signal if signal[name] > 0) if signal else math.inf

    def ranking(self, widths: Widths) -> list[str]:
        """Layers by the noise their input quantisation adds to their own output, worst first."""
        env = interpreter.evaluate(self.module, self.samples[0])
        noise = {}
        for op in self.mapped:
            x = env[op.operands[0]]
            error = self.quantized_input(op, x, widths[op.result.name]) - x
            rest = [v.data if v.is_constant else env[v] for v in op.operands[1:2]]
            added = OPS[op.opname].run([error, *rest], op.attrs)[0].astype(np.float64)
            clean = OPS[op.opname].run([x, *rest], op.attrs)[0].astype(np.float64)
            power = float(np.sum(clean ** 2))
            noise[op.result.name] = float(np.sum(added ** 2)) / power if power > 0 else 0.0
        return sorted(noise, key=lambda layer: -noise[layer])

    def widths_for(self, goal: float) -> tuple[Widths, float]:
        """The widths reaching `goal` with the fewest widened layers at each step, and their SNR."""
        widths, snr = dict(self.base), self.base_snr
        step_width = self.target.input_bits
        while snr < goal and step_width < MAX_INPUT_BITS:
            step_width = min(step_width + WIDTH_STEP, MAX_INPUT_BITS)
            order = [layer for layer in self.ranking(widths) if widths[layer] < step_width]
            if not order:
                continue

            def widened(count: int) -> Widths:
                return {**widths, **{layer: step_width for layer in order[:count]}}

            low, high, found = 0, 1, None
            while found is None:      # doubling: the first count that reaches the goal
                count = min(high, len(order))
                measured = self.snr(widened(count))
                if measured >= goal:
                    found = (count, measured)
                elif count == len(order):
                    break
                else:
                    low, high = count, 2 * high
            if found is None:
                widths, snr = widened(len(order)), measured
                self.order = [layer for layer in self.order if layer not in order] + order
                continue
            high, best = found
            while high - low > 1:     # bisection between the last miss and the first hit
                middle = (low + high) // 2
                measured = self.snr(widened(middle))
                if measured >= goal:
                    high, best = middle, measured
                else:
                    low = middle
            widths, snr = widened(high), best
            self.order = [layer for layer in self.order if layer not in order[:high]] + order[:high]
        return (widths, snr) if snr >= goal else (dict(self.base), snr)


def dequantized_weight(op: Op, weight_bits: int) -> np.ndarray:
    """The op's weight as the arrays hold it: per-channel integers times their scales, in its layout."""
    matrix = weight_matrix(op)
    quantized, scale = quantize_weights(matrix, weight_bits)
    groups, _, outputs = matrix.shape
    return weight_from_matrix(op, quantized * scale.reshape(groups, 1, outputs).astype(np.float64))
