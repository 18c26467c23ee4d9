"""The machine's execution plan (runtime/plan.py, batching.py, fusion.py): on every zoo model the fused
steps give the unfused steps' outputs bit for bit, a batch run stacked gives its samples' single runs
bit for bit (integer mode) and N times the counts computed statically from the program; a replicated layer in a batch too; a crossbar told its quantized input
range computes the same exact product as one that measures its input."""

from __future__ import annotations

import numpy as np
import pytest

from rcc.compiler.driver import compile_model
from rcc.ir.inputs import random_inputs
from rcc.runtime.machine import Machine
from rcc.runtime.plan import ONCE, PER_SAMPLE, STACKED
from rcc.runtime.schedule import static_counts
from tests.conftest import ROOT, ZOO
from tests.runtime.test_crossbar_exactness import int64_product
from tests.runtime.test_machine_fast_paths import _layer


def _batch_of(inputs: dict[str, np.ndarray], program, samples: int) -> dict[str, np.ndarray]:
    """`samples` different samples of every input with a leading 1 (integers permuted, floats scaled)."""
    out = {}
    for spec in program.inputs:
        value = inputs[spec["name"]]
        if value.dtype.kind == "f":
            parts = [value * (1 + 0.25 * s) for s in range(samples)]
        else:
            parts = [np.roll(value, s) for s in range(samples)]
        out[spec["name"]] = np.concatenate(parts).astype(value.dtype)
    return out


def _check_batch(compiled, samples: int = 3) -> Machine:
    machine = Machine(compiled.program)
    if any(spec["shape"][:1] != [1] for spec in compiled.program.inputs):
        samples = 1    # the model fixes its batch
    batch = _batch_of(random_inputs(compiled.graph, 0), compiled.program, samples)
    singles = [machine.run({name: array[s:s + 1] if samples > 1 else array for name, array in batch.items()})
               for s in range(samples)]
    traced = machine.run({name: array[:1] if samples > 1 else array for name, array in batch.items()}, trace=True)
    for name, output in traced.outputs.items():   # a trace runs the unfused steps: the same values
        assert np.array_equal(output, singles[0].outputs[name], equal_nan=True), name
    stacked = machine.run(batch) if samples > 1 else singles[0]
    assert stacked.batch == samples
    for name, output in stacked.outputs.items():
        expected = np.concatenate([single.outputs[name] for single in singles])
        assert np.array_equal(output, expected, equal_nan=True), name
    expected = static_counts(compiled.program, machine.target)
    assert singles[0].per_instruction == expected
    assert stacked.per_instruction == [count.scaled(samples) for count in expected]
    assert stacked.totals == singles[0].totals.scaled(samples)
    return machine


@pytest.mark.slow
@pytest.mark.parametrize("path", ZOO, ids=[p.stem for p in ZOO])
def test_a_stacked_batch_equals_single_runs_and_counts_statically(path) -> None:
    machine = _check_batch(compile_model(path, precision="int"))
    modes = {step.mode for step in machine.plan.steps}
    assert modes <= {ONCE, STACKED, PER_SAMPLE}


def test_most_of_lenet_runs_stacked_and_a_replicated_layer_batches() -> None:
    machine = _check_batch(compile_model(ROOT / "models" / "lenet5.onnx", precision="int"))
    assert all(step.mode == STACKED for step in machine.plan.steps if step.instruction.opcode != "store")
    _check_batch(compile_model(ROOT / "models" / "resnet_small.onnx", precision="int", replicate="4"), samples=2)


@pytest.mark.parametrize("signed", [False, True])
def test_a_known_input_range_gives_the_exact_product(signed: bool) -> None:
    rng = np.random.default_rng(5)
    low, high = (-127, 127) if signed else (0, 255)
    for k, m in [(40, 7), (300, 5), (1500, 3)]:
        x = rng.choice([low, high, 0, 1], size=(6, k)).astype(np.int32)
        w = rng.integers(-127, 128, size=(1, k, m))
        layer = _layer(rng, k, m, x, w)
        expected = int64_product(x, w.astype(np.int8))
        assert np.array_equal(layer.run(x, None, (low, high)), expected)
        assert np.array_equal(layer.run(x, True, (low, high)), expected)
