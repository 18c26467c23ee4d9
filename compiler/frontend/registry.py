"""The table of lowering rules, ONNX op type → function that lowers the current node into IR ops."""

from __future__ import annotations

from collections.abc import Callable

from rcc.compiler.frontend.context import LowerContext

LoweringRule = Callable[[LowerContext], None]
RULES: dict[str, LoweringRule] = {}


def rule(*op_types: str) -> Callable[[LoweringRule], LoweringRule]:
    def register(fn: LoweringRule) -> LoweringRule:
        for op_type in op_types:
            assert op_type not in RULES, f"two lowering rules for {op_type}"
            RULES[op_type] = fn
        return fn

    return register
