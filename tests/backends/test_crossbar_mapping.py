"""The crossbar-mapping value (`backends/mapping.py`): built from an `xbar.mvm`'s attributes and its weights'
shape, its figures equal the ones worked out by hand here for a dense, a packed and an offset-encoded layer;
lowering's constructor agrees with the target's figures; stated attributes that disagree are refused."""

from __future__ import annotations

import numpy as np
import pytest

from rcc.backends.mapping import CrossbarMapping
from rcc.backends.target import Target


def test_dense_differential_layer() -> None:
    """1 group of 300×100 weights on 128×128 arrays, 8-bit weights in 2-bit cells, a differential pair.
    7 magnitude bits → 4 slices; 128 // 4 = 32 outputs per array; 3 row tiles × 4 column tiles × 2 signs."""
    attrs = {"layer": "fc", "xbar_rows": 128, "xbar_cols": 128, "weight_bits": 8, "input_bits": 8,
             "input_signed": False, "cell_bits": 2, "dac_bits": 1, "adc_bits": 9, "encoding": "differential",
             "groups": 1, "row_tiles": 3, "col_tiles": 4, "weight_slices": 4, "arrays": 24}
    mapping = CrossbarMapping.of(attrs, (1, 300, 100))
    assert (mapping.signs, mapping.weight_slices, mapping.weights_per_array_row) == (2, 4, 32)
    assert (mapping.row_tiles, mapping.col_tiles, mapping.arrays, mapping.dense_arrays) == (3, 4, 24, 24)
    assert not mapping.is_packed
    assert mapping.input_cycles == 8 and mapping.input_offset == 0
    assert mapping.max_column_sum == 128 * 1 * 3 == 384
    assert (mapping.adc_max, mapping.adc_lossless) == (511, True)
    assert mapping.used_columns == 3 * 100 * 2 * 4       # every row tile holds all 100 outputs, 4 columns each
    assert mapping.max_columns_per_array == 32 * 4 == 128
    assert mapping.merges == (3 * 2 - 1) * 100          # 3 row tiles × 2 signs merged per output
    assert mapping.cells == 24 * 128 * 128 and mapping.weights == 30_000
    narrow = CrossbarMapping.of({**attrs, "adc_bits": 8}, (1, 300, 100))
    assert (narrow.adc_max, narrow.adc_lossless) == (255, False)


def test_packed_layer() -> None:
    """2 groups of 10×6 weights on 4×8 arrays, 4-bit weights in 1-bit cells: 3 slices, 2 outputs per array.
    Three blocks hold outputs {0, 1}, {1} and {6, 8} (global indices): 5 block outputs, 4 covered, so
    5·2 − 4 = 6 digital merges; the dense tiling would need 2 groups × 3 × 3 tiles × 2 signs = 36 arrays."""
    col_map = np.array([[0, 1], [1, -1], [6, 8]], dtype=np.int64)
    attrs = {"layer": "conv", "xbar_rows": 4, "xbar_cols": 8, "weight_bits": 4, "input_bits": 6,
             "input_signed": True, "cell_bits": 1, "dac_bits": 2, "adc_bits": 3, "encoding": "differential",
             "groups": 2, "row_tiles": 3, "col_tiles": 3, "weight_slices": 3, "arrays": 6, "packing": "compact",
             "dense_arrays": 36, "block_outputs": 5, "max_block_outputs": 2, "covered_outputs": 4}
    mapping = CrossbarMapping.of(attrs, (2, 10, 6))
    assert mapping.is_packed and mapping.blocks == 3
    assert (mapping.weight_slices, mapping.weights_per_array_row) == (3, 2)
    assert (mapping.arrays, mapping.dense_arrays) == (6, 36)
    assert (mapping.block_outputs, mapping.max_block_outputs, mapping.covered_outputs) == (5, 2, 4)
    assert mapping.merges == 6
    assert mapping.used_columns == 5 * 2 * 3
    assert mapping.max_columns_per_array == 2 * 3
    assert mapping.input_cycles == 3 and mapping.input_offset == 32
    assert mapping.max_column_sum == 4 * 3 * 1 == 12
    assert (mapping.adc_max, mapping.adc_lossless) == (7, False)
    dense = CrossbarMapping.of({**attrs, "packing": "dense", "arrays": 36}, (2, 10, 6))
    assert dense.packed(col_map) == mapping
    assert {key: attrs[key] for key in mapping.attrs()} == mapping.attrs()


def test_offset_encoded_layer() -> None:
    """3 groups of 5×7 weights on 8×16 arrays, 6-bit weights with an offset in 3-bit cells: 6 magnitude bits →
    2 slices, 8 outputs per array, one array per group, nothing to merge; a 4-bit DAC feeds 4-bit inputs in
    one cycle, and a column can sum 8·15·7 = 840, far above a 5-bit ADC."""
    attrs = {"layer": "dw", "xbar_rows": 8, "xbar_cols": 16, "weight_bits": 6, "input_bits": 4,
             "input_signed": True, "cell_bits": 3, "dac_bits": 4, "adc_bits": 5, "encoding": "offset",
             "groups": 3, "row_tiles": 1, "col_tiles": 1, "weight_slices": 2, "arrays": 3}
    mapping = CrossbarMapping.of(attrs, (3, 5, 7))
    assert (mapping.signs, mapping.weight_slices, mapping.weights_per_array_row) == (1, 2, 8)
    assert (mapping.row_tiles, mapping.col_tiles, mapping.arrays) == (1, 1, 3)
    assert mapping.input_cycles == 1 and mapping.input_offset == 8
    assert mapping.max_column_sum == 840
    assert (mapping.adc_max, mapping.adc_lossless) == (31, False)
    assert mapping.used_columns == 3 * 7 * 2
    assert mapping.max_columns_per_array == 7 * 2
    assert mapping.merges == 0


def test_lowered_mapping_agrees_with_the_target() -> None:
    """Lowering's constructor reads the target: the widths-only figures are the target's own."""
    chip = Target(xbar_rows=64, xbar_cols=32, weight_bits=6, cell_bits=1, dac_bits=2, encoding="offset", adc_bits=7)
    mapping = CrossbarMapping.lowered(chip, (2, 100, 40), input_signed=True)
    assert (mapping.signs, mapping.weight_slices, mapping.input_cycles) == (chip.signs, chip.weight_slices,
                                                                           chip.input_cycles)
    assert (mapping.max_column_sum, mapping.adc_max, mapping.adc_lossless) == (chip.max_column_sum, chip.adc_max,
                                                                               chip.adc_is_lossless)
    assert mapping.weights_per_array_row == chip.weights_per_array_row == 5
    assert (mapping.row_tiles, mapping.col_tiles, mapping.arrays) == (2, 8, 2 * 2 * 8)
    assert CrossbarMapping.of({"layer": "x", **mapping.attrs()}, (2, 100, 40)) == mapping


def test_stated_figures_that_disagree_are_refused() -> None:
    attrs = {"layer": "fc", "xbar_rows": 128, "xbar_cols": 128, "weight_bits": 8, "input_bits": 8,
             "input_signed": False, "cell_bits": 2, "dac_bits": 1, "adc_bits": 9, "encoding": "differential",
             "groups": 1, "row_tiles": 2, "col_tiles": 4, "weight_slices": 4, "arrays": 24}
    with pytest.raises(ValueError, match="row_tiles = 2.*give 3"):
        CrossbarMapping.of(attrs, (1, 300, 100))
