"""Figures of graph-level ops (multiply-accumulates) and the plain-text tables the CLI prints."""

from __future__ import annotations

from typing import Any

from rcc.ir.core import Op


def op_macs(op: Op) -> int:
    """Multiply-accumulates a dense implementation of `op` performs (0 for ops without weights)."""
    out = op.results[0].type
    if op.opname == "nn.conv2d":
        weight = op.operands[1].type.shape
        return out.size * weight[1] * weight[2] * weight[3]
    if op.opname == "nn.conv_transpose2d":
        x, weight = op.operands[0].type.shape, op.operands[1].type.shape
        return x[0] * x[2] * x[3] * weight[0] * weight[1] * weight[2] * weight[3]
    if op.opname == "nn.matmul":
        lhs = op.operands[0].type.shape
        return out.size * (lhs[-1] if lhs else 1)
    return 0


def format_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain-text table, numbers right-aligned."""
    cells = [[str(h) for h in headers]] + [[f"{c:,}" if isinstance(c, int) else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [all(isinstance(row[i], (int, float)) for row in rows) for i in range(len(headers))]
    lines = []
    for index, row in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if numeric[i] else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)
