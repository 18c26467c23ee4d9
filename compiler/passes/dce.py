"""`dce`: remove ops none of whose results reach a module output, and constants nothing reads.

    %a = nn.relu(%x) : f32[4]
    %b = nn.tanh(%x) : f32[4]        →     %a = nn.relu(%x) : f32[4]
    output %a                              output %a
"""

from __future__ import annotations

from dataclasses import dataclass

from rcc.compiler.passes.base import Pass
from rcc.ir.core import Module


@dataclass
class DeadCodeElimination(Pass):
    name = "dce"

    def run(self, module: Module) -> bool:
        live = {id(v) for v in module.outputs}
        kept = []
        for op in reversed(module.ops):
            if any(id(r) in live for r in op.results):
                kept.append(op)
                live.update(id(v) for v in op.operands)
        changed = len(kept) != len(module.ops)
        module.ops = kept[::-1]
        constants_before = len(module.constants)
        module.drop_unused_constants()
        return changed or len(module.constants) != constants_before
