"""The machine: loads a program, programs its crossbars, executes instructions from the table, counts.

    machine = Machine(load_program("model.rccp"))
    result = machine.run({"input": x})          # result.outputs, result.totals, result.layers
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rcc.backends.device import Device
from rcc.backends.faults import FaultMap
from rcc.backends.program import Program, ProgramError
from rcc.backends.target import Target, TargetError
from rcc.ir.progress import tracked
from rcc.ir.types import DTYPES
from rcc.runtime.counters import Counts
from rcc.runtime.devices import program_crossbars
from rcc.runtime.instructions import INSTRUCTIONS
from rcc.runtime.schedule import total_counts

_TARGET_FIELDS = set(Target.__dataclass_fields__)


@dataclass
class MachineResult:
    outputs: dict[str, np.ndarray]
    totals: Counts                  # the program's, with the layers' parallel arrays overlapped
    per_instruction: list[Counts]   # each instruction on its own
    mvm_trace: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # dst → (x, acc)


def target_of(program: Program) -> Target:
    try:
        return Target(**{k: v for k, v in program.target.items() if k in _TARGET_FIELDS})
    except (TargetError, TypeError) as err:
        raise ProgramError(f"program {program.name!r}: invalid target ({err})") from None


def check_program(program: Program) -> None:
    """ProgramError when an instruction is unknown or reads a buffer nothing wrote."""
    defined = set(program.constants)
    for index, instruction in enumerate(program.instructions):
        if instruction.opcode not in INSTRUCTIONS:
            raise ProgramError(f"program {program.name!r}: instruction {index} has unknown opcode "
                               f"{instruction.opcode!r}")
        missing = [name for name in instruction.src if name not in defined]
        if missing:
            raise ProgramError(f"program {program.name!r}: instruction {index} ({instruction.opcode}) reads "
                               f"{missing[0]!r} before anything writes it")
        defined.update(instruction.dst)


class Machine:
    """A chip loaded with one program. `force_sliced` makes every integer layer simulate bit-slices even
    with a lossless ADC (tests use it to check the merged path against the full simulation). `device`
    (rcc.backends.device; None or ideal: exact cells) with `seed` for its noise, and `faults` (else the
    device's random fault map), make the crossbars real devices (rcc.runtime.devices)."""

    def __init__(self, program: Program, force_sliced: bool | None = None, device: Device | None = None,
                 seed: int = 0, faults: FaultMap | None = None) -> None:
        check_program(program)
        self.program = program
        self.target = target_of(program)
        self.force_sliced = force_sliced
        self.crossbars = program_crossbars(program, device, seed, faults)
        arrays = sum(group.mapping.arrays for group in self.crossbars.values())
        if self.target.max_arrays is not None and arrays > self.target.max_arrays:
            raise ProgramError(f"program {program.name!r} needs {arrays} arrays; the target has "
                               f"{self.target.max_arrays}")

    def run(self, inputs: dict[str, np.ndarray], trace: bool = False) -> MachineResult:
        self.inputs = self._checked_inputs(inputs)
        buffers: dict[str, np.ndarray] = dict(self.program.constants)
        per_instruction, mvm_trace = [], {}
        outputs: dict[str, np.ndarray] = {}
        for instruction in tracked(self.program.instructions, "machine run"):
            definition = INSTRUCTIONS[instruction.opcode]
            operands = [buffers[name] for name in instruction.src]
            results = definition.execute(self, instruction, operands)
            for name, array in zip(instruction.dst, results):
                buffers[name] = array
            if instruction.opcode == "store":
                outputs[instruction.attrs["output"]] = operands[0]
            if trace and instruction.opcode == "mvm":
                mvm_trace[instruction.dst[0]] = (operands[0], results[0])
            counts = definition.count(self.target, instruction, [list(a.shape) for a in operands])
            per_instruction.append(counts)
        return MachineResult(outputs, total_counts(self.program, per_instruction), per_instruction, mvm_trace)

    def _checked_inputs(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from rcc.ir.errors import RccError

        checked = {}
        for spec in self.program.inputs:
            if spec["name"] not in inputs:
                raise RccError(f"input {spec['name']!r} is missing (expected {spec['dtype']}{spec['shape']})")
            array = np.asarray(inputs[spec["name"]])
            if list(array.shape) != spec["shape"] or array.dtype != DTYPES[spec["dtype"]]:
                raise RccError(f"input {spec['name']!r} is {array.dtype}{list(array.shape)}, expected "
                               f"{spec['dtype']}{spec['shape']}")
            checked[spec["name"]] = array
        return checked
