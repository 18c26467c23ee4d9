"""Spare columns in the fault-aware pass: with a seeded fault map, the columns that still hold non-zero levels on
stuck cells after permutation move to spares (strictly fewer faulty non-zero cells), the program still verifies
(spares are perfect cells), the machine reads the repaired columns as perfect, and the cost model counts the
spares' area."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from rcc.backends.chip import load_chip
from rcc.backends.device import Device
from rcc.backends.faults import RandomFaults
from rcc.backends.program import ProgramError
from rcc.backends.target import Target, TargetError
from rcc.compiler.driver import compile_model
from rcc.compiler.pass_manager import default_pipeline
from rcc.compiler.passes.fault_aware import FaultAware
from rcc.compiler.verify import onnxruntime_outputs
from rcc.ir.inputs import random_inputs
from rcc.runtime.cost import estimate_cost
from rcc.runtime.machine import Machine
from tests.conftest import ROOT

FAULTS = RandomFaults(0.09, 0.01, seed=3)
MODEL = ROOT / "models" / "mlp.onnx"


def _aware(target: Target):
    compiled = compile_model(MODEL, target, pipeline=[*default_pipeline(), FaultAware(faults=FAULTS), "dce"])
    return compiled, next(r for r in compiled.reports if r.name == "fault-aware").figures


@pytest.fixture(scope="module")
def compiled() -> dict:
    return {"plain": _aware(Target()), "spared": _aware(Target(spare_columns=8))}


def test_spares_strictly_reduce_faulty_cells_and_the_program_still_verifies(compiled) -> None:
    (plain, plain_figures), (spared, figures) = compiled["plain"], compiled["spared"]
    assert plain_figures["spare_columns_used"] == 0
    assert plain_figures["faulty_nonzero_after"] == plain_figures["faulty_nonzero_after_permutation"]
    assert figures["faulty_nonzero_before"] == plain_figures["faulty_nonzero_before"]
    assert figures["faulty_nonzero_after_permutation"] == plain_figures["faulty_nonzero_after_permutation"]
    assert 0 < figures["spare_columns_used"]
    assert figures["faulty_nonzero_after_spares"] < figures["faulty_nonzero_after_permutation"] \
        < figures["faulty_nonzero_before"]
    assert figures["fault_cost_after_spares"] < figures["fault_cost_after_permutation"]
    inputs = random_inputs(spared.graph, 0)
    ideal = Machine(plain.program).run(inputs).outputs
    assert all(np.array_equal(ideal[k], v) for k, v in Machine(spared.program).run(inputs).outputs.items())
    expected = onnxruntime_outputs(MODEL, inputs)
    for name, value in Machine(spared.program).run(inputs).outputs.items():
        np.testing.assert_allclose(value, expected[name], atol=0.1 * float(np.abs(expected[name]).max()))

    faulty = Device(stuck_off_rate=0.09, stuck_on_rate=0.01)

    def chip_error(compiled) -> float:
        trace = Machine(compiled.program).run(inputs, trace=True).mvm_trace
        chip = Machine(compiled.program, device=faulty, faults=FAULTS)
        return sum(float(np.abs(chip.crossbars[name].run(x) - acc).sum()) for name, (x, acc) in trace.items())

    assert chip_error(spared) < chip_error(plain)


def test_the_machine_refuses_more_repairs_than_the_target_has_spares(compiled) -> None:
    program = dataclasses.replace(compiled["spared"][0].program)
    program.target = {**program.target, "spare_columns": 1}
    with pytest.raises(ProgramError, match="spare columns"):
        Machine(program, device=Device(stuck_off_rate=0.09, stuck_on_rate=0.01), faults=FAULTS)


def test_spare_columns_add_array_area_and_are_validated() -> None:
    program = compile_model(MODEL).program
    chip = load_chip("isaac")
    plain = estimate_cost(program, chip)
    program.target = {**program.target, "spare_columns": 16}
    spared = estimate_cost(program, chip)
    assert spared.array_area_mm2 == pytest.approx(plain.array_area_mm2 * (128 + 16) / 128)
    with pytest.raises(TargetError, match="spare_columns"):
        Target(spare_columns=-1)
    with pytest.raises(TargetError, match="spare_columns"):
        Target(xbar_cols=32, spare_columns=33)


def test_programs_written_before_spare_columns_still_load(tmp_path) -> None:
    from rcc.backends.program import load_program, save_program
    from tests.hostile.builders import rewrite_program

    save_program(compile_model(MODEL).program, tmp_path / "m.rccp")

    def drop_attribute(header):
        for instruction in header["instructions"]:
            instruction["attrs"].pop("spare_columns", None)
        return header

    older = load_program(rewrite_program(tmp_path / "m.rccp", tmp_path / "old.rccp", edit_header=drop_attribute))
    inputs = random_inputs(compile_model(MODEL).graph, 0)
    assert all(np.array_equal(a, b) for a, b in zip(Machine(older).run(inputs).outputs.values(),
                                                    Machine(load_program(tmp_path / "m.rccp")).run(inputs).outputs.values()))
