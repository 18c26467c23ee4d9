"""`place-attention`: put every matmul of two activations (Q·Kᵀ, softmax·V) where the target says.

`target.attention = "vector"` (the default) leaves it as a graph-level `nn.matmul`, which the machine's
digital vector unit runs and counts as digital multiply-accumulates (runtime/instructions.py).
`"crossbar"` writes the right operand into spare arrays at run time, as ReRAM transformer accelerators
do (ReTransformer, Yang et al., ICCAD 2020), then reads them with the activations like any `xbar.mvm`:

    %s = nn.matmul(%q, %kt) : f32[2,4,4]          (q f32[2,4,8], kt f32[2,8,4]: 2 heads)
        →
    %s.b      = nn.reshape(%kt) {shape = [2, 8, 4]}                      : f32[2,8,4]
    %s.bscale = vec.weight_scale(%s.b) {bits = 8}                        : f32[8]
    %s.bq     = vec.quantize_weights(%s.b, %s.bscale) {bits = 8}         : i8[2,8,4]
    %s.heads  = nn.reshape(%q) {shape = [2, 4, 8]}                       : f32[2,4,8]
    %s.rowsT  = nn.transpose(%s.heads) {perm = [1, 0, 2]}                : f32[4,2,8]
    %s.rows   = nn.reshape(%s.rowsT) {shape = [4, 16]}                   : f32[4,16]
    %s.xq     = vec.quantize(%s.rows) {scale = ..., bits = 8, signed = true} : i32[4,16]
    %s.acc    = xbar.write_mvm(%s.xq, %s.bq) {groups = 2, ...}            : i64[4,8]
    %s.out    = vec.dequantize(%s.acc, %s.bscale) {input_scale = ...}    : f32[4,8]
    ... reshape [4, 2, 4], transpose [1, 0, 2], reshape to the result      : f32[2,4,4]

Each head (batch entry) is one group of the mapping, so one mvm serves all heads. The right operand is
quantised per output column at run time (the weight scheme of compiler/lowering.py); the left one per
tensor with a range calibrated on the graph-level module `lower-to-xbar` started from, as the crossbar layers'
inputs are (`float_graph_ranges`; on the module being lowered when there is none). The arrays come after every array the
constant weights hold, one set per attention matmul (no two share a cell, so every written cell is
written once per inference). A matmul whose operands are not f32 matrices with equal batch axes (or a
2-D right operand) stays on the vector unit; the report's `removed` lists each matmul with where it ran.
Run after `replicate`: the written arrays are placed after the replicated ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from rcc.backends.mapping import CrossbarMapping
from rcc.backends.target import ATTENTION_MODES
from rcc.compiler.lowering import input_quantization
from rcc.compiler.pass_context import PRECISIONS, PassContext
from rcc.compiler.passes.base import Pass
from rcc.ir.builder import make_op
from rcc.ir.core import Module, NameAllocator, Op, Value


def is_attention_matmul(op: Op) -> bool:
    """A matmul whose right operand is an activation: no weights to program before the model runs."""
    return op.opname == "nn.matmul" and not op.operands[1].is_constant


def written_at_run_time(op: Op, attention: str) -> bool:
    """Whether `place-attention` puts `op` on crossbars written at run time under this `attention` mode."""
    return attention == "crossbar" and is_attention_matmul(op) and _crossbar_ready(op)


def _crossbar_ready(op: Op) -> bool:
    lhs, rhs = (v.type for v in op.operands)
    return (lhs.dtype == rhs.dtype == "f32" and lhs.rank >= 2 and rhs.rank >= 2
            and (rhs.rank == 2 or lhs.shape[:-2] == rhs.shape[:-2]))


def next_free_array(module: Module) -> int:
    """The first array after every array the module's crossbar ops hold (copies included)."""
    ends = [0]
    for op in module.ops:
        if op.opname in ("xbar.mvm", "xbar.write_mvm"):
            firsts = op.attrs.get("copy_arrays") or (op.attrs["first_array"],)
            ends.append(max(firsts) + op.attrs["arrays"])
    return max(ends)


