"""Which layer each instruction belongs to, and how a layer's instructions overlap in time.

A layer is named by a graph-level op; everything lowered from it carries that name followed by a
dotted suffix (`conv1.cols`, `conv1.acc`, `up1.phase0_1.acc`), so an instruction's layer is the
shortest dotted prefix of what it writes that some instruction writes in full. Layers run one after
another. Within a layer, `mvm`s that do not depend on each other (the output phases of a pixel-wise
deconvolution, on disjoint arrays) run in parallel and dependent ones (a recurrent layer's steps) one after
another: the layer's crossbar time is its longest chain of them (the `PARALLEL` counts, `layer_counts`), while
its vector-unit work adds up. A `load`'s off-chip bytes belong to
the first layer that reads the input, a `store`'s to the layer that wrote the output.

An `mvm` may hold `copies` of its weights (the `replicate` pass): copy c sits on arrays
`copy_arrays[c]` … `+ arrays` and serves input vectors `copy_rows[c]` … `copy_rows[c + 1]`. The machine
runs each copy on its own vectors (the results are the same rows, so outputs are unchanged bit for bit);
the copies run in parallel, so the instruction's `PARALLEL` counts are its busiest copy's. Arrays are
reprogrammed between `phase`s, so two mvms of one phase never share an array (`check_schedule`), unless they
read the same weights (and packing maps): then they run on the same arrays in turn (time-multiplexed, as a
recurrent layer's steps read R), programmed once; the first such mvm of a phase owns them (`array_owners`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rcc.backends.program import Instruction, Program, ProgramError
from rcc.backends.program_schema import is_int
from rcc.backends.target import Target
from rcc.runtime.counters import PARALLEL, Counts
from rcc.runtime.instructions import INSTRUCTIONS, Step


def operand_shapes(program: Program) -> list[list[list[int]]]:
    """For each instruction, the shapes of what it reads, derived from the program alone."""
    shapes = {name: list(array.shape) for name, array in program.constants.items()}
    result = []
    for instruction in program.instructions:
        result.append([shapes[name] for name in instruction.src])
        shapes.update(zip(instruction.dst, instruction.shapes))
    return result


def copy_bounds(attrs: dict, vectors: int) -> list[int]:
    """The input-vector bounds of an mvm's copies: copies + 1 increasing numbers from 0 to `vectors`."""
    return list(attrs.get("copy_rows") or ()) or [0, vectors]


def copy_first_arrays(attrs: dict) -> list[int]:
    """The first array of each copy of an mvm's weights."""
    return list(attrs.get("copy_arrays") or ()) or [attrs.get("first_array", 0)]


def instruction_counts(target: Target, instruction: Instruction, shapes: list[list[int]]) -> Counts:
    """One instruction's counts; a replicated mvm's `PARALLEL` counts are those of its busiest copy."""
    count = INSTRUCTIONS[instruction.opcode].count(target, instruction, shapes)
    if instruction.opcode != "mvm" or instruction.attrs.get("copies", 1) == 1:
        return count
    bounds = copy_bounds(instruction.attrs, shapes[0][0])
    copies = [INSTRUCTIONS["mvm"].count(target, instruction, [[stop - start, *shapes[0][1:]], *shapes[1:]])
              for start, stop in zip(bounds, bounds[1:])]
    return dataclasses.replace(count, **{key: max(getattr(c, key) for c in copies) for key in PARALLEL})


def prepare(machine, instruction: Instruction, split_copies: bool = True) -> Step:
    """One instruction prepared to run (the table's `prepare`); in integer mode each copy of a replicated mvm
    computes its own input vectors (exact arithmetic, and the ADC saturation of each copy's vectors, give
    the same rows). Float mode models ideal analog arithmetic with float32 BLAS, whose rounding depends on
    how many vectors one call holds (an artefact of the simulator, not of the copies), so there the copies'
    vectors, which are all the layer's vectors in order, are evaluated in one call and results stay
    independent of the schedule. Without `split_copies` (a stacked batch's vectors, each copy's rows
    N times over) an mvm runs all its vectors in one call, which in integer mode gives the same rows."""
    step = INSTRUCTIONS[instruction.opcode].prepare(machine, instruction)
    if instruction.opcode != "mvm" or instruction.attrs.get("copies", 1) == 1 or machine.program.precision != "int" \
            or not split_copies:
        return step

    def run_copies(operands: list[np.ndarray]) -> list[np.ndarray]:
        bounds = copy_bounds(instruction.attrs, operands[0].shape[0])
        parts = [step([operands[0][start:stop], *operands[1:]])[0] for start, stop in zip(bounds, bounds[1:])]
        return [np.concatenate(parts, axis=0)]
    return run_copies


