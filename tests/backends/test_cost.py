"""The cost model: ISAAC's published aggregates and peak efficiency from its Table I components, per-event
energies, the static estimate of small layers against hand-computed sums of events × unit costs, the
machine's counts giving the same figures, monotonicity, and the breakdown's arithmetic."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from rcc.backends.chip import Chip, load_chip
from rcc.backends.converters import adc_scale, dac_scale
from rcc.backends.cost_model import adapt_chip, event_energies_pj, peak, stage_ns
from rcc.backends.target import Target
from rcc.compiler.driver import compile_model
from rcc.ir.inputs import random_inputs
from rcc.runtime.cost import Cost, estimate_cost
from rcc.runtime.machine import Machine
from tests.conftest import ROOT

# ISAAC-CE: 16-bit weights and inputs, 2-bit cells, 1-bit DAC, 8-bit ADC, offset encoding, 128×128 arrays.
ISAAC_CE = Target(weight_bits=16, input_bits=16, cell_bits=2, dac_bits=1, adc_bits=8, encoding="offset")


def within(value: float, published: float, tolerance: float = 0.02) -> bool:
    return abs(value - published) <= tolerance * published


@pytest.fixture(scope="module")
def isaac() -> Chip:
    return load_chip("isaac")


# ---- ISAAC reproduction ------------------------------------------------------------------------------

def test_isaac_tile_and_chip_aggregates(isaac: Chip) -> None:
    assert within(isaac.tile_power_mw(), 330.0)
    assert within(isaac.tile_area_mm2(), 0.372)
    assert within(isaac.chip_power_mw(), 65.8e3)
    assert within(isaac.chip_area_mm2(), 85.4)


def test_isaac_ce_peak_efficiency(isaac: Chip) -> None:
    figures = peak(isaac, ISAAC_CE)
    assert within(figures.tops_per_mm2 * 1e3, 478.95)   # GOPs/(s·mm²), Table IV, HyperTransport included
    assert within(figures.tops_per_w * 1e3, 627.5)       # GOPs/W


def test_isaac_per_event_energies(isaac: Chip) -> None:
    energies = event_energies_pj(adapt_chip(isaac, ISAAC_CE))
    assert energies["conversion"] == pytest.approx(16.0 * 100 / (8 * 128))   # 1.5625 pJ
    assert energies["row_drive"] == pytest.approx(4.0 * 100 / (8 * 128))     # 0.39 pJ
    assert energies["array_read"] == pytest.approx(2.4 * 100 / 8)             # 30 pJ
    assert stage_ns(adapt_chip(isaac, ISAAC_CE)) == pytest.approx(100.0)


def test_puma_preset_loads_with_leakage() -> None:
    puma = load_chip("puma")
    assert puma.tile_static_mw() > 0 and puma.chip_power_mw() > puma.tiles_per_chip * puma.tile_static_mw()
    assert peak(puma, ISAAC_CE).tops_per_w > 0


# ---- the static estimate of small layers -------------------------------------------------------------

def gemm_model(path, inputs: int, outputs: int) -> None:
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((inputs, outputs)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")], "fc",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, inputs])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, outputs])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_small_layer_against_hand_computed_sums(tmp_path, isaac: Chip) -> None:
    path = tmp_path / "fc.onnx"
    gemm_model(path, 200, 20)
    target = Target(adc_bits=8)  # ISAAC's 8-bit ADC: no resolution scaling
    compiled = compile_model(path, target)
    layer = estimate_cost(compiled.program, isaac).layers[0]
    # 8-bit signed weights, differential: 7 magnitude bits in 4 slices of 2 bits; 200 rows → 2 row tiles,
    # 20 outputs → 1 column tile; 2 × 1 × 2 = 4 arrays; 8 input bit-slices; one input vector.
    reads, slices = 4 * 8, 8
    columns = 2 * 20 * 2 * 4          # row tiles × outputs × signs × slices
    rows_driven = 200 * 1 * 2         # every row on each column tile and sign array
    breakdown = layer.energy_breakdown_pj
    assert breakdown["arrays"] == pytest.approx(reads * 2.4 * 100 / 8)
    assert breakdown["adcs"] == pytest.approx(slices * columns * 16.0 * 100 / 1024)
    assert breakdown["dacs"] == pytest.approx(slices * rows_driven * 4.0 * 100 / 1024)
    assert breakdown["sample_hold"] == pytest.approx(slices * columns * 0.01 * 100 / 1024)
    assert breakdown["shift_add"] == pytest.approx(slices * columns * 0.2 * 100 / 1024)
    assert breakdown["offchip"] == pytest.approx((200 + 20) * 10.4e3 / 6.4)  # 1 byte per 8-bit activation
    # 200 input bytes from the eDRAM to the arrays and 20 result bytes back, over the bus; the input crosses
    # one router (the layer sits on tile 0, where the inputs arrive); results pass the tile's output register.
    moved, clock = 200 + 20, 1.2
    assert breakdown["buffer"] == pytest.approx(moved * 20.7 / (32 * clock))
    assert breakdown["network"] == pytest.approx(moved * 7.0 / (48 * clock) + 200 * 1 * 42.0 / (32 * clock))
    assert breakdown["registers"] == pytest.approx(reads * 1.24 * 100 / 8 + slices * columns * 0.23 * 100 / 1024
                                                   + 20 * 1.68 / (32 * clock))
    assert breakdown["static"] == 0  # ISAAC gives total power only
    # The busiest array holds all 20 outputs × 4 slices = 80 columns: 80 / 1.28 GS/s = 62.5 ns < the 100 ns
    # read, so the 8 reads set the crossbar time; the bus and link move 440 + 220 bytes in less.
    crossbar = max(slices * 100.0, slices * 80 / 1.28, 440 / (48 * 1.2) + 220 / 6.4)
    assert layer.latency_ns > crossbar and layer.latency_ns - crossbar < 100  # plus a few vector-unit cycles
    assert layer.ops == 2 * 200 * 20


def test_machine_counts_give_the_static_figures(isaac: Chip) -> None:
    compiled = compile_model(ROOT / "models" / "lenet5.onnx")
    run = Machine(compiled.program).run(random_inputs(compiled.graph, 0))
    static = estimate_cost(compiled.program, isaac)
    measured = estimate_cost(compiled.program, isaac, run.per_instruction)
    assert measured.to_json() == static.to_json()
    assert static.energy_pj > 0 and static.latency_ns > 0


def test_breakdowns_sum_to_energy_and_layers_to_totals(isaac: Chip) -> None:
    compiled = compile_model(ROOT / "models" / "lenet5.onnx")
    report = estimate_cost(compiled.program, load_chip("puma")).to_json()
    totals = report["totals"]
    assert sum(totals["energy_breakdown_pj"].values()) == pytest.approx(totals["energy_pj"])
    assert totals["energy_breakdown_pj"]["static"] > 0   # PUMA gives leakage
    for figures in report["layers"].values():
        assert sum(figures["energy_breakdown_pj"].values()) == pytest.approx(figures["energy_pj"])
    assert sum(f["energy_pj"] for f in report["layers"].values()) == pytest.approx(totals["energy_pj"])
    assert sum(f["latency_ns"] for f in report["layers"].values()) == pytest.approx(totals["latency_ns"])
    slowest = max(f["latency_ns"] for f in report["layers"].values())
    assert totals["throughput_inf_s"] == pytest.approx(1e9 / totals["latency_ns"])   # layers one after another
    assert estimate_cost(compile_model(ROOT / "models" / "lenet5.onnx", pipelining="layer").program,
                         load_chip("puma")).to_json()["totals"]["throughput_inf_s"] == pytest.approx(1e9 / slowest)
    assert totals["tops_per_w"] <= totals["peak_tops_per_w"]


# ---- monotonicity and the resolution model -----------------------------------------------------------

def cost_of(path, target: Target, chip: Chip) -> Cost:
    return estimate_cost(compile_model(path, target).program, chip)


def test_more_adc_bits_cost_more_energy_and_area(tmp_path, isaac: Chip) -> None:
    path = tmp_path / "fc.onnx"
    gemm_model(path, 300, 40)
    narrow, wide = (cost_of(path, Target(adc_bits=bits), isaac) for bits in (6, 10))
    assert wide.energy_breakdown_pj["adcs"] > narrow.energy_breakdown_pj["adcs"]
    assert wide.energy_pj > narrow.energy_pj and wide.area_mm2 > narrow.area_mm2
    assert peak(isaac, Target(adc_bits=10)).chip_area_mm2 > peak(isaac, Target(adc_bits=6)).chip_area_mm2


def test_more_arrays_per_adc_take_longer(tmp_path, isaac: Chip) -> None:
    path = tmp_path / "fc.onnx"
    gemm_model(path, 300, 40)
    program = compile_model(path, Target(adc_bits=8)).program
    latencies = [estimate_cost(program, dataclasses.replace(isaac, adcs_per_core=adcs)).latency_ns
                 for adcs in (8, 4, 2, 1)]
    assert latencies == sorted(latencies) and latencies[-1] > latencies[0]


def test_resolution_model() -> None:
    assert adc_scale(8, 8) == 1 and adc_scale(6, 8) == 0.25 and adc_scale(10, 8) == 4
    assert dac_scale(1, 1) == 1 and dac_scale(2, 1) == 3
