"""`prune-crossbars`: crossbar-grained pruning — drop each layer's least salient array blocks.

A unit is one array block of the layer's packing (the `mode` of `pack-crossbars`, on the quantised
weights' non-zero pattern) with salience S = Σ|w| over its cells (float weights). In every conv and
matmul with constant weights, the ⌊fraction · blocks⌋ least salient blocks are removed by zeroing their
weights in the graph-level op, so the later `lower-to-xbar` and `pack-crossbars` map fewer arrays and the
pruned model can be exported to ONNX and checked. A compiler cannot fine-tune, so this is lossy.

    %y = nn.matmul(%x, %w) : f32[1,64]   →   %y = nn.matmul(%x, %w.pruned) : f32[1,64]

How much: the option `fraction` when it is above 0, otherwise the context's prune budget — a fixed
fraction, or the largest of 0.05, 0.10, …, 0.95 whose output error (the largest relative L2 of any output
against `ctx.reference`, on up to 4 calibration inputs) stays within the bound. With neither, nothing is
pruned. The report lists each pruned layer's blocks; its figures give the fraction, the error it caused
and the samples it was measured on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rcc.backends.packing import pack
from rcc.backends.target import Target
from rcc.compiler.lowering import is_mappable, quantize_weights
from rcc.compiler.pass_context import PassContext, PruneBudget
from rcc.compiler.passes.base import Pass
from rcc.ir import interpreter
from rcc.ir.core import Module, NameAllocator, Op
from rcc.ir.ops.nn_linear import weight_from_matrix, weight_matrix

PRUNE_STEPS = tuple(round(0.05 * i, 2) for i in range(1, 20))
ERROR_SAMPLES = 4
PRUNING_MODES = ("compact", "kmeans", "best")


def prune_op(module: Module, op: Op, fraction: float, mode: str, target: Target,
             names: NameAllocator) -> dict | None:
    """Zero the ⌊fraction · blocks⌋ least salient blocks of `op`'s weight (a new constant); what went."""
    weights = weight_matrix(op).astype(np.float64)
    quantized, _ = quantize_weights(weights, target.weight_bits)
    units = []  # (salience, group, rows, cols)
    for group in range(weights.shape[0]):
        for block in pack(quantized[group] != 0, target.xbar_rows, target.weights_per_array_row, mode):
            cells = weights[group][np.ix_(block.rows, block.cols)]
            units.append((float(np.abs(cells).sum()), group, block.rows, block.cols))
    count = int(fraction * len(units))
    if count == 0:
        return None
    units.sort(key=lambda unit: unit[0])
    pruned = weights.copy()
    for _, group, rows, cols in units[:count]:
        pruned[group][np.ix_(rows, cols)] = 0.0
    op.operands[1] = module.add_constant(names.fresh(op.operands[1].name + ".pruned"), weight_from_matrix(op, pruned))
    total = sum(unit[0] for unit in units)
    return {"layer": op.result.name, "blocks": len(units), "removed_blocks": count,
            "removed_salience": sum(unit[0] for unit in units[:count]) / total if total else 0.0}


def prune_module(module: Module, fraction: float, mode: str, ctx: PassContext) -> list[dict]:
    """Prune every mappable op of `module` in place, each in the layout of its own weight width
    (`--layer-weight-bits`); one entry per pruned layer."""
    names = module.name_allocator()
    removed = [entry for op in module.ops if is_mappable(op)
               if (entry := prune_op(module, op, fraction, mode, ctx.layer_target(op.result.name), names)) is not None]
    if removed:
        module.drop_unused_constants()
    return removed


def output_error(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> float:
    """The largest relative L2 error of any output (the absolute error where the reference is zero)."""
    worst = 0.0
    for name, reference in expected.items():
        norm = float(np.linalg.norm(reference.astype(np.float64)))
        error = float(np.linalg.norm(actual[name].astype(np.float64) - reference))
        worst = max(worst, error / norm if norm > 0 else error)
    return worst


def budget_fraction(module: Module, budget: PruneBudget, mode: str, ctx: PassContext) -> tuple[float, float, int]:
    """(fraction, the error it causes, samples measured) for `budget`: the largest fraction within it."""
    samples = ctx.calibration_samples(module)[:ERROR_SAMPLES]
    unpruned = module.copy()
    reference = ctx.reference or (lambda sample: interpreter.run(unpruned, sample))
    expected = [reference(sample) for sample in samples]
    best = (0.0, 0.0)
    for fraction in [budget.fraction] if budget.fraction is not None else PRUNE_STEPS:
        candidate = module.copy()
        prune_module(candidate, fraction, mode, ctx)
        error = max((output_error(interpreter.run(candidate, sample), wanted)
                     for sample, wanted in zip(samples, expected)), default=0.0)
        if budget.max_error is not None and error > budget.max_error:
            break
        best = (fraction, error)
    return (*best, len(samples))


@dataclass
class PruneCrossbars(Pass):
    name = "prune-crossbars"
    fraction: float = 0.0  # above 0: prune this fraction of each layer's blocks, whatever the context's budget
    mode: str | None = field(default=None, metadata={"choices": PRUNING_MODES})  # None: the context's packing

    def run(self, module: Module, ctx: PassContext) -> bool:
        mode = self.mode or (ctx.packing if ctx.packing != "dense" else "compact")
        if self.fraction > 0:
            ctx.report.figures["fraction"] = self.fraction
            ctx.report.removed = prune_module(module, self.fraction, mode, ctx)
            return bool(ctx.report.removed)
        if ctx.prune is None:
            return False
        fraction, error, samples = budget_fraction(module, ctx.prune, mode, ctx)
        budget = ctx.prune.fraction if ctx.prune.fraction is not None else f"error<={ctx.prune.max_error}"
        ctx.report.figures.update({"budget": budget, "fraction": fraction, "rel_l2_error": error,
                                   "samples": samples})
        ctx.report.removed = prune_module(module, fraction, mode, ctx) if fraction > 0 else []
        return bool(ctx.report.removed)
