"""Packing never changes results: with any packing mode the machine's integer accumulators are
bit-identical to the dense tiling's (lossless ADC), float mode too; with a narrow ADC a packed layer
saturates exactly as a direct simulation of its own blocks says (packing changes which rows share a
column, so it may change what saturates — that is reported, not hidden)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rcc.backends.mapping import CrossbarMapping, array_blocks, weight_levels
from rcc.backends.packing import Block, check_packing
from rcc.backends.target import Target
from rcc.compiler.driver import compile_model
from rcc.ir.inputs import random_inputs
from rcc.compiler.passes.pack_crossbars import block_maps
from rcc.runtime.crossbar import CrossbarGroup
from rcc.runtime.machine import Machine
from tests.conftest import ROOT
from rcc.runtime import crossbar
from tests.runtime.test_crossbar_exactness import Layer, int64_product, layers, mvm_attrs

MODES = ["compact", "kmeans", "best"]


def sparse(layer: Layer, density: float, seed: int) -> Layer:
    keep = np.random.default_rng(seed).random(layer.weights.shape) < density
    return Layer(np.where(keep, layer.weights, 0).astype(layer.weights.dtype), layer.x, layer.attrs)


def packed_attrs(layer: Layer, mode: str) -> tuple[dict, np.ndarray, np.ndarray]:
    a = layer.attrs
    row_map, col_map = block_maps(layer.weights, a["xbar_rows"], a["xbar_cols"] // a["weight_slices"], mode, seed=0)
    packed = CrossbarMapping.of(a, layer.weights.shape).packed(col_map)
    attrs = {**a, **packed.attrs(), "packing": mode, "dense_arrays": a["arrays"]}
    return attrs, row_map, col_map


@settings(max_examples=50, deadline=None)
@given(layers(max_rows=16, max_cols=16), st.sampled_from([0.02, 0.1, 0.3, 1.0]), st.integers(0, 2**16),
       st.sampled_from(MODES))
def test_packed_equals_dense_bit_for_bit(layer, density, seed, mode) -> None:
    layer = sparse(layer, density, seed)
    attrs, row_map, col_map = packed_attrs(layer, mode)
    groups, k, m = layer.weights.shape
    for group in range(groups):
        blocks = [b for b in array_blocks(layer.weights.shape, attrs, row_map, col_map) if b[0] == group]
        mask = layer.weights[group] != 0
        check_packing(mask, [Block(rows, cols) for _, rows, cols in blocks], attrs["xbar_rows"],
                      attrs["xbar_cols"] // attrs["weight_slices"])
    dense = CrossbarGroup(layer.weights, layer.attrs).run(layer.x)
    packed = CrossbarGroup(layer.weights, attrs, row_map, col_map).run(layer.x)
    assert np.array_equal(packed, dense) and np.array_equal(dense, int64_product(layer.x, layer.weights))
    floats = layer.weights.astype(np.float32)
    np.testing.assert_allclose(CrossbarGroup(floats, attrs, row_map, col_map).run(layer.x.astype(np.float32)),
                               dense.astype(np.float64), rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("rows, x_high, dense_limit", [(300, 127, None), (1500, 255, None), (300, 127, 0)],
                         ids=["float32-gemm", "float64-gemm", "block-by-block"])
@pytest.mark.parametrize("as_levels", [False, True])
def test_a_packed_layers_exact_product_is_its_run(monkeypatch, rows: int, x_high: int, dense_limit: int | None,
                                                  as_levels: bool) -> None:
    """The product the fused steps take for a packed layer (`CrossbarGroup.exact_product`: one float32 GEMM of its
    blocks' sum when rows·max|x|·max|w| < 2^24, float64 below 2^53, else block by block) gives the integers its run
    gives, from int32 inputs or their float32 levels; inputs at the range's ends make every partial sum large."""
    if dense_limit is not None:
        monkeypatch.setattr(crossbar, "DENSE_PACKED_ELEMENTS", dense_limit)
    rng = np.random.default_rng(rows + x_high)
    weights = np.where(rng.random((2, rows, 24)) < 0.3, rng.integers(-127, 128, (2, rows, 24)), 0).astype(np.int8)
    weights[:, :, 0] = 127
    x = rng.choice([-x_high - 1, x_high, 0, 1], (5, 2 * rows)).astype(np.int32)
    x[0] = x_high
    attrs = mvm_attrs(rows=128, cols=128, weight_bits=8, input_bits=9, input_signed=True, cell_bits=2, dac_bits=1,
                      encoding="differential", groups=2, k=rows, m=24)
    attrs, row_map, col_map = packed_attrs(Layer(weights, x, attrs), "compact")
    group = CrossbarGroup(weights, attrs, row_map, col_map)
    assert group.exact_without_saturation() and not group.single_gemm_exact((-x_high - 1, x_high))
    product = group.exact_product((-x_high - 1, x_high))(x.astype(np.float32) if as_levels else x)
    assert np.array_equal(np.asarray(product).astype(np.int64), group.run(x))
    assert np.array_equal(group.run(x), int64_product(x, weights))


def direct_block_simulation(layer: Layer, attrs: dict, row_map, col_map) -> np.ndarray:
    """Each block's arrays simulated directly: per input bit-slice and cell slice, column sums clipped by
    the ADC, shifted and added; offsets removed per block."""
    a = attrs
    groups, k, m = layer.weights.shape
    cycles = -(-a["input_bits"] // a["dac_bits"])
    adc_max = 2 ** a["adc_bits"] - 1
    x_offset = 2 ** (a["input_bits"] - 1) if a["input_signed"] else 0
    w_offset = 2 ** (a["weight_bits"] - 1) if a["encoding"] == "offset" else 0
    out = np.zeros((layer.x.shape[0], groups * m), dtype=np.int64)
    for group, rows, cols in array_blocks(layer.weights.shape, a, row_map, col_map):
        block = layer.weights[group][np.ix_(rows, cols)].astype(np.int64)
        fed = layer.x[:, group * k + rows].astype(np.int64) + x_offset
        levels = weight_levels(block, a["weight_bits"], a["cell_bits"], a["weight_slices"], a["encoding"])
        for sign, level in zip((1, -1), levels):
            for cycle in range(cycles):
                drive = (fed >> (a["dac_bits"] * cycle)) & ((1 << a["dac_bits"]) - 1)
                for s in range(a["weight_slices"]):
                    codes = np.minimum(drive @ level[s].astype(np.int64), adc_max)
                    out[:, group * m + cols] += sign * codes * 2 ** (a["dac_bits"] * cycle + a["cell_bits"] * s)
        out[:, group * m + cols] -= w_offset * fed.sum(axis=1, keepdims=True) + x_offset * block.sum(axis=0)
    return out


@settings(max_examples=50, deadline=None)
@given(layers(max_rows=8, max_cols=8, max_weight_bits=6, max_input_bits=6), st.sampled_from([0.1, 0.4, 1.0]),
       st.integers(0, 2**16), st.sampled_from(MODES), st.integers(1, 4))
def test_packed_narrow_adc_matches_direct_simulation(layer, density, seed, mode, adc_bits) -> None:
    layer = sparse(layer, density, seed)
    attrs, row_map, col_map = packed_attrs(layer, mode)
    attrs["adc_bits"] = min(adc_bits, attrs["adc_bits"])
    got = CrossbarGroup(layer.weights, attrs, row_map, col_map).run(layer.x)
    assert np.array_equal(got, direct_block_simulation(layer, attrs, row_map, col_map))


@pytest.mark.parametrize("precision", ["int", "float"])
def test_every_packing_mode_runs_the_pruned_zoo_model_identically(precision) -> None:
    path = ROOT / "models" / "lenet5_pruned.onnx"
    target = Target(xbar_rows=32, xbar_cols=32)
    runs, arrays = {}, {}
    for mode in ["dense", *MODES]:
        compiled = compile_model(path, target, precision, packing=mode)
        inputs = random_inputs(compiled.graph, 4)
        runs[mode] = Machine(compiled.program).run(inputs, trace=True)
        arrays[mode] = sum(op.attrs["arrays"] for op in compiled.xbar.ops if op.opname == "xbar.mvm")
    for mode in MODES:
        for name, (x, acc) in runs["dense"].mvm_trace.items():
            packed_x, packed_acc = runs[mode].mvm_trace[name]
            if precision == "int":
                assert np.array_equal(packed_x, x) and np.array_equal(packed_acc, acc)
            else:  # float sums in another order: equal to float rounding
                np.testing.assert_allclose(packed_acc, acc, rtol=1e-4, atol=1e-5)
        assert arrays[mode] < arrays["dense"]
    assert arrays["best"] <= arrays["kmeans"] and arrays["best"] <= arrays["compact"]


def _grouped_sparse_conv(path, groups: int, seed: int) -> str:
    """A Conv of `groups` groups (16 channels per group into 16, 3×3) with 85% of its weights pruned."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((16 * groups, 16, 3, 3)).astype(np.float32)
    weights[rng.random(weights.shape) < 0.85] = 0
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], group=groups, kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["y"])], "grouped",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16 * groups, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16 * groups, 8, 8])],
        [numpy_helper.from_array(weights, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return str(path)


@pytest.mark.parametrize("groups", [2, 4])
def test_a_packed_grouped_layer_runs_as_its_dense_tiling(tmp_path, groups: int) -> None:
    """A grouped layer's blocks number its rows and outputs across groups (g·K + r, g·M + c): the machine takes
    such maps (it refused them once) and its accumulators, fused, compiled and traced, are the dense tiling's."""
    path = _grouped_sparse_conv(tmp_path / "grouped.onnx", groups, seed=groups)
    target = Target(xbar_rows=32, xbar_cols=32)
    runs = {}
    for mode in ["dense", *MODES]:
        compiled = compile_model(path, target, "int", packing=mode)
        machine = Machine(compiled.program)
        if mode != "dense":
            assert any(getattr(group, "blocks", None) is not None and group.mapping.groups == groups
                       for group in machine.crossbars.values())
        inputs = random_inputs(compiled.graph, 2)
        traced = machine.run(inputs, trace=True)
        machine.plan.compile_after_seconds = 0.0
        quick = [machine.run(inputs).outputs for _ in range(2)]
        assert all(np.array_equal(run["y"], traced.outputs["y"]) for run in quick)
        runs[mode] = traced
    for mode in MODES:
        for name, (x, acc) in runs["dense"].mvm_trace.items():
            assert np.array_equal(runs[mode].mvm_trace[name][0], x) and np.array_equal(runs[mode].mvm_trace[name][1], acc)


@pytest.mark.parametrize("row_map, col_map, holds", [
    ([[0, 3, -1]], [[0, 2, -1]], True),       # group 0: rows 0-3, outputs 0-2
    ([[4, 7]], [[3, 5]], True),               # group 1: rows 4-7, outputs 3-5
    ([[3, 4]], [[0, 1]], False),              # row 4 is group 1's, its outputs group 0's
    ([[0]], [[2, 3]], False),                 # outputs of two groups
    ([[0]], [[6]], False),                    # a third group's output
    ([[-2]], [[0]], False),                   # below the padding's −1
])
def test_the_program_check_takes_blocks_within_one_group(row_map: list, col_map: list, holds: bool) -> None:
    from rcc.backends.program_schema import _blocks_in_their_groups
    assert _blocks_in_their_groups(np.array(row_map), np.array(col_map), (2, 4, 3)) is holds
