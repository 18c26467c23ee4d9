"""The machine's execution plan: the program prepared once per `Machine`, then run per inference.

Every buffer gets a slot (a list index); constants sit in a template copied per run. Every instruction
becomes a `PlannedStep`: its prepared callable (the instruction table's `prepare`: attributes
normalized, the crossbars and their input ranges looked up once), its operand and result slots, and
the slots it is the last to read (dropped, which keeps peak memory at what is live). A `load` places
its input in its slot before the first step; a `store` names the output it keeps.

A batch runs stacked (`runtime/batching.py`): a step runs once on the stacked operands when it can,
else sample by sample on their parts; steps on constants alone run once. The operand shapes each
instruction read (per sample) are recorded on request, for the counts. A run that observes no
intermediate values uses the fused steps (`runtime/fusion.py`: the same instructions on the same values,
integers between quantize and dequantize carried in float32). A run that observes and records nothing takes the
single-sample steps (tap-by-tap products, channels-first dequantize): one sample as generated straight-line code
(`runtime/straight_line.py`), a stacked batch in the loop; both switch to compiled steps
(`runtime/compiled_steps.py`) once such runs have taken `compile_after_seconds` in all.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rcc.backends.program import Instruction, Program
from rcc.ir.progress import stage
from rcc.runtime.batching import batch_attrs, stacks
from rcc.runtime.compiled_steps import compiled
from rcc.runtime.fusion import pass_on, fused_steps
from rcc.runtime.instructions import Step, vector_step
from rcc.runtime.schedule import operand_shapes, prepare
from rcc.runtime.straight_line import StraightLine, straight_line

ONCE, STACKED, PER_SAMPLE = "once", "stacked", "per-sample"
COMPILE_AFTER_SECONDS = 1.0


@dataclass
class PlannedStep:
    index: int                       # the instruction's position in the program
    instruction: Instruction
    run: Step
    src: tuple[int, ...]
    dst: tuple[int, ...]
    free: tuple[int, ...]            # slots no later step reads
    mode: str                        # ONCE (constants only), STACKED or PER_SAMPLE (in a batch)
    leading: tuple[int, ...]         # per-sample leading size of each operand (splitting a batch)
    stacked: tuple[bool, ...]        # which operands are stacked in a batch
    stacked_run: Step | None = None  # the callable for a stacked batch (an mvm's copies not split: exact anyway)
    output: str | None = None        # a store's output name
    progress: int = 0                # steps to report done after this one (at every mvm and at the end)
    _batched: dict[int, Step] | None = None   # batch size → the step with batch-sized attributes

    def batched(self, batch: int) -> Step:
        """The callable that runs this step on a stacked batch of `batch` samples."""
        attrs = batch_attrs(self.instruction, batch)
        if attrs is None:
            return self.stacked_run or self.run
        self._batched = self._batched or {}
        if batch not in self._batched:
            self._batched[batch] = vector_step(self.instruction.attrs["fn"], attrs)
        return self._batched[batch]


class Plan:
    """`machine`'s program as planned steps; `run` executes them on one sample or a stacked batch."""

    def __init__(self, machine) -> None:
        program: Program = machine.program
        slot: dict[str, int] = {}
        for name in program.constants:
            slot[name] = len(slot)
        for instruction in program.instructions:
            for name in instruction.dst:
                slot.setdefault(name, len(slot))
        self.template: list[np.ndarray | None] = [None] * len(slot)
        for name, array in program.constants.items():
            self.template[slot[name]] = array
        self.loads = [(instruction.dst[0], slot[instruction.dst[0]]) for instruction in program.instructions
                      if instruction.opcode == "load"]
        last = {name: index for index, instruction in enumerate(program.instructions) for name in instruction.src}
        frees: list[list[int]] = [[] for _ in program.instructions]
        for name, index in last.items():
            if name not in program.constants:
                frees[index].append(slot[name])
        stacked_slot = [False] * len(slot)
        for _, index in self.loads:
            stacked_slot[index] = True
        self.steps: list[PlannedStep] = []
        self.stackable = True   # every stacked buffer has a leading axis to stack along
        self.largest_gemm_macs = 0   # per sample: the multiply-accumulates of the largest crossbar GEMM
        for index, (instruction, shapes) in enumerate(zip(program.instructions, operand_shapes(program))):
            if instruction.opcode in ("mvm", "write_mvm"):
                _, rows, outputs = instruction.attrs["weights_shape"] if instruction.opcode == "mvm" else shapes[1]
                self.largest_gemm_macs = max(self.largest_gemm_macs, shapes[0][0] * rows * outputs)
            src = tuple(slot[name] for name in instruction.src)
            stacked = tuple(stacked_slot[i] for i in src)
            if instruction.opcode == "load":
                mode = STACKED
            elif not any(stacked):
                mode = ONCE
            else:
                mode = STACKED if stacks(instruction, shapes, stacked) else PER_SAMPLE
                for name, shape in zip(instruction.dst, instruction.shapes):
                    stacked_slot[slot[name]] = True
                    self.stackable &= len(shape) >= 1
            step = PlannedStep(index, instruction, prepare(machine, instruction),
                               src, tuple(slot[name] for name in instruction.dst), tuple(frees[index]), mode,
                               tuple(shape[0] if shape else 0 for shape in shapes), stacked,
                               prepare(machine, instruction, split_copies=False) if instruction.opcode == "mvm"
                               else None,
                               instruction.attrs.get("output") if instruction.opcode == "store" else None)
            if instruction.opcode != "load":
                self.steps.append(step)
        done = 0
        for position, step in enumerate(self.steps):
            if step.instruction.opcode in ("mvm", "write_mvm") or position == len(self.steps) - 1:
                step.progress, done = position + 1 - done, position + 1
        # for runs that observe no intermediate values, and of those, runs that record no shapes (one sample, or a
        # stacked batch)
        self.fused, self.single = fused_steps(machine, self.steps)
        self._straight: tuple[StraightLine, list] | None = None   # generated at the first single-sample run
        # Compiled steps (runtime/compiled_steps.py) replace the numpy ones once runs on the single-sample steps
        # (one sample or a stacked batch, recording nothing) have taken `compile_after_seconds` in all: numba's
        # import and the kernels' loading cost 0.2-0.5 s (about 2 s the first time ever, before its disk cache
        # holds them), which pays back over a data set, not in one run.
        self.compile_after_seconds = COMPILE_AFTER_SECONDS
        self.steps_compiled = False
        self._quick_seconds = 0.0   # of runs on the single-sample steps

    def run(self, inputs: dict[str, np.ndarray], batch: int, record_shapes: bool,
            observe: Callable[[PlannedStep, list[np.ndarray], list[np.ndarray]], list[np.ndarray]] | None = None,
            timings: dict[str, float] | None = None
            ) -> tuple[dict[str, np.ndarray], list[tuple[tuple[int, ...], ...]] | None]:
        """The outputs of one run on `inputs` (a stacked batch of `batch` samples when batch > 1, which needs
        `stackable`), and, if `record_shapes`, every instruction's per-sample operand shapes. `observe`
        (step, operands, results) → results sees every step's values (tracing, NaN propagation);
        `timings` accumulates the seconds of each kind of step (`step_kind`)."""
        slots = self.template.copy()
        for name, index in self.loads:
            slots[index] = inputs[name]
        outputs: dict[str, np.ndarray] = {}
        shapes: list[tuple[tuple[int, ...], ...]] | None = [()] * (len(self.steps) + len(self.loads)) \
            if record_shapes else None
        quick = observe is None and shapes is None   # the single-sample steps, one sample or a stacked batch
        if quick:
            self._compile_if_due()
        began = time.perf_counter()
        with stage("machine run", len(self.steps)) as advance:
            if batch == 1 and quick and timings is None:   # (a profile times each step in the loop)
                if self._straight is None:
                    self._straight = straight_line(self.single, pass_on)
                self._straight[0](slots, outputs, advance)
            else:
                self._run_steps(self.single if quick else self.fused if observe is None else self.steps, slots,
                                outputs, batch, advance, shapes, observe, timings)
        if quick and timings is None:
            self._quick_seconds += time.perf_counter() - began
        return outputs, shapes

    def _compile_if_due(self) -> None:
        """Switch the single-sample steps to their compiled forms once quick runs have taken
        `compile_after_seconds` in all."""
        if self.steps_compiled or self._quick_seconds < self.compile_after_seconds:
            return
        self.single = [dataclasses.replace(step, run=compiled(step.run)) for step in self.single]
        if self._straight is not None:
            self._straight[1][:] = [step.run for step in self.single]
        self.steps_compiled = True

    def _run_steps(self, steps: list[PlannedStep], slots: list, outputs: dict[str, np.ndarray], batch: int,
                   advance: Callable[[int], None], shapes: list | None, observe: Callable | None,
                   timings: dict[str, float] | None) -> None:
        """`run`'s loop over planned steps: a stacked batch, a run that records shapes, is observed or is profiled
        (one sample that is none of these runs as straight-line code, `runtime/straight_line.py`)."""
        for step in steps:
            start = time.perf_counter() if timings is not None else 0.0
            operands = [slots[i] for i in step.src]
            if batch == 1 or step.mode == ONCE:
                results = step.run(operands)
            elif step.run is pass_on:   # its work done by an earlier step (a batch-sized reshape included)
                results = operands[:1]
            elif step.mode == STACKED:
                results = step.batched(batch)(operands)
            else:
                results = _per_sample(step, operands, batch)
            if observe is not None:
                results = observe(step, operands, results)
            for index, result in zip(step.dst, results):
                slots[index] = result
            for index in step.free:
                slots[index] = None
            if step.output is not None:
                value = operands[0]
                outputs[step.output] = value if batch == 1 or step.stacked[0] else \
                    np.stack([value] * batch) if np.ndim(value) == 0 else np.concatenate([value] * batch)
            if shapes is not None:
                shapes[step.index] = tuple(_sample_shape(a.shape, batch if s else 1)
                                           for a, s in zip(operands, step.stacked))
            if timings is not None:
                kind = step_kind(step.instruction)
                timings[kind] = timings.get(kind, 0.0) + time.perf_counter() - start
            if step.progress:
                advance(step.progress)


def step_kind(instruction: Instruction) -> str:
    """An instruction's kind for a profile: its opcode, or a vector op's IR op."""
    return instruction.attrs["fn"] if instruction.opcode == "vec" else instruction.opcode


def _per_sample(step: PlannedStep, operands: list[np.ndarray], batch: int) -> list[np.ndarray]:
    """One step run on each sample's part of the stacked operands, its results stacked."""
    parts = []
    for sample in range(batch):
        parts.append(step.run([operand[sample * size:(sample + 1) * size] if stacked else operand
                               for operand, stacked, size in zip(operands, step.stacked, step.leading)]))
    return [np.concatenate(results) for results in zip(*parts)]


def _sample_shape(shape: tuple[int, ...], batch: int) -> tuple[int, ...]:
    return shape if batch == 1 else (shape[0] // batch, *shape[1:])
