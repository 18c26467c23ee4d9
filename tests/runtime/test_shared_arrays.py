"""Time-multiplexed arrays: a recurrent layer's steps all read R, which is programmed once and read by each step in
turn. Its arrays do not grow with the sequence, its crossbar time does (the steps depend on each other); the
results are those of one copy per step, on the ideal machine, on noisy devices (one programming of R), with
replication, phases, packing and the fault-aware mapping. Tied weights (one initializer read by two layers) share
arrays the same way, and are one stage of a layer pipeline."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest

from rcc.backends.chip import load_chip
from rcc.backends.device import Device
from rcc.backends.faults import RandomFaults
from rcc.backends.program import ProgramError
from rcc.backends.target import Target
from rcc.compiler.driver import compile_model, verify_compiled
from rcc.compiler.pass_manager import default_pipeline
from rcc.compiler.plot import plot_sparse_layers
from rcc.compiler.passes.fault_aware import FaultAware
from rcc.compiler.report import layer_rows, totals
from rcc.runtime.cost import estimate_cost
from rcc.runtime.machine import Machine
from rcc.runtime.schedule import array_owners, instruction_layers, static_counts
from tests.frontend.test_recurrent import recurrent_model


def lstm(tmp_path: Path, steps: int, sparse: bool = False) -> tuple[Path, dict[str, np.ndarray], dict]:
    """An LSTM of `steps` steps (70% of R's gate outputs pruned to zero when `sparse`: packing drops them), its
    input and 4 calibration samples."""
    model, fed = recurrent_model("LSTM", 3, steps, 1, 8, 32)
    if sparse:
        r = next(init for init in model.graph.initializer if init.name == "R")
        weights = onnx.numpy_helper.to_array(r).copy()
        weights[:, np.random.default_rng(0).random(weights.shape[1]) < 0.7, :] = 0.0
        r.CopyFrom(onnx.numpy_helper.from_array(weights, "R"))
    path = tmp_path / f"lstm{steps}{'s' if sparse else ''}.onnx"
    onnx.save(model, path)
    rng = np.random.default_rng(5)
    calibration = {"X": rng.standard_normal((4, *fed["X"].shape)).astype(np.float32)}
    return path, fed, calibration


def step_mvms(compiled) -> list:
    return [i for i in compiled.program.instructions if i.opcode == "mvm" and ".R0" in i.dst[0]]


def test_r_is_programmed_once_whatever_the_sequence_length(tmp_path) -> None:
    figures = {}
    for steps in (2, 6):
        path, fed, calibration = lstm(tmp_path, steps)
        compiled = compile_model(path, calibration=calibration)
        steps_read = step_mvms(compiled)
        assert len(steps_read) == steps - 1   # the first step's state is zero: no product
        assert len({(i.src[1], i.attrs["first_array"]) for i in steps_read}) == 1   # one R, on one set of arrays
        owners = array_owners(compiled.program)
        assert sum(owner is not None for owner in owners) == steps - 2
        total = totals(layer_rows(compiled.program, compiled.target))
        figures[steps] = (total["crossbars"], total["cycles"])
        result = verify_compiled(path, compiled, inputs={"X": calibration["X"]})
        assert result.passed and result.extra["integer_reference_match"]
    (arrays_2, cycles_2), (arrays_6, cycles_6) = figures[2], figures[6]
    assert arrays_6 == arrays_2   # R's arrays once, not once per step
    assert cycles_6 > cycles_2   # the steps read R one after another


def layer_cycles(compiled) -> dict[str, tuple[int, list[int], int]]:
    """Per crossbar layer: its cycles, its mvms' cycles, and its other instructions' cycles (static counts)."""
    program = compiled.program
    counts, layers = static_counts(program, compiled.target), instruction_layers(program)
    rows = {row["name"]: row["cycles"] for row in layer_rows(program, compiled.target)}
    result: dict[str, tuple[int, list[int], int]] = {}
    for instruction, layer, count in zip(program.instructions, layers, counts):
        if layer is None:
            continue
        cycles, mvms, other = result.get(layer, (rows[layer], [], 0))
        if instruction.opcode == "mvm":
            mvms = [*mvms, count.cycles]
        elif instruction.opcode not in ("load", "store"):
            other += count.cycles
        result[layer] = (cycles, mvms, other)
    return {layer: figures for layer, figures in result.items() if len(figures[1]) > 1}


def test_steps_run_one_after_another_and_deconvolution_phases_together(tmp_path) -> None:
    path, _, calibration = lstm(tmp_path, 4)
    (cycles, mvms, other), = layer_cycles(compile_model(path, calibration=calibration)).values()
    assert cycles == sum(mvms) + other   # the projection, then each step: one chain
    deconvolutions = layer_cycles(compile_model("models/dcgan_generator.onnx"))
    assert deconvolutions
    for cycles, phases, other in deconvolutions.values():   # the phases read the input side by side
        assert cycles == max(phases) + other


def test_devices_program_r_once(tmp_path) -> None:
    path, fed, calibration = lstm(tmp_path, 4)
    compiled = compile_model(path, calibration=calibration)
    steps = step_mvms(compiled)
    machine = Machine(compiled.program, device=Device(programming_noise="constant", programming_sigma=0.05), seed=1)
    assert all(machine.crossbars[i.dst[0]] is machine.crossbars[steps[0].dst[0]] for i in steps)
    assert all(np.isfinite(y).all() for y in machine.run(fed).outputs.values())
    faulty = Machine(compiled.program, faults=RandomFaults(0.05, 0.01, seed=0), device=Device())
    assert all(np.isfinite(y).all() for y in faulty.run(fed).outputs.values())


def test_replication_phases_packing_and_fault_aware_mapping_keep_one_r(tmp_path) -> None:
    path, fed, calibration = lstm(tmp_path, 5, sparse=True)
    base = compile_model(path, calibration=calibration)
    expected = Machine(base.program).run(fed).outputs
    arrays = totals(layer_rows(base.program, base.target))["crossbars"]
    budget = Target(chips=1, tiles_per_chip=1, arrays_per_tile=max(arrays - 1, 1))
    variants = {"replicated": compile_model(path, calibration=calibration, replicate="auto"),
                "phased": compile_model(path, target=budget, calibration=calibration),
                "fault-aware": compile_model(path, calibration=calibration, pipeline=[
                    *default_pipeline(), FaultAware(faults=RandomFaults(0.05, 0.01, seed=0)), "dce"])}
    packed = [i for i in step_mvms(base) if len(i.src) == 4]
    plotted = plot_sparse_layers(base.program, tmp_path / "plots")   # R's packed arrays drawn once, not per step
    assert sum(".R0" in path.name for path in plotted) == 1
    assert packed and len({tuple(i.src[1:]) for i in step_mvms(base)}) == 1   # one packing of R for every step
    for name, compiled in variants.items():
        steps = step_mvms(compiled)
        assert all(i.attrs.get("copies", 1) == 1 for i in steps), name
        phases = {i.attrs.get("phase", 0) for i in steps}
        assert len({(i.attrs.get("phase", 0), *i.src[1:]) for i in steps}) == len(phases), name
        actual = Machine(compiled.program).run(fed).outputs
        for output, values in expected.items():
            np.testing.assert_array_equal(actual[output], values, err_msg=name)
    assert max(i.attrs["phase"] for i in variants["phased"].program.instructions if i.opcode == "mvm") > 0


def tied_model(tmp_path) -> Path:
    """x → MatMul(W) → Tanh → MatMul(W): one initializer read by two layers (both inputs signed, one target)."""
    weights = (np.random.default_rng(0).standard_normal((64, 64)) / 8).astype(np.float32)
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("MatMul", ["x", "w"], ["h"]), onnx.helper.make_node("Tanh", ["h"], ["t"]),
         onnx.helper.make_node("MatMul", ["t", "w"], ["y"])], "tied",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 64])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 64])],
        [onnx.numpy_helper.from_array(weights, "w")])
    path = tmp_path / "tied.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), path)
    return path


def test_tied_weights_share_arrays_across_layers_and_one_pipeline_stage(tmp_path) -> None:
    path = tied_model(tmp_path)
    compiled = compile_model(path, pipelining="layer")
    rows = {row["name"]: row for row in layer_rows(compiled.program, compiled.target)}
    assert rows["y"]["crossbars"] == 0 and rows["y"]["shares_arrays_of"] == "h" and rows["h"]["crossbars"] > 0
    cost = estimate_cost(compiled.program, load_chip("isaac"))
    latency = {layer.name: layer.latency_ns for layer in cost.layers}
    assert cost.bottleneck == "h" and cost.bottleneck_ns == pytest.approx(latency["h"] + latency["y"])
    assert cost.to_json()["totals"]["arrays"] == rows["h"]["crossbars"]
    result = verify_compiled(path, compiled)
    assert result.passed and result.extra["integer_reference_match"]


def test_a_program_whose_shared_mvms_disagree_is_refused(tmp_path) -> None:
    """Shared arrays fix the mapping, converters and widths of every mvm that reads them; first_array is a
    replicated mvm's first copy's."""
    path, _, calibration = lstm(tmp_path, 4)
    compiled = compile_model(path, calibration=calibration)
    rows = layer_rows(compiled.program, compiled.target)
    assert all(row.get("shares_arrays_of") not in (None, row["name"]) for row in rows if "shares_arrays_of" in row)
    last = step_mvms(compiled)[-1]
    for key, value in (("input_bits", 6), ("adc_bits", 4), ("dac_bits", 2), ("first_array", 1)):
        edited = dataclasses.replace(compiled.program, instructions=[
            dataclasses.replace(i, attrs={**i.attrs, key: value}) if i is last else i
            for i in compiled.program.instructions])
        with pytest.raises(ProgramError, match=key):
            Machine(edited)


def test_the_cost_of_a_recurrent_layer_split_into_phases(tmp_path) -> None:
    """The steps of one layer may land in several reprogramming phases (a budget below the layer's arrays): the cost
    counts the fullest phase's arrays and every phase's writes (it took the layer's first phase for all of them)."""
    path, _, calibration = lstm(tmp_path, 5)
    whole = compile_model(path, calibration=calibration)
    arrays = totals(layer_rows(whole.program, whole.target))["crossbars"]
    budget = Target(chips=1, tiles_per_chip=1, arrays_per_tile=max(arrays // 2, 1))
    split = compile_model(path, target=budget, calibration=calibration)
    phases = {i.attrs["phase"] for i in split.program.instructions if i.opcode == "mvm"}
    assert len(phases) > 1
    cost = estimate_cost(split.program, load_chip("isaac"))
    figures = cost.to_json()["totals"]
    assert figures["phases"] == len(phases) and 0 < figures["arrays"] <= budget.max_arrays
    assert figures["energy_breakdown_pj"]["write"] > 0
    assert len(figures["writes"]) == len(phases) and cost.latency_ns > sum(cost.phase_write_ns)


def test_tied_integer_weights_of_a_quantized_model_share_arrays(tmp_path) -> None:
    """onnxruntime's quantize_dynamic keeps one int8 initializer for both MatMulIntegers (8 arrays, now 4)."""
    quantization = pytest.importorskip("onnxruntime.quantization")
    path = tmp_path / "tied_dynamic.onnx"
    quantization.quantize_dynamic(str(tied_model(tmp_path)), str(path), weight_type=quantization.QuantType.QInt8)
    compiled = compile_model(path)
    rows = [row for row in layer_rows(compiled.program, compiled.target) if row["op"] == "xbar.mvm"]
    assert [row["crossbars"] > 0 for row in rows] == [True, False] and rows[1]["shares_arrays_of"] == rows[0]["name"]
    result = verify_compiled(path, compiled)
    assert result.passed and result.extra["integer_reference_match"]
