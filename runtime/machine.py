"""The machine: loads a program, programs its crossbars, executes instructions from the table, counts.

    machine = Machine(load_program("model.rccp"))
    result = machine.run({"input": x})          # result.outputs, result.totals, result.layers
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np

from rcc.backends.device import Device
from rcc.backends.faults import FaultMap
from rcc.backends.program import Program, ProgramError
from rcc.backends.program_schema import OPCODE_OPS, check_program_semantics
from rcc.backends.target import Target, TargetError
from rcc.ir.inputs import check_inputs
from rcc.ir.types import TensorType
from rcc.runtime.counters import Counts
from rcc.runtime.devices import program_crossbars
from rcc.runtime.instructions import INSTRUCTIONS, input_ranges
from rcc.runtime.plan import Plan, PlannedStep
from rcc.runtime.schedule import check_schedule, instruction_counts, operand_shapes, phase_arrays, total_counts
from rcc.runtime.threads import blas_limited, blas_threads_for

_TARGET_FIELDS = set(Target.__dataclass_fields__)


@dataclass
class MachineResult:
    outputs: dict[str, np.ndarray]
    totals: Counts                  # the program's, with the layers' parallel arrays overlapped
    counted: list[Counts] = field(repr=False)   # one inference's counts per instruction (the machine's: read only)
    mvm_trace: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # dst → (x, acc)
    batch: int = 1                  # inferences run (a batch's samples); the counts are all of theirs
    _copies: list[Counts] | None = field(default=None, init=False, repr=False)

    @property
    def per_instruction(self) -> list[Counts]:
        """Each instruction's counts on its own (all the batch's inferences): copies, made when first asked for,
        that the caller may change."""
        if self._copies is None:
            self._copies = [count.scaled(self.batch) for count in self.counted]
        return self._copies


def target_of(program: Program) -> Target:
    try:
        return Target(**{k: v for k, v in program.target.items() if k in _TARGET_FIELDS})
    except (TargetError, TypeError) as err:
        raise ProgramError(f"program {program.name!r}: invalid target ({err})") from None


assert set(OPCODE_OPS) == set(INSTRUCTIONS), "the program schema and the instruction table disagree"


def check_program(program: Program) -> None:
    """ProgramError unless the program passes the schema (`backends.program_schema`): known opcodes,
    buffers written before they are read, attributes in range, shapes consistent with the operands."""
    check_program_semantics(program)


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
        self._counted: dict[tuple, tuple[list[Counts], Counts]] = {}   # input shapes → counts
        self.crossbars = program_crossbars(program, device, seed, faults)
        check_schedule(program, self.target)
        self.input_ranges = input_ranges(program)   # buffer → (low, high) of what quantize proves
        self._unbatched = {i.attrs["output"]: tuple(shapes[0]) for i, shapes in zip(program.instructions,
                                                                                   operand_shapes(program))
                           if i.opcode == "store" and (not shapes[0] or shapes[0][0] != 1)}   # no batch axis
        self.plan = Plan(self)
        self._declared = [(spec["name"], TensorType(tuple(spec["shape"]), spec["dtype"])) for spec in program.inputs]
        arrays = max(phase_arrays(program, ("mvm",)).values(), default=0)
        if self.target.max_arrays is not None and arrays > self.target.max_arrays:
            raise ProgramError(f"program {program.name!r} needs {arrays} arrays; the target has "
                               f"{self.target.max_arrays}")

    def run(self, inputs: dict[str, np.ndarray], trace: bool = False, allow_nonfinite: bool = False,
            timings: dict[str, float] | None = None) -> MachineResult:
        """Execute the program; RccError naming the input when one is missing, of the wrong shape or dtype,
        or (unless `allow_nonfinite`) holds NaN/Inf. A batch (every input declared with a leading 1 given
        N > 1 samples along that axis) runs as one: every buffer holds the N samples' values stacked along
        its leading axis, each `mvm` and every per-sample vector op runs once on them, other vector ops
        sample by sample (`runtime/batching.py`); outputs are stacked the same way and the counts are N
        inferences' (`batch_inputs`). BLAS runs on one thread when the largest GEMM is too small for a second to
        pay (`threads.blas_threads_for`). `timings`, when given, accumulates the seconds spent per kind of
        instruction (an opcode, or a vector op's IR op name): a profile."""
        declared = self._declared
        samples = [check_inputs(declared, sample, allow_nonfinite, self.program.baked_inputs,
                                self.program.input_defaults)
                   for sample in batch_inputs(declared, inputs)]
        batch = len(samples)
        key = tuple(tuple(array.shape) for array in samples[0].values())
        record = key not in self._counted
        mvm_trace: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        observe = _observer(trace, allow_nonfinite, mvm_trace) if trace or allow_nonfinite else None
        stacked_batch = batch if self.plan.stackable else 1
        with np.errstate(invalid="ignore") if allow_nonfinite else nullcontext(), \
                blas_limited(blas_threads_for(self.plan.largest_gemm_macs * stacked_batch)):
            if batch == 1 or self.plan.stackable:
                stacked = samples[0] if batch == 1 else \
                    {name: np.concatenate([sample[name] for sample in samples]) for name in samples[0]}
                merged, shapes = self.plan.run(stacked, batch, record, observe, timings)
            else:   # a buffer without a leading axis: one sample at a time
                runs = [self.plan.run(sample, 1, record, observe, timings) for sample in samples]
                merged = {name: _joined([outputs[name] for outputs, _ in runs]) for name in runs[0][0]}
                shapes = runs[0][1]
        for name, shape in self._unbatched.items():   # a sample's output without a leading 1: one row per sample
            if batch > 1 and name in merged:
                merged[name] = np.asarray(merged[name]).reshape(batch, *shape)
        if record:
            self._counted[key] = self._counts(shapes)
        per_instruction, totals = self._counted[key]
        return MachineResult(merged, totals.scaled(batch), per_instruction, mvm_trace, batch)

    def _counts(self, shapes: list[tuple[tuple[int, ...], ...]]) -> tuple[list[Counts], Counts]:
        """Each instruction's counts, from the shapes of what it read (per sample), and the program's totals
        (a function of the input shapes alone: computed once per input shape)."""
        per_instruction = [instruction_counts(self.target, instruction, [list(s) for s in operand_shapes])
                           for instruction, operand_shapes in zip(self.program.instructions, shapes)]
        return per_instruction, total_counts(self.program, per_instruction)


def _observer(trace: bool, allow_nonfinite: bool, mvm_trace: dict[str, tuple[np.ndarray, np.ndarray]]) -> Callable:
    """What sees each step's values: the mvm trace (dst → (x, acc)) and NaN propagation through the crossbars."""
    poisoned: dict[str, np.ndarray] = {}

    def observe(step: PlannedStep, operands: list[np.ndarray], results: list[np.ndarray]) -> list[np.ndarray]:
        if allow_nonfinite:
            results = _propagate_nonfinite(step.instruction, operands, results, poisoned)
        if trace and step.instruction.opcode in ("mvm", "write_mvm"):
            mvm_trace[step.instruction.dst[0]] = (operands[0], results[0])
        return results
    return observe


def batch_inputs(declared: list[tuple[str, TensorType]], inputs: dict[str, np.ndarray]
                 ) -> list[dict[str, np.ndarray]]:
    """The samples of a batch: when every declared input has a leading 1 and every given one has the same
    N > 1 samples there (and otherwise its declared shape), N single inputs (views); else the inputs as given."""
    if len(inputs) == len(declared) and all(getattr(inputs.get(name), "shape", None) == type_.shape
                                            for name, type_ in declared):
        return [inputs]   # one sample as declared (the common call)
    arrays = {name: np.asarray(inputs[name]) for name, _ in declared if name in inputs}
    if len(arrays) != len(declared) or not declared:
        return [inputs]
    sizes = {array.shape[0] if array.ndim else None for array in arrays.values()}
    if len(sizes) != 1 or None in sizes or min(sizes) < 2 or not all(
            t.shape[:1] == (1,) and arrays[name].shape[1:] == t.shape[1:] for name, t in declared):
        return [inputs]
    count = sizes.pop()
    return [{**inputs, **{name: array[n:n + 1] for name, array in arrays.items()}} for n in range(count)]


def _propagate_nonfinite(instruction, operands: list[np.ndarray], results: list[np.ndarray],
                         poisoned: dict[str, np.ndarray]) -> list[np.ndarray]:
    """NaN through the integer crossbars as onnxruntime's float arithmetic has it: a vector holding NaN
    or Inf when it is quantised makes every output of its row NaN after dequantisation (x·w sums a NaN
    or an Inf·0 into each output; an Inf result is reported as NaN). `poisoned` maps buffers to such rows."""
    if instruction.opcode == "quantize":
        x = operands[0].reshape(operands[0].shape[0], -1) if operands[0].ndim else operands[0].reshape(1, 1)
        rows = ~np.isfinite(x).all(axis=1)
        if rows.any():
            poisoned[instruction.dst[0]] = rows
    elif instruction.opcode == "mvm" and instruction.src[0] in poisoned:
        poisoned[instruction.dst[0]] = poisoned[instruction.src[0]]
    elif instruction.opcode == "dequantize" and instruction.src[0] in poisoned:
        out = results[0].copy()
        out[poisoned[instruction.src[0]]] = np.nan
        return [out]
    return results


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    """Samples' outputs one after another: concatenated along their leading axis of 1 (the batch axis), stacked
    on a new one when they have none (a scalar, a squeezed vector)."""
    if all(np.ndim(part) >= 1 and np.shape(part)[0] == 1 for part in parts):
        return np.concatenate(parts)
    return np.stack(parts)
