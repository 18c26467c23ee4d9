"""`dce`: remove ops none of whose results reach a module output, and constants nothing reads.

    %a = nn.relu(%x) : f32[4]
    %b = nn.tanh(%x) : f32[4]        →     %a = nn.relu(%x) : f32[4]
    output %a                              output %a
"""

from __future__ import annotations

from dataclasses import dataclass

from rcc.compiler.pass_context import PassContext
from rcc.compiler.passes.base import Pass
from rcc.ir.core import Module


@dataclass
class DeadCodeElimination(Pass):
    name = "dce"

    def run(self, module: Module, ctx: PassContext) -> bool:
        live = {id(v) for v in module.outputs}
        kept = []
        for op in reversed(module.ops):
            if any(id(r) in live for r in op.results):
                kept.append(op)
                live.update(id(v) for v in op.operands)
        kept_ids = {id(op) for op in kept}
        ctx.report.removed += [{"op": op.opname, "value": ", ".join(r.name for r in op.results)}
                               for op in module.ops if id(op) not in kept_ids]
        module.ops = kept[::-1]
        constants_before = list(module.constants)
        module.drop_unused_constants()
        kept_constants = {id(c) for c in module.constants}
        ctx.report.removed += [{"constant": c.name} for c in constants_before if id(c) not in kept_constants]
        return bool(ctx.report.removed)
