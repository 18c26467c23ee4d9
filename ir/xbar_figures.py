"""The figures of a crossbar mapping that follow from bit widths and array sizes alone, one function each.

The target's derived properties (backends/target.py), the crossbar-mapping value (backends/mapping.py)
and the `xbar.mvm` attributes the op table derives (ir/ops/xbar.py) all call these, so every figure
has a single definition. They live in `ir` because it is the lowest layer that needs them.
"""

from __future__ import annotations


def ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def sign_arrays(encoding: str) -> int:
    """Arrays per weight block: 2 for a differential (positive, negative) pair, 1 for offset encoding."""
    return 2 if encoding == "differential" else 1


def magnitude_bits(weight_bits: int, encoding: str) -> int:
    """Bits of a weight's magnitude held in cells: a differential pair holds the sign, an offset does not."""
    return weight_bits - 1 if encoding == "differential" else weight_bits


def weight_slices(weight_bits: int, cell_bits: int, encoding: str) -> int:
    """Neighbouring columns one weight's magnitude is sliced across, `cell_bits` each."""
    return ceil_div(magnitude_bits(weight_bits, encoding), cell_bits)


def weights_per_array_row(xbar_cols: int, slices: int) -> int:
    """Outputs one array holds side by side, each spanning `slices` columns."""
    return xbar_cols // slices


def dense_tiling(groups: int, rows: int, outputs: int, xbar_rows: int, xbar_cols: int, slices: int
                 ) -> tuple[int, int, int]:
    """(row tiles, column tiles, tiles over all groups) of the dense tiling of weights [groups, rows, outputs]."""
    row_tiles = ceil_div(rows, xbar_rows)
    col_tiles = ceil_div(outputs, weights_per_array_row(xbar_cols, slices))
    return row_tiles, col_tiles, groups * row_tiles * col_tiles


def array_count(blocks: int, encoding: str) -> int:
    """Arrays holding `blocks` weight blocks (dense tiles or packed blocks): one per sign array each."""
    return blocks * sign_arrays(encoding)


def input_cycles(input_bits: int, dac_bits: int) -> int:
    """Cycles to feed one input value bit-serially, `dac_bits` per cycle."""
    return ceil_div(input_bits, dac_bits)


def max_column_sum(xbar_rows: int, dac_bits: int, cell_bits: int) -> int:
    """Largest value one column can sum in one cycle: every row at full DAC level and full cell."""
    return xbar_rows * (2**dac_bits - 1) * (2**cell_bits - 1)


def lossless_adc_bits(xbar_rows: int, dac_bits: int, cell_bits: int) -> int:
    """Narrowest ADC that converts every possible column sum without saturating."""
    return max_column_sum(xbar_rows, dac_bits, cell_bits).bit_length()


def adc_max(adc_bits: int) -> int:
    """Largest code an ADC of `adc_bits` outputs; column sums above it saturate to it."""
    return 2**adc_bits - 1
