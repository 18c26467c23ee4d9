"""The IR verifier: every invariant a well-formed module keeps, with errors that name the offending op."""

from __future__ import annotations

from rcc.ir.core import Module, Op
from rcc.ir.errors import VerifyError
from rcc.ir.optable import OPS, normalize_attrs


def infer_result_types(op: Op) -> list:
    """Result types the op table derives for `op`; ValueError/KeyError describe what is wrong."""
    opdef = OPS.get(op.opname)
    if opdef is None:
        raise KeyError(f"unknown op {op.opname}")
    if not opdef.operand_count_ok(len(op.operands)):
        raise ValueError(f"takes operands ({', '.join(opdef.operands)}), got {len(op.operands)}")
    attrs = normalize_attrs(opdef, op.attrs)
    if attrs != op.attrs:
        raise ValueError("attributes are not in canonical form (defaults filled, kinds coerced)")
    return opdef.infer([v.type for v in op.operands], attrs)


def describe(op: Op) -> str:
    results = ", ".join("%" + r.name for r in op.results)
    return f"{results} = {op.opname}"


def verify(module: Module) -> None:
    """Raise VerifyError naming the first op (or value) that breaks an invariant."""
    defined: set[int] = set()
    names: set[str] = set()

    def define_value(value, what: str) -> None:
        if value.name in names:
            raise VerifyError(f"@{module.name}: value %{value.name} ({what}) is defined twice")
        names.add(value.name)
        defined.add(id(value))

    for value in module.inputs:
        define_value(value, "input")
    for value in module.constants:
        if value.data is None or value.data.shape != value.type.shape or value.data.dtype != value.type.np_dtype:
            raise VerifyError(f"@{module.name}: constant %{value.name} data does not match its type {value.type}")
        define_value(value, "constant")
    for op in module.ops:
        for operand in op.operands:
            if id(operand) not in defined:
                raise VerifyError(f"@{module.name}: `{describe(op)}` reads %{operand.name} before it is defined")
        try:
            expected = infer_result_types(op)
        except (ValueError, KeyError) as err:
            raise VerifyError(f"@{module.name}: `{describe(op)}`: {str(err).strip(chr(39))}") from None
        actual = [r.type for r in op.results]
        if expected != actual:
            raise VerifyError(f"@{module.name}: `{describe(op)}` has result types "
                              f"{', '.join(map(str, actual))}, the op table gives {', '.join(map(str, expected))}")
        for result in op.results:
            if result.producer is not op:
                raise VerifyError(f"@{module.name}: `{describe(op)}` result %{result.name} has another producer")
            define_value(result, op.opname)
    if not module.outputs:
        raise VerifyError(f"@{module.name}: module has no outputs")
    for value in module.outputs:
        if id(value) not in defined:
            raise VerifyError(f"@{module.name}: output %{value.name} is not defined in the module")
