"""`remove-identity`: drop `nn.identity` ops, reading their operand directly.

    %a = nn.relu(%x) : f32[4]                 %out = nn.relu(%x) : f32[4]
    %out = nn.identity(%a) : f32[4]     →     output %out
    output %out

An identity whose result is a module output keeps that output's name: the operand takes the name when
it is an op result that is not itself an output; otherwise the identity stays.
"""

from __future__ import annotations

from dataclasses import dataclass

from rcc.compiler.pass_context import PassContext
from rcc.compiler.passes.base import Pass
from rcc.ir.core import Module


@dataclass
class RemoveIdentity(Pass):
    name = "remove-identity"

    def run(self, module: Module, ctx: PassContext) -> bool:
        changed = False
        output_ids = {id(v) for v in module.outputs}
        for op in list(module.ops):
            if op.opname != "nn.identity":
                continue
            source, result = op.operands[0], op.result
            if id(result) in output_ids:
                if source.producer is None or id(source) in output_ids:
                    continue
                source.name = result.name  # the op goes away, so its result's name is free
                output_ids.add(id(source))
            module.ops.remove(op)
            module.replace_uses(result, source)
            ctx.report.removed.append({"op": op.opname, "value": result.name})
            changed = True
        return changed