def execute(machine, instruction: Instruction, operands: list[np.ndarray]) -> list[np.ndarray]:
    """Run one instruction once (`prepare`)."""
    return prepare(machine, instruction)(operands)


# what arrays that serve several mvms fix for all of them: their mapping, converters and widths
SHARED_MAPPING = ("xbar_rows", "xbar_cols", "weight_bits", "input_bits", "input_signed", "cell_bits", "dac_bits",
                  "adc_bits", "encoding", "packing", "spare_columns")


def mvm_arrays(instruction: Instruction) -> int:
    """Arrays an mvm occupies, all its copies included."""
    return instruction.attrs["arrays"] * instruction.attrs.get("copies", 1)


def array_owners(program: Program) -> list[int | None]:
    """For each instruction, the index of the earlier `mvm` of its phase that reads the same weights and maps
    (whose arrays it runs on), else None."""
    first: dict[tuple, int] = {}
    owners: list[int | None] = []
    for index, instruction in enumerate(program.instructions):
        if instruction.opcode != "mvm":
            owners.append(None)
            continue
        owner = first.setdefault((instruction.attrs.get("phase", 0), *instruction.src[1:]), index)
        owners.append(owner if owner != index else None)
    return owners


def owned_arrays(program: Program, opcodes: tuple[str, ...] = ("mvm", "write_mvm")) -> list[int]:
    """Arrays each instruction adds, copies included: an mvm's or write_mvm's own, none for one that runs on
    an earlier mvm's arrays (`array_owners`) or is not of `opcodes`."""
    return [mvm_arrays(instruction) if instruction.opcode in opcodes and owner is None else 0
            for instruction, owner in zip(program.instructions, array_owners(program))]


def phase_arrays(program: Program, opcodes: tuple[str, ...] = ("mvm", "write_mvm")) -> dict[int, int]:
    """The arrays each reprogramming phase holds (`owned_arrays`)."""
    phases: dict[int, int] = {}
    for instruction, arrays in zip(program.instructions, owned_arrays(program, opcodes)):
        if instruction.opcode in opcodes:
            phase = instruction.attrs.get("phase", 0)
            phases[phase] = phases.get(phase, 0) + arrays
    return phases


def check_schedule(program: Program, target: Target) -> None:
    """ProgramError (one line) when a replicated mvm's copies disagree with its rows or arrays, a copy
    serves no rows, an array holds two things in one phase, or a phase needs more arrays than the target has."""
    shapes = operand_shapes(program)
    owner: dict[tuple[int, int], str] = {}
    for instruction, operand, shared in zip(program.instructions, shapes, array_owners(program)):
        if instruction.opcode != "mvm":
            continue
        attrs, name = instruction.attrs, instruction.dst[0]
        holder = name if shared is None else program.instructions[shared].dst[0]   # whose arrays it runs on
        where = f"program {program.name!r}: mvm {name!r}"
        _check_kinds(attrs, where)
        copies, phase = attrs.get("copies", 1), attrs.get("phase", 0)
        bounds, firsts = copy_bounds(attrs, operand[0][0]), copy_first_arrays(attrs)
        if not isinstance(copies, int) or copies < 1 or len(bounds) != copies + 1 or len(firsts) != copies:
            raise ProgramError(f"{where} states {copies} copies but {len(bounds) - 1} row ranges and "
                               f"{len(firsts)} array placements")
        if bounds[0] != 0 or bounds[-1] != operand[0][0]:
            raise ProgramError(f"{where}: its copies serve rows {bounds[0]}..{bounds[-1]}, not 0..{operand[0][0]}")
        empty = next((c for c in range(copies) if bounds[c + 1] <= bounds[c]), None)
        if empty is not None:
            raise ProgramError(f"{where}: copy {empty} serves no rows ({bounds[empty]}..{bounds[empty + 1]})")
        if attrs.get("copy_arrays") and attrs.get("first_array", firsts[0]) != firsts[0]:
            raise ProgramError(f"{where}: first_array {attrs['first_array']} is not its first copy's {firsts[0]}")
        if shared is not None:
            held = program.instructions[shared].attrs
            if (copy_first_arrays(held), held["arrays"]) != (firsts, attrs["arrays"]):
                raise ProgramError(f"{where} reads the weights of mvm {holder!r} but not on its arrays "
                                   f"({attrs['arrays']} from {firsts}, not {held['arrays']} from "
                                   f"{copy_first_arrays(held)})")
            differing = next((key for key in SHARED_MAPPING if attrs.get(key) != held.get(key)), None)
            if differing is not None:
                raise ProgramError(f"{where} runs on the arrays of mvm {holder!r} but states {differing} = "
                                   f"{attrs.get(differing)!r}, not {held.get(differing)!r}")
        for copy, first in enumerate(firsts):
            for array in range(first, first + attrs["arrays"]):
                other = owner.setdefault((phase, array), f"{holder} copy {copy}")
                if other != f"{holder} copy {copy}":
                    raise ProgramError(f"{where}: copy {copy} uses array {array} of phase {phase}, which "
                                       f"{other} already holds")
        if target.max_arrays is not None and max(firsts) + attrs["arrays"] > target.max_arrays:
            raise ProgramError(f"{where}: uses arrays up to {max(firsts) + attrs['arrays']}; the target has "
                               f"{target.max_arrays}")


