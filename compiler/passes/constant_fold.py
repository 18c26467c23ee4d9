"""`constant-fold`: evaluate every op whose operands are all constants, with the op table's semantics.

    const %a : f32[2] = [1.0, -2.0]
    %r = nn.relu(%a) : f32[2]            →      const %r : f32[2] = [1.0, 0.0]
"""

from __future__ import annotations

from dataclasses import dataclass

from rcc.compiler.pass_context import PassContext
from rcc.compiler.passes.base import Pass
from rcc.ir.core import Module, Value
from rcc.ir.optable import OPS


@dataclass
class ConstantFold(Pass):
    name = "constant-fold"
    max_elements: int = 1 << 26  # leave results larger than this (in elements) to run time

    def run(self, module: Module, ctx: PassContext) -> bool:
        kept = []
        changed = False
        for op in module.ops:
            if not op.operands or not all(v.is_constant for v in op.operands) \
                    or sum(r.type.size for r in op.results) > self.max_elements:
                kept.append(op)
                continue
            arrays = OPS[op.opname].run([v.data for v in op.operands], op.attrs)
            for result, array in zip(op.results, arrays):
                constant = Value(result.name, result.type, data=array.astype(result.type.np_dtype, copy=False))
                module.constants.append(constant)
                module.replace_uses(result, constant)
            changed = True
            ctx.report.removed.append({"op": op.opname, "value": op.results[0].name})
        module.ops = kept
        if changed:
            module.drop_unused_constants()
        return changed
