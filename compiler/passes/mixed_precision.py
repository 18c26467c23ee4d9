"""`mixed-precision`: widen the inputs or weights of the crossbar layers that cost the most accuracy until the model
reaches an SNR goal (integer mode; off unless the context has a goal, `--mixed-precision auto|DB`).

A deep network quantised to 8 bits everywhere can fall short of the integer verification bound (26.2 dB at 8 bits)
although each layer loses little: the rounding noise of inputs with a wide range for their spread (squeeze-excite
vectors, hard-swish outputs, depthwise layers) or of weights with a wide range for their spread (trained,
re-parameterised convolutions) adds up. This pass gives some layers wider inputs (more input cycles on the DAC) or
wider weights (more weight slices, so more arrays) and leaves the rest at the target's widths; the calibration is
the same. Which widths it may widen is the context's `mixed_precision_widths` (`--mixed-precision-widths
auto|both|inputs|weights`; auto, the default, is both, or inputs only once crossbar-grained pruning has cut the
weights in the layout of their widths, where asking for weights is an error). A weight width the layer's arrays
cannot hold (a row of too few columns for its slices) is not tried. The choice goes into the context's `layer_input_bits` and `layer_weight_bits`, which
`lower-to-xbar` reads; widths the user gave (`--layer-input-bits`, `--layer-weight-bits`) are kept. The report
lists what was widened, in the order chosen, and the SNR measured before and after.

How the SNR is measured: the graph-level module run with every crossbar layer's input quantised as `lower-to-xbar`
will quantise it (its calibrated range at its width, round half to even, saturation), its weights replaced by their
dequantised integers at its weight width, and, with `--attention crossbar`, every matmul that `place-attention`
writes into crossbars quantised as it will be; against the original model (the driver's onnxruntime reference, so
pruning error counts; without one, the module in float), on HELD_OUT_SAMPLES seeded random inputs that calibration
did not see (the user's `--calibrate` sets when given: then clipping on unseen inputs cannot show). The figure is
the worst output's SNR over all samples' elements, as `--verify` computes it. Quantised float arithmetic stands in
for the integer product: they differ by float rounding, far below any goal.

The search works on widths of single layers, a layer's input width or its weight width. Per width step (the
narrowest free width + 2, + 4, ... up to 16 bits: with 3-bit weights and 8-bit inputs, 5, 7, 9, ...), the free widths below the step are ranked by the noise their
rounding adds to their layer's own output (‖W·(q(x) − x)‖² or ‖(q(W) − W)·x‖², over ‖W·x‖², on one held-out
sample); the number of top-ranked widths to widen is found by doubling, then bisection between the last count
measured to miss and the first to reach the goal. The SNR is not strictly monotone in the count, so the count is
the fewest the bisection found, not a proven minimum; the setting returned is always one that was measured to reach
the goal. If widening every free width at one step still misses, all go to that width and the next step starts. A
goal that 16 bits everywhere it may widen still miss is out of its reach (clipping, pruning, attention written
into crossbars at the target's widths, or the widths it may not widen limit the model): it is reported as missed, with the SNR measured at the widest setting, and nothing is
widened.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from rcc.backends.target import Target
from rcc.compiler.calibrate import ActivationObservation
from rcc.compiler.lowering import input_quantization, is_mappable, quantize_weights
from rcc.compiler.pass_context import PassContext
from rcc.compiler.passes.base import Pass
from rcc.compiler.passes.place_attention import written_at_run_time
from rcc.compiler.verify import integer_snr_bound, snr_db
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
WIDEST = 16  # the widest input (and weight) width it chooses
KINDS = ("input", "weight")
WIDTH_CHOICES = {"inputs": ("input",), "weights": ("weight",), "both": KINDS, "auto": KINDS}  # MIXED_PRECISION_WIDTHS

Knob = tuple[str, str]   # (layer, "input" or "weight")
Widths = dict[Knob, int]


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
        if not goal:
            return False
        if ctx.precision != "int":
            raise RccError("--mixed-precision: float precision has no input widths (use --precision int)")
        mapped = [op for op in module.ops if is_mappable(op)]
        if not mapped:
            raise RccError("--mixed-precision: the model has no float conv or matmul with constant weights to "
                           "widen (a quantized model's layers keep the widths of its own integers)")
        kinds = WIDTH_CHOICES[ctx.mixed_precision_widths]
        pruning = ctx.report_of("prune-crossbars")
        if ctx.prune is not None or pruning is not None and pruning.removed:   # blocks cut in each weight layout
            if "weight" in kinds and ctx.mixed_precision_widths != "auto":
                raise RccError(f"--mixed-precision-widths {ctx.mixed_precision_widths}: crossbar-grained pruning cut "
                               f"the weights in the layout of their widths, so only inputs can be widened (use "
                               f"inputs or auto)")
            kinds = ("input",)
        search = _Search(module, mapped, ctx, kinds)
        widths, snr = search.widths_for(goal)
        widened = [((member, kind), widths[layer, kind]) for layer, kind in search.order
                   if widths[layer, kind] != search.base[layer, kind] for member in search.members(layer, kind)]
        for (layer, kind), bits in widened:
            (ctx.layer_input_bits if kind == "input" else ctx.layer_weight_bits)[layer] = bits
        ctx.report.figures.update({
            "goal_db": goal, "snr_db_before": round(search.base_snr, 2),
            "snr_db": round(snr, 2),  # with every free width at 16 bits when the goal is missed
            "reached": snr >= goal, "layers": len(mapped), "widths": "+".join(kinds),
            "widened": len({layer for (layer, _), _ in widened}),
            "fixed_by_user": len({layer for layer, _ in search.fixed}), "measurements": search.measurements,
            "samples": len(search.samples), "held_out": ctx.calibration is None,  # else the first calibration sets
            "reference": search.reference_name})
        ctx.report.removed = [{"layer": layer, f"{kind}_bits": bits} for (layer, kind), bits in widened]
        return bool(widened)


class _Search:
    """The fake-quantised module's SNR for given layer widths, and the search over them."""

    def __init__(self, module: Module, mapped: list[Op], ctx: PassContext, kinds: tuple[str, ...]) -> None:
        self.module, self.mapped, self.ctx, self.target, self.kinds = module, mapped, ctx, ctx.target, kinds
        self.op_of = {op.result.name: op for op in mapped}
        # layers reading one weight constant (a recurrent layer's steps: one R on one set of arrays) share one weight
        # width, that of the first
        first_reader: dict[str, str] = {}
        self.weight_owner = {op.result.name: first_reader.setdefault(op.operands[1].name, op.result.name)
                             for op in mapped}
        self.base: Widths = {}
        for op in mapped:
            layer = op.result.name
            self.base[layer, "input"] = ctx.input_bits_of(layer)
            self.base[layer, "weight"] = ctx.weight_bits_of(layer)
        tables = {"input": ctx.layer_input_bits, "weight": ctx.layer_weight_bits}
        self.fixed = {(layer, kind) for layer, kind in self.base if ctx.width_key(layer, tables[kind]) is not None}
        self.samples = (ctx.calibration_samples(module)[:HELD_OUT_SAMPLES] if ctx.calibration is not None else
                        [random_inputs(module, HELD_OUT_SEED + i) for i in range(HELD_OUT_SAMPLES)])
        self.attention = [op for op in module.ops if written_at_run_time(op, ctx.target.attention)]
        self.attention_ranges = ctx.activation_ranges(module, [op.operands[0] for op in self.attention]) \
            if self.attention else {}
        self.observed: ActivationObservation | None = None  # the layers' inputs on the calibration samples
        self.dequantized: dict[tuple[Op, int], np.ndarray] = {}
        self.expected, self.reference_name = self.references()
        self.measurements = 0
        self.order: list[Knob] = []  # the widened widths, in the order the search chose them
        self.base_snr = self.snr(self.base)

    def references(self) -> tuple[list[dict[str, np.ndarray]], str]:
        """The outputs to measure against: the original model's (the driver's onnxruntime reference: pruning
        error counts) when it gives every output of the module, else the module's own in float."""
        names = [value.name for value in self.module.outputs]
        if self.ctx.reference is not None:
            expected = [self.ctx.reference(sample) for sample in self.samples]
            if all(name in outputs for outputs in expected for name in names):
                return expected, "original model"
        return [interpreter.run(self.module, sample) for sample in self.samples], "graph in float"

    def range_of(self, op: Op, bits: int) -> tuple[float, float]:
        """`op`'s input range quantised to `bits`, as `lower-to-xbar` will calibrate it."""
        if self.observed is None:
            self.observed = self.ctx.observe(self.module, list(dict.fromkeys(op.operands[0] for op in self.mapped)))
        return self.observed.range_of(op.operands[0], bits)

    def quantized_input(self, op: Op, x: np.ndarray, bits: int) -> np.ndarray:
        return fake_quantized(x, self.range_of(op, bits), bits)

    def quantized_weight(self, op: Op, bits: int) -> np.ndarray:
        """`op`'s weight as arrays of `bits`-bit weights hold it, kept for the two widths last asked (the search
        compares the current width with one step wider; a float64 copy of ViT-B/16's weights is 0.7 GB)."""
        if (op, bits) not in self.dequantized:
            kept = [key for key in self.dequantized if key[0] is op]
            for key in kept[:-1]:
                del self.dequantized[key]
            self.dequantized[op, bits] = dequantized_weight(op, bits)
        return self.dequantized[op, bits]

    def members(self, layer: str, kind: str) -> list[str]:
        """The layers a width of `layer` sets: itself, and for a weight width every layer reading its weights."""
        if kind == "input":
            return [layer]
        return [other for other, owner in self.weight_owner.items() if owner == layer]

    def fits(self, knob: Knob, width: int) -> bool:
        """Whether the layer's arrays hold `width`-bit weights (enough columns for their slices); inputs always."""
        layer, kind = knob
        if kind == "input":
            return True
        try:
            replace(self.ctx.layer_target(layer), weight_bits=width)
        except RccError:
            return False
        return True

    def substitute(self, widths: Widths) -> interpreter.Substitute:
        """The interpreter hook: each layer's input and weights as the arrays will see them, and attention
        matmuls written into crossbars at run time (`--attention crossbar`) as `place-attention` quantises
        them (their left operand's range calibrated here on the float graph; there on the quantised one)."""
        by_op = {op: (widths[op.result.name, "input"], widths[self.weight_owner[op.result.name], "weight"])
                 for op in self.mapped}
        attention = set(self.attention)
        input_bits, weight_bits = self.target.input_bits, self.target.weight_bits

        def quantized(op: Op, operands: list[np.ndarray]) -> list[np.ndarray]:
            if op in by_op:
                inputs, weights = by_op[op]
                return [self.quantized_input(op, operands[0], inputs), self.quantized_weight(op, weights),
                        *operands[2:]]
            if op in attention:
                lhs, rhs = operands
                return [fake_quantized(lhs, self.attention_ranges[op.operands[0]], input_bits),
                        column_quantized(rhs, weight_bits)]
            return operands
        return quantized

    def snr(self, widths: Widths) -> float:
        """The worst output's SNR (dB) of the module quantised with these widths, over the samples (as
        `--verify` computes it: −inf for an output whose reference is zero and whose error is not)."""
        self.measurements += 1
        substitute = self.substitute(widths)
        signal: dict[str, float] = {}
        noise: dict[str, float] = {}
        for sample, expected in zip(self.samples, self.expected):
            env = interpreter.evaluate(self.module, sample, substitute)
            for value in self.module.outputs:
                reference = expected[value.name].astype(np.float64)
                signal[value.name] = signal.get(value.name, 0.0) + float(np.sum(reference ** 2))
                error = env[value].astype(np.float64) - reference
                noise[value.name] = noise.get(value.name, 0.0) + float(np.sum(error ** 2))
        return min((snr_db(signal[name], noise[name]) for name in signal), default=math.inf)

    def ranking(self, knobs: list[Knob], widths: Widths) -> list[Knob]:
        """`knobs` by the noise their rounding at `widths` adds to their layer's own output, worst first."""
        env = interpreter.evaluate(self.module, self.samples[0])
        noise = {}
        for layer, kind in knobs:
            op = self.op_of[layer]
            x, weight = env[op.operands[0]], op.operands[1].data
            bits = widths[layer, kind]
            if kind == "input":
                error = OPS[op.opname].run([self.quantized_input(op, x, bits) - x, weight], op.attrs)[0]
            else:
                error = OPS[op.opname].run([x, self.quantized_weight(op, bits) - weight], op.attrs)[0]
            clean = OPS[op.opname].run([x, weight], op.attrs)[0].astype(np.float64)
            power = float(np.sum(clean ** 2))
            noise[layer, kind] = float(np.sum(error.astype(np.float64) ** 2)) / power if power > 0 else 0.0
        return sorted(knobs, key=lambda knob: -noise[knob])

    def widths_for(self, goal: float) -> tuple[Widths, float]:
        """The widths reaching `goal` with the fewest widened at each step, and their SNR (the base widths and the
        widest setting's SNR when no step reaches it)."""
        widths, snr = dict(self.base), self.base_snr
        free = [knob for knob in self.base if knob[1] in self.kinds and knob not in self.fixed
                and (knob[1] == "input" or self.weight_owner[knob[0]] == knob[0])]
        step_width = min((self.base[knob] for knob in free), default=WIDEST)
        while snr < goal and step_width < WIDEST:
            step_width = min(step_width + WIDTH_STEP, WIDEST)
            below = [knob for knob in free if widths[knob] < step_width and self.fits(knob, step_width)]
            if below:
                order = self.ranking(below, widths)
                count, snr = self.fewest_reaching(goal, order, widths, step_width)
                widths = {**widths, **dict.fromkeys(order[:count], step_width)}
                self.order = [knob for knob in self.order if knob not in order[:count]] + order[:count]
        return (widths, snr) if snr >= goal else (dict(self.base), snr)

    def fewest_reaching(self, goal: float, order: list[Knob], widths: Widths, width: int) -> tuple[int, float]:
        """How many of `order` (top-ranked first) to widen to `width` for `goal`, found by doubling, then
        bisection between the last count that missed and the first that reached it, with their SNR; all of
        them, and their SNR, when even that misses."""
        def measured(count: int) -> float:
            return self.snr({**widths, **dict.fromkeys(order[:count], width)})

        low, count = 0, 1
        while True:
            count = min(count, len(order))
            snr = measured(count)
            if snr >= goal or count == len(order):
                break
            low, count = count, 2 * count
        if snr < goal:
            return count, snr
        while count - low > 1:
            middle = (low + count) // 2
            middle_snr = measured(middle)
            if middle_snr >= goal:
                count, snr = middle, middle_snr
            else:
                low = middle
        return count, snr


def fake_quantized(x: np.ndarray, value_range: tuple[float, float], bits: int) -> np.ndarray:
    """x rounded to the `bits`-bit grid of its calibrated range, as `vec.quantize` then dequantise."""
    scale, signed = input_quantization(*value_range, bits)
    return quantized_levels(x, scale, bits, signed) * np.float32(scale)


def column_quantized(rhs: np.ndarray, bits: int) -> np.ndarray:
    """A run-time written operand [..., K, N] rounded per column to `bits` (`vec.quantize_weights`)."""
    return dequantized(rhs.reshape(-1, *rhs.shape[-2:]), bits).reshape(rhs.shape).astype(rhs.dtype)


def dequantized_weight(op: Op, weight_bits: int) -> np.ndarray:
    """The op's weight as the arrays hold it, in its layout."""
    return weight_from_matrix(op, dequantized(weight_matrix(op), weight_bits))


def dequantized(matrices: np.ndarray, bits: int) -> np.ndarray:
    """Weights [G, K, M] as the arrays hold them: per-column integers times their float32 scales, in float64."""
    quantized, scale = quantize_weights(matrices, bits)
    return quantized * scale.reshape(matrices.shape[0], 1, -1).astype(np.float64)
