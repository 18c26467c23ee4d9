"""Which layer each instruction belongs to, and how a layer's instructions overlap in time.

A layer is named by a graph-level op; everything lowered from it carries that name followed by a
dotted suffix (`conv1.cols`, `conv1.acc`, `up1.phase0_1.acc`), so an instruction's layer is the
shortest dotted prefix of what it writes that some instruction writes in full. Layers run one after
another. Within a layer, the `mvm`s hold disjoint arrays and read the same input (the output phases of
a pixel-wise deconvolution), so they run in parallel: the layer's crossbar time is the slowest of
them (the `PARALLEL` counts), while its vector-unit work adds up. A `load`'s off-chip bytes belong to
the first layer that reads the input, a `store`'s to the layer that wrote the output.
"""

from __future__ import annotations

import dataclasses

from rcc.backends.program import Program
from rcc.backends.target import Target
from rcc.runtime.counters import PARALLEL, Counts
from rcc.runtime.instructions import INSTRUCTIONS


def operand_shapes(program: Program) -> list[list[list[int]]]:
    """For each instruction, the shapes of what it reads, derived from the program alone."""
    shapes = {name: list(array.shape) for name, array in program.constants.items()}
    result = []
    for instruction in program.instructions:
        result.append([shapes[name] for name in instruction.src])
        shapes.update(zip(instruction.dst, instruction.shapes))
    return result


def static_counts(program: Program, target: Target) -> list[Counts]:
    """Every instruction's counts from the program and its shapes alone (the machine counts the same)."""
    return [INSTRUCTIONS[i.opcode].count(target, i, s) for i, s in zip(program.instructions, operand_shapes(program))]


def instruction_layers(program: Program) -> list[str | None]:
    """The layer of every instruction (None for load and store)."""
    written = {name for instruction in program.instructions for name in instruction.dst}
    layers: list[str | None] = []
    for instruction in program.instructions:
        if instruction.opcode in ("load", "store"):
            layers.append(None)
            continue
        parts = instruction.dst[0].split(".")
        layers.append(next((".".join(parts[:i]) for i in range(1, len(parts) + 1)
                            if ".".join(parts[:i]) in written), instruction.dst[0]))
    return layers


def _io_layers(program: Program, layers: list[str | None]) -> list[str | None]:
    """`layers` with each load given its input's first reader's layer and each store its writer's."""
    writer = {name: layer for instruction, layer in zip(program.instructions, layers) for name in instruction.dst}
    reader: dict[str, str] = {}
    for instruction, layer in zip(program.instructions, layers):
        for name in instruction.src:
            if layer is not None:
                reader.setdefault(name, layer)
    result = list(layers)
    for index, instruction in enumerate(program.instructions):
        if instruction.opcode == "load":
            result[index] = reader.get(instruction.dst[0])
        elif instruction.opcode == "store":
            result[index] = writer.get(instruction.src[0])
    return result


def layer_counts(program: Program, counts: list[Counts]) -> dict[str, Counts]:
    """Counts per layer in program order, with the parallel-mvm rule applied to the `PARALLEL` counts."""
    layers: dict[str, Counts] = {name: Counts() for name in instruction_layers(program) if name is not None}
    slowest_mvm: dict[str, dict[str, int]] = {}
    for instruction, layer, count in zip(program.instructions, _io_layers(program, instruction_layers(program)),
                                         counts):
        if layer is None:
            continue
        if instruction.opcode == "mvm":
            layers[layer] += dataclasses.replace(count, **dict.fromkeys(PARALLEL, 0))
            slowest = slowest_mvm.setdefault(layer, dict.fromkeys(PARALLEL, 0))
            for key in PARALLEL:
                slowest[key] = max(slowest[key], getattr(count, key))
        else:
            layers[layer] += count
    for layer, slowest in slowest_mvm.items():
        layers[layer] += Counts(**slowest)
    return layers


def total_counts(program: Program, counts: list[Counts]) -> Counts:
    total = Counts()
    for count in layer_counts(program, counts).values():
        total += count
    return total
