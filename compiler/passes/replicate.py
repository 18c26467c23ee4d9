"""`replicate`: the schedule of a crossbar-level module: copies of each layer's weights under the chip's
array budget, where every copy sits, which input vectors it serves, reprogramming phases for a model
larger than the chip, and how layers overlap in the pipeline.

    %acc = xbar.mvm(%xq, %wq) {..., arrays = 8, first_array = 0}
        → (copies = auto, 3 copies fit)
    %acc = xbar.mvm(%xq, %wq) {..., arrays = 8, first_array = 0, copies = 3, copy_arrays = [0, 8, 16],
                               copy_rows = [0, 342, 683, 1024], phase = 0, pipeline = "layer", lead = 1.0}

`copies` (option, or the context's `replicate`): `none`, `auto` (the better of the greedy and dynamic-
programming allocations in compiler/replication.py, or the one `strategy` names, under the `arrays`
budget, else the `--chips` budget, else the whole chips a single copy needs) or a number N (N copies
of every layer, as far as its vectors go).
`pipeline` (or the context's `pipelining`): `none` (layers one after another, one inference at a
time), `layer` (a layer starts when the one before has finished; inferences overlap) or `row` (a
convolution starts as soon as the rows its first window needs exist: `lead` is that fraction of the
layer before; the window of input rows it holds must fit its tiles' buffers, `tile_buffer_kb` each,
ISAAC's 64 KB eDRAM by default). When the layers' single copies need more arrays than the budget, they are split in
program order into phases that reprogram the arrays (no replication then); a layer larger than the
whole budget is an error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from rcc.backends.mapping import CrossbarMapping
from rcc.compiler.pass_context import PIPELINING, PassContext
from rcc.compiler.passes.base import Pass
from rcc.compiler.replication import BASELINES, STRATEGIES, Stage, best_allocation, schedule_key, uniform
from rcc.ir.core import Module, Op
from rcc.ir.errors import RccError
from rcc.ir.ops.xbar import array_owner_ops, arrays_key
from rcc.runtime.instructions import mvm_counts


def stages_of(mvms: list[Op], ctx: PassContext) -> list[Stage]:
    """Each mvm's vectors, cycles per vector (the busiest copy's crossbar time) and arrays per copy. mvms that
    share arrays (time-multiplexed, `array_owner_ops`) are not replicated: each is one indivisible stage of its
    whole time, the first holding the arrays, the others none."""
    shared = array_owner_ops(mvms)
    owners = set(shared.values())
    stages = []
    for op in mvms:
        mapping = CrossbarMapping.of(op.attrs, op.operands[1].type.shape)
        vectors, step = op.operands[0].type.shape[0], mvm_counts(ctx.target, mapping, 1).cycles
        if op in shared or op in owners:
            stages.append(Stage(1, vectors * step, 0 if op in shared else op.attrs["arrays"]))
        else:
            stages.append(Stage(vectors, step, op.attrs["arrays"]))
    return stages


def feeding_im2col(module: Module, op: Op) -> Op | None:
    """The `vec.im2col` an mvm's vectors come from (through a quantize), if any."""
    producers = {result.name: producer for producer in module.ops for result in producer.results}
    value = op.operands[0]
    while value.name in producers:
        producer = producers[value.name]
        if producer.opname == "vec.im2col":
            return producer
        if producer.opname != "vec.quantize":
            return None
        value = producer.operands[0]
    return None


def row_lead(im2col: Op | None) -> float:
    """The fraction of its input's rows a layer needs before its first output row: a convolution's first
    window (kernel height less top padding) over the input height; 1 for anything without im2col."""
    if im2col is None:
        return 1.0
    height = im2col.operands[0].type.shape[2]
    (kh, _), (dh, _), top = im2col.attrs["kernel"], im2col.attrs["dilations"], im2col.attrs["pads"][0]
    return min(1.0, max(1, (kh - 1) * dh + 1 - top) / height)


def row_buffer_bytes(im2col: Op, input_bits: int) -> int:
    """Input a row-pipelined convolution holds: one window height of rows, all columns and channels."""
    _, channels, height, width = im2col.operands[0].type.shape
    (kh, _), (dh, _) = im2col.attrs["kernel"], im2col.attrs["dilations"]
    return min(height, (kh - 1) * dh + 1) * width * channels * math.ceil(input_bits / 8)


