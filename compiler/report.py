"""Per-layer figures of a compiled program: crossbars, utilisation, MACs and the machine's counts, and
the whole report `rcc --report` writes (`build_report`).

A layer is what one graph-level op became (runtime/schedule.py); `unit` says where it ran: `crossbar`
(weights programmed when the program loads), `crossbar-write` (weights written at run time: attention
on crossbars) or `vector` (the digital vector unit). Counts are the static ones of the
instruction table, which the machine's counters equal when it runs the program; `zero_macs` are the
multiply-accumulates spent on zeros a deconvolution lowering inserted between input pixels. A layer that runs on
another's arrays (time-multiplexed: a recurrent layer's steps all read R) has no crossbars of its own and names
that layer in `shares_arrays_of`.
"""

from __future__ import annotations

from typing import Any

from rcc.backends.chip import Chip
from rcc.backends.mapping import CrossbarMapping, array_occupancy, nonzero_cells, occupancy_histogram
from rcc.backends.program import Program
from rcc.backends.target import Target
from rcc.compiler.driver import Compiled
from rcc.compiler.verify import VerifyResult
from rcc.runtime.cost import estimate_cost
from rcc.runtime.counters import Counts
from rcc.runtime.schedule import array_owners, instruction_layers, layer_counts, operand_shapes, static_counts


def layer_rows(program: Program, target: Target, counts: list[Counts] | None = None) -> list[dict[str, Any]]:
    """One row per layer, in program order (see runtime/schedule.py for what a layer is)."""
    counts = static_counts(program, target) if counts is None else counts
    rows: dict[str, dict[str, Any]] = {}
    cells: dict[str, list[int]] = {}
    program_shapes = operand_shapes(program)
    layers, owners = instruction_layers(program), array_owners(program)
    for index, (instruction, layer) in enumerate(zip(program.instructions, layers)):
        if layer is None:
            continue
        row = rows.setdefault(layer, {"name": layer, "op": "", "unit": "vector", "crossbars": 0,
                                      "crossbars_dense": 0, "utilization": None, "macs": 0, "zero_macs": 0,
                                      "vector_memory_bytes": 0})
        if instruction.opcode == "write_mvm":
            row["op"], row["unit"] = "xbar.write_mvm", "crossbar-write"
            mapping = CrossbarMapping.of(instruction.attrs, program_shapes[index][1])
            row["crossbars"] += mapping.arrays
            row["crossbars_dense"] += mapping.arrays
            used, total = cells.setdefault(layer, [0, 0])  # cells the operand is written into, zeros included
            cells[layer] = [used + mapping.weights * mapping.weight_slices * mapping.signs, total + mapping.cells]
        elif instruction.opcode == "mvm":
            figures = _mvm_figures(program, instruction)
            row["op"], row["unit"] = "xbar.mvm", "crossbar"
            row["input_bits"] = max(row.get("input_bits", 0), instruction.attrs["input_bits"])  # the widest mvm's
            row["weight_bits"] = max(row.get("weight_bits", 0), instruction.attrs["weight_bits"])
            if owners[index] is not None:   # time-multiplexed on an earlier mvm's arrays: none of its own
                if layers[owners[index]] != layer:
                    row["shares_arrays_of"] = layers[owners[index]]
                row["macs"] += figures["macs"]
                row["zero_macs"] += figures["zero_macs"]
                continue
            for key in ("crossbars", "crossbars_dense", "macs", "zero_macs"):
                row[key] += figures[key]
            if figures["utilization_histogram"] is not None:
                old = row.get("utilization_histogram") or [0] * len(figures["utilization_histogram"])
                row["utilization_histogram"] = [a + b for a, b in zip(old, figures["utilization_histogram"])]
            used, total = cells.setdefault(layer, [0, 0])
            cells[layer] = [used + figures["used_cells"], total + figures["cells"]]
        else:
            row["op"] = row["op"] or instruction.attrs.get("fn", instruction.opcode)
            # constants the vector unit reads (embedding tables, ...) are held in its memory
            row["vector_memory_bytes"] += sum(int(program.constants[name].nbytes) for name in instruction.src
                                              if name in program.constants)
    for layer, count in layer_counts(program, counts).items():
        rows[layer].update(count.to_json())
        if layer in cells:
            used, total = cells[layer]
            rows[layer]["utilization"] = used / total if total else 0.0
    return list(rows.values())


def _mvm_figures(program: Program, instruction) -> dict[str, Any]:
    a = instruction.attrs
    weights = program.constants[instruction.src[1]]
    mapping = CrossbarMapping.of(a, weights.shape)
    vectors = instruction.shapes[0][0]
    used = nonzero_cells(weights, a)
    maps = [program.constants[name] for name in instruction.src[2:]]
    histogram = occupancy_histogram(array_occupancy(weights, a, *maps)) if weights.dtype.kind == "i" else None
    return {"crossbars": mapping.arrays, "crossbars_dense": mapping.dense_arrays,
            "utilization_histogram": histogram, "used_cells": used, "cells": mapping.cells,
            "macs": vectors * mapping.weights, "zero_macs": a.get("zero_macs", 0)}


def attach_cost(total: dict[str, Any], rows: list[dict[str, Any]], cost: dict[str, Any]) -> None:
    """Put a cost's `to_json()` figures into the report: `cost` in the totals and in every layer row."""
    total["cost"] = cost["totals"]
    for row in rows:
        row["cost"] = cost["layers"][row["name"]]


def totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ["crossbars", "crossbars_dense", "macs", "zero_macs", "vector_memory_bytes", *Counts().to_json()]
    total = {key: sum(row[key] for row in rows) for key in keys}
    mapped = [row for row in rows if row["crossbars"]]
    cells_used = sum(row["utilization"] * row["crossbars"] for row in mapped)
    total["utilization"] = cells_used / total["crossbars"] if total["crossbars"] else None
    return total


def build_report(compiled: Compiled, verify: VerifyResult | None = None, settings: dict[str, Any] | None = None,
                 chip: Chip | None = None) -> dict[str, Any]:
    """The machine-readable report of a compilation: `settings` (how it was made: model path, options,
    as given), the target, precision, totals and per-layer figures, with `chip` the cost of one inference
    (`cost` in the totals and every layer), what pruning removed, and with `verify` the metrics per output.
    Plain JSON values except non-finite floats (see rcc.ir.files)."""
    rows = layer_rows(compiled.program, compiled.target)
    report: dict[str, Any] = {**(settings or {}), "target": compiled.target.to_dict(),
                              "precision": compiled.precision, "totals": totals(rows), "layers": rows}
    if chip is not None:
        attach_cost(report["totals"], rows, estimate_cost(compiled.program, chip).to_json())
    if compiled.pruning is not None:
        report["pruning"] = compiled.pruning
    if compiled.mixed_precision is not None:
        report["mixed_precision"] = compiled.mixed_precision
    if compiled.program.host is not None:  # the model after a data-dependent node: onnxruntime on the host
        report["host"] = {**compiled.program.host, "runs_on": "onnxruntime"}
    if verify is not None:
        report["verify"] = verify.to_json()
    return report
