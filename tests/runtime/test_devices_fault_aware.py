"""The fault-aware pass: results unchanged with perfect cells, composes with sparse packing, never raises the
fault cost it minimises, and lowers the output error on a faulty chip; `--device ideal` is today's machine."""

from __future__ import annotations

import numpy as np
import pytest

from rcc.backends.device import Device, load_device
from rcc.backends.faults import RandomFaults
from rcc.backends.target import Target
from rcc.compiler.driver import compile_model
from rcc.compiler.pass_manager import default_pipeline
from rcc.compiler.passes.fault_aware import FaultAware
from rcc.ir.errors import RccError
from rcc.ir.inputs import random_inputs
from rcc.runtime.machine import Machine
from tests.conftest import ROOT, ZOO

FAULTS = RandomFaults(0.09, 0.01, seed=0)


def _compiled(model: str, target: Target, aware: bool):
    pipeline = [*default_pipeline(), FaultAware(faults=FAULTS), "dce"] if aware else None
    return compile_model(ROOT / "models" / model, target, pipeline=pipeline)


@pytest.mark.parametrize("model,target", [("lenet5.onnx", Target()),
                                          ("lenet5_pruned.onnx", Target(xbar_rows=32, xbar_cols=32))])
def test_fault_aware_mapping_is_exact_on_perfect_cells_and_helps_on_faulty_ones(model, target):
    plain, aware = _compiled(model, target, False), _compiled(model, target, True)
    inputs = random_inputs(plain.graph, 0)
    ideal = Machine(plain.program).run(inputs).outputs
    remapped = Machine(aware.program).run(inputs).outputs
    assert all(np.array_equal(ideal[k], remapped[k]) for k in ideal)
    perfect = Device(programming_noise="constant")          # the device path with exact cells
    assert all(np.array_equal(ideal[k], v) for k, v in Machine(aware.program, device=perfect).run(inputs).outputs.items())
    figures = next(r for r in aware.reports if r.name == "fault-aware").figures
    assert figures["fault_cost_after"] < figures["fault_cost_before"]
    faulty = Device(stuck_off_rate=0.09, stuck_on_rate=0.01)

    def layer_errors(compiled) -> list[float]:
        """Each layer's relative accumulator error on the chip, fed the ideal machine's inputs (end to end,
        an untrained network's outputs are noise at these rates on either mapping)."""
        trace = Machine(compiled.program).run(inputs, trace=True).mvm_trace
        chip = Machine(compiled.program, device=faulty, faults=FAULTS)
        return [float(np.linalg.norm(chip.crossbars[name].run(x) - acc) / np.linalg.norm(acc))
                for name, (x, acc) in trace.items()]

    assert all(a < p for a, p in zip(layer_errors(aware), layer_errors(plain)))


@pytest.mark.slow
@pytest.mark.parametrize("path", ZOO, ids=lambda p: p.stem)
def test_ideal_device_is_todays_machine_bit_for_bit(path):
    compiled = compile_model(path)
    inputs = random_inputs(compiled.graph, 0)
    today = Machine(compiled.program).run(inputs).outputs
    ideal = Machine(compiled.program, device=load_device("ideal"), seed=5).run(inputs).outputs
    assert all(np.array_equal(today[k], ideal[k]) for k in today)


@pytest.mark.parametrize("seed", [-1, 2**63])
def test_fault_seed_out_of_range_is_bad_input(seed: int) -> None:
    """numpy refuses a negative seed with a ValueError deep in the pass (exit 3); the pass names its option."""
    with pytest.raises(RccError, match="fault_seed must be between 0 and 2"):
        FaultAware(stuck_off_rate=0.1, fault_seed=seed).chip()