@dataclass
class Replicate(Pass):
    name = "replicate"
    copies: str | None = None     # none | auto | N; None: the context's `replicate`
    pipeline: str | None = None   # none | layer | row; None: the context's `pipelining`
    strategy: str = field(default="best", metadata={"choices": ("best", *STRATEGIES, *BASELINES)})
    arrays: int | None = None     # the array budget; None: the target's (`--chips`)
    tile_buffer_kb: int = 64      # ISAAC Table I: a tile's eDRAM buffer, 64 KB

    def run(self, module: Module, ctx: PassContext) -> bool:
        mode = ctx.replicate if self.copies is None else self.copies
        pipeline = ctx.pipelining if self.pipeline is None else self.pipeline
        if pipeline not in PIPELINING:
            raise RccError(f"--pipelining {pipeline!r}: choose one of {', '.join(PIPELINING)}")
        mvms = [op for op in module.ops if op.opname == "xbar.mvm"]
        stages = stages_of(mvms, ctx)
        single = sum(stage.arrays for stage in stages)
        budget = ctx.target.max_arrays if self.arrays is None else self.arrays
        phases = self.phases(mvms, budget) if budget is not None and single > budget else [0] * len(mvms)
        copies = self.copies_of(mode, stages, single, budget, ctx) if max(phases, default=0) == 0 else \
            [1] * len(mvms)
        placed: dict[int, int] = {}
        programmed: dict[tuple, int] = {}   # (phase, weights) → first array: time-multiplexed mvms share it
        for op, count, phase in zip(mvms, copies, phases):
            arrays, vectors = op.attrs["arrays"], op.operands[0].type.shape[0]
            key = arrays_key(op, phase)
            if key not in programmed:
                programmed[key] = placed.get(phase, 0)
                placed[phase] = programmed[key] + count * arrays
            first = programmed[key]
            op.attrs.update({"copies": count, "first_array": first,
                             "copy_arrays": tuple(first + c * arrays for c in range(count)),
                             "copy_rows": tuple(c * vectors // count for c in range(count + 1)),
                             "phase": phase, "pipeline": pipeline})
            op.attrs["lead"] = self.row_lead_checked(module, op, ctx) if pipeline == "row" else 1.0
        ctx.report.figures.update({"phases": max(phases, default=0) + 1, "budget_arrays": budget,
                                   "arrays": max(placed.values(), default=0),
                                   "copies": {op.attrs["layer"]: c for op, c in zip(mvms, copies)}})
        return bool(mvms)

    def row_lead_checked(self, module: Module, op: Op, ctx: PassContext) -> float:
        """`row_lead`, after checking the window of rows it holds fits the buffers of the layer's tiles."""
        im2col = feeding_im2col(module, op)
        if im2col is None:
            return 1.0
        held = row_buffer_bytes(im2col, op.attrs["input_bits"])
        tiles = math.ceil(op.attrs["arrays"] * op.attrs["copies"] / ctx.target.arrays_per_tile)
        if held > tiles * self.tile_buffer_kb * 1024:
            raise RccError(f"--pipelining row: layer {op.attrs['layer']!r} holds {held} bytes of input rows; its "
                           f"{tiles} tile(s) buffer {tiles * self.tile_buffer_kb} KB (use --pipelining layer)")
        ctx.report.figures.setdefault("row_buffer_bytes", {})[op.attrs["layer"]] = held
        return row_lead(im2col)

    def copies_of(self, mode: str, stages: list[Stage], single: int, budget: int | None,
                  ctx: PassContext) -> list[int]:
        if mode == "none":
            return [1] * len(stages)
        if mode == "auto":
            if budget is None:  # the whole chips a single copy occupies
                per_chip = ctx.target.tiles_per_chip * ctx.target.arrays_per_tile
                budget = max(1, math.ceil(single / per_chip)) * per_chip
            if self.strategy == "best":
                strategy, copies, keys = best_allocation(stages, budget)
            else:
                strategy, copies = self.strategy, {**STRATEGIES, **BASELINES}[self.strategy](stages, budget)
                keys = {strategy: schedule_key(stages, copies)}
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
        programmed: set[tuple] = set()   # the weights on this phase's arrays (later readers add no arrays)
        for op in mvms:
            arrays, key = op.attrs["arrays"], arrays_key(op, 0)
            if arrays > budget:
                raise RccError(f"layer {op.attrs['layer']!r} needs {arrays} crossbar arrays; the target has "
                               f"{budget} in all, too few for even this layer (raise --chips or use larger arrays)")
            if key in programmed:
                arrays = 0
            elif used + arrays > budget:
                phase, used, programmed = phase + 1, 0, set()
            programmed.add(key)
            phases.append(phase)
            used += arrays
        return phases
