"""Creating ops with their result types inferred from the op table (used by the frontend and passes)."""

from __future__ import annotations

from typing import Any

from rcc.ir.core import Module, Op, Value
from rcc.ir.optable import OPS, normalize_attrs


def make_op(opname: str, operands: list[Value], attrs: dict[str, Any], result_names: list[str]) -> Op:
    """A new op with canonical attributes and inferred result types; ValueError when they do not fit."""
    opdef = OPS[opname]
    if not opdef.operand_count_ok(len(operands)):
        raise ValueError(f"{opname} takes operands ({', '.join(opdef.operands)}), got {len(operands)}")
    operand_types = [v.type for v in operands]
    canonical = normalize_attrs(opdef, attrs, operand_types)
    types = opdef.infer(operand_types, canonical)
    return Op(opname, operands, types, result_names, canonical)


class Builder:
    """Appends ops to a module, naming results uniquely: `b.op("nn.relu", [x], name="relu1")`."""

    def __init__(self, module: Module) -> None:
        self.module = module
        self.names = module.name_allocator()
        self.taken = self.names.taken  # the allocator's set: renaming a value updates it directly

    def fresh(self, base: str) -> str:
        return self.names.fresh(base)

    def op(self, opname: str, operands: list[Value], attrs: dict[str, Any] | None = None, *,
           name: str | None = None) -> Value:
        """Append one single-result op; return its result."""
        op = make_op(opname, operands, attrs or {}, [self.fresh(name or opname.split(".")[-1])])
        self.module.ops.append(op)
        return op.result

    def constant(self, name: str, data) -> Value:
        value = self.module.add_constant(self.fresh(name), data)
        return value