def _check_kinds(attrs: dict, where: str) -> None:
    """ProgramError unless the schedule attributes an mvm states are integers, lists of integers, a
    known pipeline and a lead in [0, 1]."""
    wrong = next((key for key in ("copies", "phase", "first_array", "arrays")
                  if key in attrs and not is_int(attrs[key])), None)
    wrong = wrong or next((key for key in ("copy_arrays", "copy_rows") if key in attrs and not (
        isinstance(attrs[key], (list, tuple)) and all(is_int(v) and v >= 0 for v in attrs[key]))), None)
    if wrong is None and attrs.get("pipeline", "none") not in ("none", "layer", "row"):
        wrong = "pipeline"
    lead = attrs.get("lead", 1.0)
    if wrong is None and not (isinstance(lead, (int, float)) and not isinstance(lead, bool) and 0 <= lead <= 1):
        wrong = "lead"
    if wrong is not None:
        raise ProgramError(f"{where}: schedule attribute {wrong} = {attrs[wrong]!r} is malformed")


def static_counts(program: Program, target: Target) -> list[Counts]:
    """Every instruction's counts from the program and its shapes alone (the machine counts the same)."""
    return [instruction_counts(target, i, s) for i, s in zip(program.instructions, operand_shapes(program))]


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
    """Counts per layer in program order. The `PARALLEL` counts of a layer's `mvm`s are its longest chain of
    them: an mvm starts when the mvms of its layer that it reads from (through any instructions) have finished,
    and when the last reader of its arrays has (time-multiplexed arrays); so independent mvms (a deconvolution's
    phases) overlap and dependent ones (a recurrent layer's steps) add up."""
    layers: dict[str, Counts] = {name: Counts() for name in instruction_layers(program) if name is not None}
    chains: dict[str, tuple[str, dict[str, int]]] = {}   # buffer → (its layer, the mvm chain that led to it)
    longest: dict[str, dict[str, int]] = {}
    for instruction, layer, count in zip(program.instructions, _io_layers(program, instruction_layers(program)),
                                         counts):
        if layer is None:
            continue
        mvm = instruction.opcode == "mvm"
        layers[layer] += dataclasses.replace(count, **dict.fromkeys(PARALLEL, 0)) if mvm else count
        arrays = [("arrays", *instruction.src[1:])] if mvm else []   # who last used these arrays
        before = [chains[name][1] for name in [*instruction.src, *arrays] if chains.get(name, ("",))[0] == layer]
        chain = {key: max((c[key] for c in before), default=0) + (getattr(count, key) if mvm else 0)
                 for key in PARALLEL}
        for name in [*instruction.dst, *arrays]:
            chains[name] = (layer, chain)
        if mvm:
            slowest = longest.setdefault(layer, dict.fromkeys(PARALLEL, 0))
            for key in PARALLEL:
                slowest[key] = max(slowest[key], chain[key])
    for layer, slowest in longest.items():
        layers[layer] += Counts(**slowest)
    return layers


def total_counts(program: Program, counts: list[Counts]) -> Counts:
    total = Counts()
    for count in layer_counts(program, counts).values():
        total += count
    return total
