"""Attention on a ReRAM chip (`place-attention`, `--attention vector|crossbar`): a Q·Kᵀ / softmax / ·V block
built with onnx.helper verifies against onnxruntime in both modes and both precisions; on crossbars the
machine's run-time written arrays equal the integer reference bit for bit (slice by slice, lossless ADC);
the IR and the program round-trip; both modes are counted (digital MACs; row writes, cell wear)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

from rcc.backends.chip import load_chip
from rcc.backends.program import load_program, save_program
from rcc.backends.target import Target
from rcc.compiler.driver import compile_model, verify_compiled
from rcc.compiler.report import build_report
from rcc.ir.interpreter import evaluate
from rcc.ir.ops.xbar import exact_grouped_product
from rcc.runtime.cost import estimate_cost
from rcc.runtime.machine import Machine
from rcc.runtime.schedule import layer_counts, static_counts
from tests.hostile.builders import save_model, tensor
from tests.ir.test_text_roundtrip import assert_round_trips

HEADS, TOKENS, DIM = 2, 6, 8


def attention_model(path) -> str:
    """x [H, T, D] → q, k, v (constant projections) → softmax(q·kᵀ)·v."""
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array((rng.normal(size=(DIM, DIM)) / 3).astype(np.float32), name)
               for name in ("wq", "wk", "wv")]
    nodes = [helper.make_node("MatMul", ["x", w], [o]) for w, o in (("wq", "q"), ("wk", "k"), ("wv", "v"))]
    nodes += [helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
              helper.make_node("MatMul", ["q", "kt"], ["scores"]),
              helper.make_node("Softmax", ["scores"], ["probs"], axis=-1),
              helper.make_node("MatMul", ["probs", "v"], ["y"])]
    return str(save_model(path / "attention.onnx", nodes, [tensor("x", [HEADS, TOKENS, DIM])],
                          [tensor("y", [HEADS, TOKENS, DIM])], weights))


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    return attention_model(tmp_path_factory.mktemp("attention"))


@pytest.mark.parametrize("precision", ["int", "float"])
@pytest.mark.parametrize("attention", ["vector", "crossbar"])
def test_attention_verifies_against_onnxruntime(model, attention, precision) -> None:
    compiled = compile_model(model, Target(attention=attention), precision=precision)
    written = [op for op in compiled.xbar.ops if op.opname == "xbar.write_mvm"]
    assert len(written) == (2 if attention == "crossbar" else 0)
    result = verify_compiled(model, compiled, samples=2)
    assert result.passed, result


def test_written_crossbars_equal_the_integer_reference_bit_for_bit(model) -> None:
    compiled = compile_model(model, Target(attention="crossbar"))
    x = {"x": np.random.default_rng(3).normal(size=(HEADS, TOKENS, DIM)).astype(np.float32)}
    env = {value.name: array for value, array in evaluate(compiled.xbar, x).items()}
    machine = Machine(compiled.program, force_sliced=True).run(x, trace=True)  # slice by slice through the ADC
    for layer in ("scores", "y"):
        xq, acc = machine.mvm_trace[f"{layer}.acc"]
        np.testing.assert_array_equal(xq, env[f"{layer}.xq"])
        exact = exact_grouped_product(xq, env[f"{layer}.bq"])
        assert acc.dtype == np.int64 and np.array_equal(acc, exact)
    np.testing.assert_array_equal(machine.outputs["y"], env["y"])


def test_crossbar_attention_round_trips_as_text_and_program(model, tmp_path) -> None:
    compiled = compile_model(model, Target(attention="crossbar"))
    assert_round_trips(compiled.xbar, tmp_path)
    save_program(compiled.program, tmp_path / "a.rccp")
    loaded = load_program(tmp_path / "a.rccp")
    assert [i.opcode for i in loaded.instructions].count("write_mvm") == 2
    x = {"x": np.ones((HEADS, TOKENS, DIM), np.float32)}
    np.testing.assert_array_equal(Machine(loaded).run(x).outputs["y"], Machine(compiled.program).run(x).outputs["y"])


def test_vector_attention_is_counted_as_digital_macs(model) -> None:
    compiled = compile_model(model, Target())
    layers = layer_counts(compiled.program, static_counts(compiled.program, compiled.target))
    macs = HEADS * TOKENS * TOKENS * DIM  # q·kᵀ; probs·v has the same count
    assert layers["scores"].vector_macs == layers["y"].vector_macs == macs
    assert layers["scores"].cycles == macs // compiled.target.vector_lanes * compiled.target.vector_op_cycles
    chip = load_chip("isaac")
    cost = estimate_cost(compiled.program, chip).to_json()
    assert cost["layers"]["scores"]["energy_breakdown_pj"]["vector_unit"] == pytest.approx(macs * chip.vector_mac_pj)
    assert cost["totals"]["endurance"]["cell_writes"] == 0
    units = {row["name"]: row["unit"] for row in build_report(compiled, chip=chip)["layers"]}
    assert units["scores"] == units["y"] == "vector" and units["q"] == "crossbar"


def test_crossbar_attention_is_counted_with_writes_and_wear(model) -> None:
    compiled = compile_model(model, Target(attention="crossbar"))
    target = compiled.target
    layers = layer_counts(compiled.program, static_counts(compiled.program, target))
    scores = layers["scores"]  # kᵀ [2 heads, K = 8, N = 6] on differential arrays of 4 slices
    assert scores.vector_macs == 0 and scores.macs == HEADS * TOKENS * DIM * TOKENS
    assert scores.row_writes == HEADS * DIM * 2 and scores.cell_writes == HEADS * DIM * TOKENS * 4 * 2
    assert scores.write_steps == DIM
    measured = Machine(compiled.program).run({"x": np.ones((HEADS, TOKENS, DIM), np.float32)})
    assert measured.totals.cell_writes == sum(layer.cell_writes for layer in layers.values())
    chip = load_chip("puma")
    cost = estimate_cost(compiled.program, chip, measured.per_instruction).to_json()
    assert cost["layers"]["scores"]["energy_breakdown_pj"]["write"] == pytest.approx(scores.row_writes *
                                                                                      chip.write_row_pj)
    endurance = cost["totals"]["endurance"]
    assert endurance["writes_per_cell"] == 1.0
    assert endurance["inferences_to_wear_out"] == pytest.approx(chip.cell_endurance)
    units = {row["name"]: row["unit"] for row in build_report(compiled, chip=chip)["layers"]}
    assert units["scores"] == units["y"] == "crossbar-write" and units["probs"] == "vector"


def test_a_convolution_with_computed_weights_runs_on_the_vector_unit_and_is_counted(tmp_path) -> None:
    """Digital fallback: a weighted op whose weights are activations does not block compilation."""
    nodes = [helper.make_node("Relu", ["w"], ["wr"]), helper.make_node("Conv", ["x", "wr"], ["y"])]
    path = save_model(tmp_path / "dynamic_conv.onnx", nodes, [tensor("x", [1, 3, 6, 6]), tensor("w", [4, 3, 3, 3])],
                      [tensor("y", [1, 4, 4, 4])])
    compiled = compile_model(path)
    layers = layer_counts(compiled.program, static_counts(compiled.program, compiled.target))
    assert layers["y"].vector_macs == 4 * 4 * 4 * 3 * 3 * 3 and layers["y"].cycles > 0
    cost = estimate_cost(compiled.program, load_chip("isaac")).to_json()
    assert cost["layers"]["y"]["energy_breakdown_pj"]["vector_unit"] > 0
    assert verify_compiled(path, compiled, samples=2).passed


def test_a_matmul_of_batched_constant_weights_falls_back_to_the_vector_unit(tmp_path) -> None:
    """Weights no pass maps onto arrays (3-D constants) no longer block compilation: digital MACs."""
    weights = numpy_helper.from_array(np.random.default_rng(0).normal(size=(2, 4, 5)).astype(np.float32), "w")
    path = save_model(tmp_path / "batched.onnx", [helper.make_node("MatMul", ["x", "w"], ["y"])],
                      [tensor("x", [2, 3, 4])], [tensor("y", [2, 3, 5])], [weights])
    compiled = compile_model(path)
    layers = layer_counts(compiled.program, static_counts(compiled.program, compiled.target))
    assert layers["y"].vector_macs == 2 * 3 * 5 * 4 and layers["y"].mvm_ops == 0
    assert verify_compiled(path, compiled, samples=2).passed
