"""Which layer each instruction belongs to, and how a layer's instructions overlap in time.

A layer is named by a graph-level op; everything lowered from it carries that name followed by a
dotted suffix (`conv1.cols`, `conv1.acc`, `up1.phase0_1.acc`), so an instruction's layer is the
shortest dotted prefix of what it writes that some instruction writes in full. Layers run one after
another. Within a layer, the `mvm`s hold disjoint arrays and read the same input (the output phases of
a pixel-wise deconvolution), so they run in parallel: the layer's crossbar time is the slowest of
them, while its vector-unit work adds up.
"""

from __future__ import annotations

from rcc.backends.program import Program
from rcc.runtime.counters import Counts


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


def layer_counts(program: Program, counts: list[Counts]) -> dict[str, Counts]:
    """Counts per layer in program order, with the parallel-mvm rule applied to cycles."""
    layers: dict[str, Counts] = {}
    slowest_mvm: dict[str, int] = {}
    for instruction, layer, count in zip(program.instructions, instruction_layers(program), counts):
        if layer is None:
            continue
        total = layers.setdefault(layer, Counts())
        if instruction.opcode == "mvm":
            cycles = count.cycles
            total += Counts(count.mvm_ops, count.adc_conversions, count.vec_ops, count.accumulations, 0)
            slowest_mvm[layer] = max(slowest_mvm.get(layer, 0), cycles)
        else:
            total += count
    for layer, cycles in slowest_mvm.items():
        layers[layer].cycles += cycles
    return layers


def total_counts(program: Program, counts: list[Counts]) -> Counts:
    total = Counts()
    for count in layer_counts(program, counts).values():
        total += count
    return total
