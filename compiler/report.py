"""Per-layer figures of a compiled program: crossbars, utilisation, MACs and the machine's counts.

A layer is an `mvm` together with the vector-unit instructions lowered from the same graph op (named
`<layer>.<suffix>`); every other vector-unit instruction is a layer of its own. Counts are the static
ones of the instruction table, which the machine's counters equal when it runs the program.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from backends.mapping import nonzero_cells
from backends.program import Program
from backends.target import Target
from runtime.counters import Counts
from runtime.instructions import INSTRUCTIONS


def operand_shapes(program: Program) -> list[list[list[int]]]:
    """For each instruction, the shapes of what it reads, derived from the program alone."""
    shapes = {name: list(array.shape) for name, array in program.constants.items()}
    result = []
    for instruction in program.instructions:
        result.append([shapes[name] for name in instruction.src])
        shapes.update(zip(instruction.dst, instruction.shapes))
    return result


def static_counts(program: Program, target: Target) -> list[Counts]:
    return [INSTRUCTIONS[i.opcode].count(target, i, s) for i, s in zip(program.instructions, operand_shapes(program))]


def _owner(name: str, layers: list[str]) -> str:
    matches = [layer for layer in layers if name == layer or name.startswith(layer + ".")]
    return max(matches, key=len) if matches else name


def layer_rows(program: Program, target: Target, counts: list[Counts] | None = None) -> list[dict[str, Any]]:
    """One row per layer, in program order."""
    counts = static_counts(program, target) if counts is None else counts
    mvm_layers = [i.attrs["layer"] for i in program.instructions if i.opcode == "mvm"]
    rows: dict[str, dict[str, Any]] = {}
    for instruction, count in zip(program.instructions, counts):
        if instruction.opcode in ("load", "store"):
            continue
        name = instruction.attrs["layer"] if instruction.opcode == "mvm" else _owner(instruction.dst[0], mvm_layers)
        row = rows.setdefault(name, {"name": name, "op": "", "crossbars": 0, "utilization": None, "macs": 0,
                                     **Counts().to_json()})
        for key, value in count.to_json().items():
            row[key] += value
        if instruction.opcode == "mvm":
            row.update(_mvm_figures(program, instruction))
        elif not row["op"]:
            row["op"] = instruction.attrs.get("fn", instruction.opcode)
    return list(rows.values())


def _mvm_figures(program: Program, instruction) -> dict[str, Any]:
    a = instruction.attrs
    weights = program.constants[instruction.src[1]]
    groups, k, m = weights.shape
    vectors = instruction.shapes[0][0]
    cells = a["arrays"] * a["xbar_rows"] * a["xbar_cols"]
    if weights.dtype.kind == "i":
        used = nonzero_cells(weights, a["weight_bits"], a["cell_bits"], a["weight_slices"], a["encoding"])
    else:  # float mode: a non-zero weight occupies its slices on one array of the pair
        used = int(np.count_nonzero(weights)) * a["weight_slices"]
    return {"op": "xbar.mvm", "crossbars": a["arrays"], "utilization": used / cells if cells else 0.0,
            "macs": vectors * groups * k * m}


def totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ["crossbars", "macs", *Counts().to_json()]
    total = {key: sum(row[key] for row in rows) for key in keys}
    mapped = [row for row in rows if row["crossbars"]]
    cells_used = sum(row["utilization"] * row["crossbars"] for row in mapped)
    total["utilization"] = cells_used / total["crossbars"] if total["crossbars"] else None
    return total