@dataclass
class PlaceAttention(Pass):
    name = "place-attention"
    precision: str | None = field(default=None, metadata={"choices": PRECISIONS})  # None: the context's
    attention: str | None = field(default=None, metadata={"choices": ATTENTION_MODES})  # None: the target's

    def run(self, module: Module, ctx: PassContext) -> bool:
        attention = self.attention or ctx.target.attention
        candidates = [op for op in module.ops if is_attention_matmul(op)]
        placed = [op for op in candidates if written_at_run_time(op, attention)]
        for op in candidates:
            ctx.report.removed.append({"op": op.opname, "value": op.result.name,
                                       "unit": "crossbar-write" if op in placed else "vector"})
        ctx.report.figures.update({"attention": attention, "matmuls": len(candidates),
                                   "on_crossbars": len(placed)})
        if not placed:
            return False
        precision = self.precision or ctx.precision
        ranges = {}
        if precision == "int":
            ranges = float_graph_ranges(ctx, module, [op.operands[0] for op in placed])
        names = module.name_allocator()
        first_array = start = next_free_array(module)
        new_ops: list[Op] = []
        for op in module.ops:
            if op not in placed:
                new_ops.append(op)
                continue
            lowering = _WrittenMatmul(module, op, names)
            created = lowering.ops(ctx, precision, ranges.get(op.operands[0]), first_array)
            first_array += lowering.arrays
            new_ops.extend(created)
            module.replace_uses(op.result, created[-1].result)
        module.ops = new_ops
        ctx.report.figures["arrays"] = first_array - start
        return True


def float_graph_ranges(ctx: PassContext, module: Module, values: list[Value]) -> dict[Value, tuple[float, float]]:
    """The calibrated ranges of `values`, observed on the graph-level module `lower-to-xbar` started from (as it
    calibrates the crossbar layers' inputs, and as `mixed-precision` predicts them), or on `module` when there is
    none or it lacks one of them by name."""
    graph = ctx.graph
    by_name = {} if graph is None else {v.name: v for v in [*graph.inputs, *(r for op in graph.ops for r in op.results)]}
    if graph is None or any(value.name not in by_name for value in values):
        return ctx.activation_ranges(module, values)
    ranges = ctx.activation_ranges(graph, [by_name[value.name] for value in values])
    return {value: ranges[by_name[value.name]] for value in values}


class _WrittenMatmul:
    """The ops replacing one attention matmul on run-time written crossbars."""

    def __init__(self, module: Module, op: Op, names: NameAllocator) -> None:
        self.module, self.op, self.names = module, op, names
        self.name = op.result.name
        self.created: list[Op] = []
        self.arrays = 0

    def emit(self, opname: str, operands: list[Value], attrs: dict, suffix: str | None = None) -> Value:
        new = make_op(opname, operands, attrs, [self.names.fresh(f"{self.name}.{suffix}") if suffix else self.name])
        self.created.append(new)
        return new.result

    def ops(self, ctx: PassContext, precision: str, lhs_range: tuple[float, float] | None,
            first_array: int) -> list[Op]:
        lhs, rhs = self.op.operands
        target = ctx.target
        groups = math.prod(rhs.type.shape[:-2])
        k, n = rhs.type.shape[-2:]
        rows = self.rows(lhs, groups, k)
        b = self.emit("nn.reshape", [rhs], {"shape": (groups, k, n)}, "b")
        if precision == "int":
            scale = self.emit("vec.weight_scale", [b], {"bits": target.weight_bits}, "bscale")
            weights = self.emit("vec.quantize_weights", [b, scale], {"bits": target.weight_bits}, "bq")
            x_scale, signed = input_quantization(*lhs_range, target.input_bits)
            rows = self.emit("vec.quantize", [rows], {"scale": x_scale, "bits": target.input_bits,
                                                      "signed": signed}, "xq")
        else:
            scale = self.module.add_constant(self.names.fresh(f"{self.name}.bscale"),
                                             np.ones(groups * n, np.float32))
            weights, x_scale, signed = b, 1.0, True
        plan = CrossbarMapping.lowered(target, (groups, k, n), signed)
        self.arrays = plan.arrays
        mapping = {"layer": self.name, **plan.attrs(), "first_array": first_array}
        acc = self.emit("xbar.write_mvm", [rows, weights], mapping, "acc")
        out = self.emit("vec.dequantize", [acc, scale], {"input_scale": x_scale}, "out")
        self.restore_shape(out, groups, n)
        return self.created

    def rows(self, lhs: Value, groups: int, k: int) -> Value:
        """The left operand as vectors [P, G·K]: each head's rows side by side, one group per head."""
        if groups == 1:
            return self.emit("nn.reshape", [lhs], {"shape": (lhs.type.size // k, k)}, "rows")
        m = lhs.type.shape[-2]
        heads = self.emit("nn.reshape", [lhs], {"shape": (groups, m, k)}, "heads")
        by_row = self.emit("nn.transpose", [heads], {"perm": (1, 0, 2)}, "rowsT")
        return self.emit("nn.reshape", [by_row], {"shape": (m, groups * k)}, "rows")

    def restore_shape(self, out: Value, groups: int, n: int) -> None:
        final = self.op.result.type.shape
        if groups > 1:
            m = out.type.shape[0]
            split = self.emit("nn.reshape", [out], {"shape": (m, groups, n)}, "split")
            out = self.emit("nn.transpose", [split], {"perm": (1, 0, 2)}, "heads_out")
        self.emit("nn.reshape", [out], {"shape": final})
