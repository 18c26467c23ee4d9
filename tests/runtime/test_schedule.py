"""The schedule in the program (copies of a layer's weights, their arrays and rows, phases, pipeline
overlap): printable and parsable in the crossbar IR, honoured by the machine with outputs unchanged bit
for bit on every zoo model, reflected in the counters and the cost, and refused with one line when bad."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from rcc.backends.chip import load_chip
from rcc.backends.program import ProgramError, load_program, save_program
from rcc.backends.target import Target
from rcc.compiler.cli import main
from rcc.compiler.driver import compile_model, verify_compiled
from rcc.compiler.pass_manager import default_pipeline
from rcc.ir import modules_equal, parse_module, print_module
from rcc.ir.errors import RccError
from rcc.ir.inputs import random_inputs
from rcc.runtime.cost import estimate_cost
from rcc.runtime.machine import Machine
from rcc.runtime.schedule import static_counts
from tests.conftest import ROOT, ZOO

RESNET = ROOT / "models" / "resnet_small.onnx"


def mvms(program):
    return [i for i in program.instructions if i.opcode == "mvm"]


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["int", "float"])
@pytest.mark.parametrize("path", ZOO, ids=[p.stem for p in ZOO])
def test_outputs_are_identical_with_and_without_replication_and_pipelining(path, precision) -> None:
    plain = compile_model(path, precision=precision)
    inputs = random_inputs(plain.graph, 0)
    expected = Machine(plain.program).run(inputs)
    single = sum(i.attrs["arrays"] for i in mvms(plain.program))
    for schedule in (f"copies=auto;pipeline=row;arrays={4 * single}", "copies=3;pipeline=layer"):
        scheduled = compile_model(path, precision=precision,
                                  pipeline=[*default_pipeline()[:-1], f"replicate{{{schedule}}}"])
        assert max(i.attrs["copies"] for i in mvms(scheduled.program)) > 1
        run = Machine(scheduled.program).run(inputs)
        assert run.outputs.keys() == expected.outputs.keys()
        for name, array in expected.outputs.items():
            assert np.array_equal(run.outputs[name], array), (schedule, name)
        assert run.totals.mvm_ops == expected.totals.mvm_ops      # the same work, spread over copies
        assert run.totals.array_steps <= expected.totals.array_steps


def test_copies_split_the_vectors_and_the_counts_follow_the_busiest_copy() -> None:
    compiled = compile_model(RESNET, replicate="4")
    first = mvms(compiled.program)[0]
    assert first.attrs["copies"] == 4 and list(first.attrs["copy_rows"]) == [0, 256, 512, 768, 1024]
    assert list(first.attrs["copy_arrays"]) == [0, 2, 4, 6]
    assert mvms(compiled.program)[1].attrs["first_array"] == 8   # placed after the first layer's copies
    run = Machine(compiled.program).run(random_inputs(compiled.graph, 0))
    assert run.per_instruction == static_counts(compiled.program, Machine(compiled.program).target)
    single = Machine(compile_model(RESNET).program).run(random_inputs(compiled.graph, 0))
    index = compiled.program.instructions.index(first)
    assert run.per_instruction[index].array_steps * 4 == single.per_instruction[index].array_steps
    assert run.per_instruction[index].mvm_ops == single.per_instruction[index].mvm_ops


def test_schedule_prints_parses_and_survives_the_program_file(tmp_path) -> None:
    compiled = compile_model(RESNET, replicate="auto", pipelining="row")
    text = print_module(compiled.xbar)
    assert "copies = " in text and "copy_rows = [" in text and 'pipeline = "row"' in text
    weights = {c.name: c.data for c in compiled.xbar.constants}
    assert modules_equal(parse_module(text, weights), compiled.xbar)
    save_program(compiled.program, tmp_path / "r.rccp")
    loaded = load_program(tmp_path / "r.rccp")
    assert [i.to_json() for i in mvms(loaded)] == [i.to_json() for i in mvms(compiled.program)]
    leads = [i.attrs["lead"] for i in mvms(loaded)]
    assert leads[0] == pytest.approx(2 / 32) and leads[-1] == 1.0   # 3×3 pad 1 on 32 rows; the classifier


def _with_first_mvm(program, **attrs):
    instructions = list(program.instructions)
    index = instructions.index(mvms(program)[0])
    instructions[index] = dataclasses.replace(instructions[index], attrs={**instructions[index].attrs, **attrs})
    return dataclasses.replace(program, instructions=instructions)


def test_bad_schedules_are_refused_with_one_line(tmp_path, capsys) -> None:
    program = compile_model(RESNET, replicate="2").program
    second = mvms(program)[1].attrs["first_array"]
    twice = _with_first_mvm(program, copy_arrays=[0, second])
    with pytest.raises(ProgramError, match=r"copy \d uses array \d+ of phase 0, which .* already holds"):
        Machine(twice)
    empty = _with_first_mvm(program, copy_rows=[0, 1024, 1024])
    with pytest.raises(ProgramError, match="copy 1 serves no rows"):
        Machine(empty)
    with pytest.raises(ProgramError, match="states 3 copies but 2 row ranges"):
        Machine(_with_first_mvm(program, copies=3))
    save_program(empty, tmp_path / "bad.rccp")
    np.savez(tmp_path / "x.npz", **random_inputs(compile_model(RESNET).graph, 0))
    code = main(["run", str(tmp_path / "bad.rccp"), "--inputs", str(tmp_path / "x.npz"), "-o", str(tmp_path / "o.npz")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "serves no rows" in err
    assert not (tmp_path / "o.npz").exists()


@pytest.mark.slow
def test_replication_and_pipelining_raise_throughput_in_the_cost() -> None:
    chip = load_chip("isaac")
    plain = estimate_cost(compile_model(RESNET).program, chip)
    layer = estimate_cost(compile_model(RESNET, pipelining="layer").program, chip)
    replicated = estimate_cost(compile_model(RESNET, replicate="auto", pipelining="layer").program, chip)
    rows = estimate_cost(compile_model(RESNET, replicate="auto", pipelining="row").program, chip)
    assert plain.interval_ns == pytest.approx(plain.latency_ns)                  # one inference at a time
    assert layer.latency_ns == pytest.approx(plain.latency_ns) and layer.interval_ns < plain.interval_ns
    assert replicated.interval_ns < layer.interval_ns / 3
    assert rows.latency_ns < replicated.latency_ns and rows.interval_ns == pytest.approx(replicated.interval_ns)
    figures = replicated.to_json()
    marked = [name for name, layer in figures["layers"].items() if layer["bottleneck"]]
    assert marked == [figures["totals"]["bottleneck"]] and figures["layers"][marked[0]]["stage_share"] == 1.0
    assert sum(layer["arrays"] for layer in figures["layers"].values()) == figures["totals"]["arrays"]


def test_a_model_three_times_the_chip_runs_in_phases_and_pays_for_writes() -> None:
    small_chip = Target(chips=1, tiles_per_chip=1, arrays_per_tile=8)   # resnet_small needs 24 arrays
    compiled = compile_model(RESNET, small_chip)
    phases = [i.attrs["phase"] for i in mvms(compiled.program)]
    assert phases == sorted(phases) and max(phases) >= 2
    assert verify_compiled(RESNET, compiled).passed
    cost = estimate_cost(compiled.program, load_chip("isaac"))
    totals = cost.to_json()["totals"]
    assert totals["phases"] == max(phases) + 1 and totals["write_latency_ns"] > 0
    assert totals["energy_breakdown_pj"]["write"] > 0 and totals["arrays"] <= 8
    batched = estimate_cost(compiled.program, load_chip("isaac"), batch=16)
    assert batched.interval_ns < cost.interval_ns and batched.latency_ns == pytest.approx(cost.latency_ns)


def test_a_target_too_small_for_one_layer_is_a_clear_error() -> None:
    with pytest.raises(RccError, match="needs 6 crossbar arrays; the target has 4 in all"):
        compile_model(RESNET, Target(chips=1, tiles_per_chip=1, arrays_per_tile=4))


def test_row_pipelining_checks_the_rows_it_holds_against_the_tile_buffer() -> None:
    compiled = compile_model(RESNET, pipelining="row")
    held = next(r for r in compiled.reports if r.name == "replicate").figures["row_buffer_bytes"]
    assert held["bn1"] == 3 * 32 * 3   # three rows of the 3×32×32 int8 image
    tiny = [*default_pipeline()[:-1], "replicate{tile_buffer_kb=0}"]
    with pytest.raises(RccError, match="--pipelining row: layer 'bn1' holds 288 bytes of input rows"):
        compile_model(RESNET, pipeline=tiny, pipelining="row")


@pytest.mark.parametrize("attrs", [{"copies": "2"}, {"copy_rows": [0, -1]}, {"copy_arrays": "0"},
                                   {"pipeline": "warp"}, {"lead": 2.0}, {"phase": None}])
def test_malformed_schedule_attributes_are_a_program_error(attrs) -> None:
    program = compile_model(ROOT / "models" / "mlp.onnx").program
    # the program schema (attribute types) or the schedule check (values) refuses it, naming the attribute
    key = next(iter(attrs))
    with pytest.raises(ProgramError, match=f"(schedule attribute {key} = .* is malformed|attribute '{key}')"):
        Machine(_with_first_mvm(program, **attrs))
