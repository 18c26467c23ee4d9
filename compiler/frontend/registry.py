"""The table of lowering rules, ONNX op type → function that lowers the current node into IR ops: one table
for the default domain, one for onnxruntime's com.microsoft ops rcc reproduces (`rule(..., domain=MS_DOMAIN)`)."""

from __future__ import annotations

from collections.abc import Callable

import onnx

from rcc.compiler.frontend.context import LowerContext

LoweringRule = Callable[[LowerContext], None]
MS_DOMAIN = "com.microsoft"
RULES: dict[str, LoweringRule] = {}
MS_RULES: dict[str, LoweringRule] = {}


def rule(*op_types: str, domain: str = "") -> Callable[[LoweringRule], LoweringRule]:
    table = MS_RULES if domain == MS_DOMAIN else RULES

    def register(fn: LoweringRule) -> LoweringRule:
        for op_type in op_types:
            assert op_type not in table, f"two lowering rules for {domain or 'ai.onnx'}.{op_type}"
            table[op_type] = fn
        return fn

    return register


def rule_for(node: onnx.NodeProto) -> LoweringRule | None:
    """The rule that lowers `node`, by its domain and op type; None when rcc has none."""
    if node.domain in ("", "ai.onnx"):
        return RULES.get(node.op_type)
    return MS_RULES.get(node.op_type) if node.domain == MS_DOMAIN else None
