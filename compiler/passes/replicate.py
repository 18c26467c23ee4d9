"""`replicate`: the schedule of a crossbar-level module: copies of each layer's weights under the chip's
array budget, where every copy sits, which input vectors it serves, reprogramming phases for a model
larger than the chip, and how layers overlap in the pipeline.

    %acc = xbar.mvm(%xq, %wq) {..., arrays = 8, first_array = 0}
        → (copies = auto, 3 copies fit)
    %acc = xbar.mvm(%xq, %wq) {..., arrays = 8, first_array = 0, copies = 3, copy_arrays = [0, 8, 16],
                               copy_rows = [0, 342, 683, 1024], phase = 0, pipeline = "layer", lead = 1.0}

`copies` (option, or the context's `replicate`): `none`, `auto` (the better of the greedy and dynamic-
programming allocations in compiler/replication.py, under the `--chips` budget or, without one, the
whole chips a single copy needs) or a number N (N copies of every layer, as far as its vectors go).
`pipeline` (or the context's `pipelining`): `none` (layers one after another, one inference at a
time), `layer` (a layer starts when the one before has finished; inferences overlap) or `row` (a
convolution starts as soon as the rows its first window needs exist: `lead` is that fraction of the
layer before). When the layers' single copies need more arrays than the budget, they are split in
program order into phases that reprogram the arrays (no replication then); a layer larger than the
whole budget is an error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rcc.backends.mapping import CrossbarMapping
from rcc.compiler.pass_context import PIPELINING, PassContext
from rcc.compiler.passes.base import Pass
from rcc.compiler.replication import Stage, best_allocation, uniform
from rcc.ir.core import Module, Op
from rcc.ir.errors import RccError
from rcc.runtime.instructions import mvm_counts


def stages_of(mvms: list[Op], ctx: PassContext) -> list[Stage]:
    """Each mvm's vectors, cycles per vector (the busiest copy's crossbar time) and arrays per copy."""
    stages = []
    for op in mvms:
        mapping = CrossbarMapping.of(op.attrs, op.operands[1].type.shape)
        stages.append(Stage(op.operands[0].type.shape[0], mvm_counts(ctx.target, mapping, 1).cycles,
                            op.attrs["arrays"]))
    return stages


def row_lead(module: Module, op: Op) -> float:
    """The fraction of its input's rows a layer needs before its first output row: a convolution's first
    window (kernel height less top padding) over the input height; 1 for anything without im2col."""
    producers = {result.name: producer for producer in module.ops for result in producer.results}
    value = op.operands[0]
    while value.name in producers:
        producer = producers[value.name]
        if producer.opname == "vec.im2col":
            height = producer.operands[0].type.shape[2]
            (kh, _), (dh, _), top = producer.attrs["kernel"], producer.attrs["dilations"], producer.attrs["pads"][0]
            return min(1.0, max(1, (kh - 1) * dh + 1 - top) / height)
        if producer.opname != "vec.quantize":
            return 1.0
        value = producer.operands[0]
    return 1.0


@dataclass
class Replicate(Pass):
    name = "replicate"
    copies: str | None = None     # none | auto | N; None: the context's `replicate`
    pipeline: str | None = None   # none | layer | row; None: the context's `pipelining`

    def run(self, module: Module, ctx: PassContext) -> bool:
        mode = ctx.replicate if self.copies is None else self.copies
        pipeline = ctx.pipelining if self.pipeline is None else self.pipeline
        if pipeline not in PIPELINING:
            raise RccError(f"--pipelining {pipeline!r}: choose one of {', '.join(PIPELINING)}")
        mvms = [op for op in module.ops if op.opname == "xbar.mvm"]
        stages = stages_of(mvms, ctx)
        single = sum(stage.arrays for stage in stages)
        budget = ctx.target.max_arrays
        phases = self.phases(mvms, budget) if budget is not None and single > budget else [0] * len(mvms)
        copies = self.copies_of(mode, stages, single, budget, ctx) if max(phases, default=0) == 0 else \
            [1] * len(mvms)
        placed: dict[int, int] = {}
        for op, stage, count, phase in zip(mvms, stages, copies, phases):
            first = placed.get(phase, 0)
            placed[phase] = first + count * stage.arrays
            op.attrs.update({"copies": count, "first_array": first,
                             "copy_arrays": tuple(first + c * stage.arrays for c in range(count)),
                             "copy_rows": tuple(c * stage.vectors // count for c in range(count + 1)),
                             "phase": phase, "pipeline": pipeline,
                             "lead": row_lead(module, op) if pipeline == "row" else 1.0})
        ctx.report.figures.update({"phases": max(phases, default=0) + 1, "budget_arrays": budget,
                                   "arrays": max(placed.values(), default=0),
                                   "copies": {op.attrs["layer"]: c for op, c in zip(mvms, copies)}})
        return bool(mvms)

    def copies_of(self, mode: str, stages: list[Stage], single: int, budget: int | None,
                  ctx: PassContext) -> list[int]:
        if mode == "none":
            return [1] * len(stages)
        if mode == "auto":
            if budget is None:  # the whole chips a single copy occupies
                per_chip = ctx.target.tiles_per_chip * ctx.target.arrays_per_tile
                budget = max(1, math.ceil(single / per_chip)) * per_chip
            strategy, copies, keys = best_allocation(stages, budget)
            ctx.report.figures.update({"strategy": strategy,
                                       "strategies": {name: {"bottleneck_cycles": key[0], "sum_cycles": key[1]}
                                                      for name, key in keys.items()}})
            return copies
        if not mode.isdigit() or int(mode) < 1:
            raise RccError(f"--replicate {mode!r}: choose none, auto or a number of copies")
        copies = uniform(stages, int(mode))
        needed = sum(stage.arrays * c for stage, c in zip(stages, copies))
        if budget is not None and needed > budget:
            raise RccError(f"--replicate {mode}: {needed} arrays needed; the target has {budget} "
                           f"(raise --chips or use --replicate auto)")
        return copies

    @staticmethod
    def phases(mvms: list[Op], budget: int) -> list[int]:
        """Program-order phases of at most `budget` arrays each; RccError for a layer larger than that."""
        phases, phase, used = [], 0, 0
        for op in mvms:
            arrays = op.attrs["arrays"]
            if arrays > budget:
                raise RccError(f"layer {op.attrs['layer']!r} needs {arrays} crossbar arrays; the target has "
                               f"{budget} in all, too few for even this layer (raise --chips or use larger arrays)")
            if used + arrays > budget:
                phase, used = phase + 1, 0
            phases.append(phase)
            used += arrays
        return phases
