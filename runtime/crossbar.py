"""The crossbar arrays of one `mvm` instruction: programmed conductance levels, bit-serial inputs, ADCs.

Integer mode, per array and per input bit-slice (`dac_bits` bits of the input at a time, `input_cycles`
of them): every column sums row_input × cell_level; the ADC converts that sum v and saturates:
ADC(v) = min(v, A) with A = 2^adc_bits − 1; shift-and-add merges the weight slices (2^(cell_bits·s))
and the input slices (2^(dac_bits·k)); the row tiles' partial sums and the sign arrays are merged
digitally. Signed inputs enter the arrays in offset binary (x + 2^(B−1), B = input_bits), signed
weights as a differential pair (|w⁺| and |w⁻| on two arrays) or with an offset (w + 2^(b−1) on one
array); the offsets are removed digitally with exact correction terms.

How the machine computes that, exactly and fast: since ADC(v) = v − max(v − A, 0), the shift-and-add
of the converted sums equals the shift-and-add of the raw sums, which is the exact integer product x·W
(the offsets' corrections make it so), minus the shift-and-add of the saturation excess max(v − A, 0).
So the layer's result is
    exact product (one float32 matmul when every row's ‖x‖₁·max|w| < 2^24, which bounds every partial
    sum; else float32 matmuls over row chunks short enough for that bound, summed in float64)
  − Σ over arrays, input slices and columns of sign · 2^(dac_bits·k) · 2^(cell_bits·s) · max(v − A, 0),
and the excess is computed only where it can be non-zero: for columns whose largest possible sum
(2^dac_bits − 1)·Σ_rows level exceeds A, and for (vector, row tile, slice) triples whose active input
total times the largest cell level exceeds A. Those column sums are float32 matmuls of small integers,
each ≤ xbar_rows·(2^dac_bits−1)·(2^cell_bits−1) < 2^24 (the target refuses larger), so exact. With a
lossless ADC nothing can exceed A and the result is the exact product. Tests compare this with a naive
slice-by-slice simulation and with an int64 reference.

Float mode: ideal analog arrays, the same product in float32 (the model's precision).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rcc.backends.mapping import array_blocks, weight_levels

CHUNK_ELEMENTS = 1 << 24  # bound on the temporaries of one step (elements)
_EXACT_FLOAT64 = 2.0 ** 53
_EXACT_FLOAT32 = 2.0 ** 24


@dataclass(frozen=True)
class ArrayGeometry:
    rows: int
    cols: int
    groups: int
    k: int            # rows of the weight matrix per group
    m: int            # outputs per group
    row_tiles: int
    col_tiles: int
    weight_slices: int
    signs: int
    input_cycles: int
    blocks: int = 0             # packed: array blocks (0: dense tiling)
    block_outputs: int = 0      # packed: Σ over blocks of the outputs each holds
    max_block_outputs: int = 0  # packed: outputs of the fullest block
    covered_outputs: int = 0    # packed: outputs held by at least one block

    @property
    def arrays(self) -> int:
        if self.blocks:
            return self.blocks * self.signs
        return self.groups * self.row_tiles * self.col_tiles * self.signs

    @property
    def used_columns(self) -> int:
        """Columns with cells, over all arrays (each output uses `weight_slices` columns per sign array)."""
        outputs = self.block_outputs if self.blocks else self.groups * self.row_tiles * self.m
        return outputs * self.signs * self.weight_slices

    @property
    def max_columns_per_array(self) -> int:
        """Columns holding cells in the fullest array; when `cols` is not a multiple of the slices, the
        last `cols mod slices` columns of every array stay empty."""
        outputs = self.max_block_outputs if self.blocks else self.m
        return min(self.cols // self.weight_slices * self.weight_slices, outputs * self.weight_slices)

    @property
    def merges(self) -> int:
        """Digital additions per input vector that merge row tiles (or blocks) and sign arrays."""
        if self.blocks:
            return max(self.block_outputs * self.signs - self.covered_outputs, 0)
        return (self.row_tiles * self.signs - 1) * self.groups * self.m


def geometry_of(attrs: dict, k: int, m: int) -> ArrayGeometry:
    """The arrays an `mvm` with these attributes uses for weights [G, k, m]."""
    return ArrayGeometry(attrs["xbar_rows"], attrs["xbar_cols"], attrs["groups"], k, m, attrs["row_tiles"],
                         attrs["col_tiles"], attrs["weight_slices"], 2 if attrs["encoding"] == "differential" else 1,
                         math.ceil(attrs["input_bits"] / attrs["dac_bits"]),
                         attrs["arrays"] // (2 if attrs["encoding"] == "differential" else 1)
                         if attrs.get("packing", "dense") != "dense" else 0,
                         attrs.get("block_outputs", 0), attrs.get("max_block_outputs", 0),
                         attrs.get("covered_outputs", 0))


def grouped_rows(x: np.ndarray, groups: int) -> np.ndarray:
    """x [P, G·K] as [G, P, K]."""
    return x.reshape(x.shape[0], groups, -1).transpose(1, 0, 2)


def ungrouped(out: np.ndarray) -> np.ndarray:
    """[G, P, M] as [P, G·M]."""
    return out.transpose(1, 0, 2).reshape(out.shape[1], -1)


class CrossbarGroup:
    """The arrays holding one layer's weights [G, K, M], and their execution. A packed layer comes with
    `row_map`/`col_map`: each array block's input rows (gathered from x) and outputs (scattered back)."""

    def __init__(self, weights: np.ndarray, attrs: dict, row_map: np.ndarray | None = None,
                 col_map: np.ndarray | None = None) -> None:
        self.weights = weights
        self.attrs = attrs
        self.integer = weights.dtype.kind == "i"
        groups, k, m = weights.shape
        self.geometry = geometry_of(attrs, k, m)
        self.blocks = None if row_map is None else array_blocks(weights.shape, attrs, row_map, col_map)
        self.input_offset = 2 ** (attrs["input_bits"] - 1) if attrs["input_signed"] else 0
        self.adc_max = 2 ** attrs["adc_bits"] - 1
        max_column_sum = attrs["xbar_rows"] * (2 ** attrs["dac_bits"] - 1) * (2 ** attrs["cell_bits"] - 1)
        self.adc_lossless = max_column_sum <= self.adc_max
        self.matrix = weights.astype(np.float32)  # programmed once
        self.weight_max = float(np.abs(weights.astype(np.int64)).max(initial=0)) if self.integer else 0.0

    def tiles(self) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """(group, rows, outputs) of every array (pair): the packed blocks, or the dense row tiles (a dense
        row tile's column tiles are taken together: a column's sum never crosses arrays)."""
        if self.blocks is not None:
            return self.blocks
        g = self.geometry
        return [(group, np.arange(start, min(start + g.rows, g.k)), np.arange(g.m))
                for group in range(g.groups) for start in range(0, g.k, g.rows)]

    # ----- execution
    def run(self, x: np.ndarray, sliced: bool | None = None) -> np.ndarray:
        """The layer's accumulators [P, G·M]: int64 in integer mode, float32 in float mode.
        `sliced` forces (True) or skips (False) the saturation analysis; by default it runs when the
        ADC is not lossless."""
        if self.blocks is not None:
            exact = self._block_product(x)
        elif not self.integer:
            return ungrouped(np.matmul(grouped_rows(x, self.geometry.groups), self.matrix))
        else:
            exact = self._exact_product(x)
        if not self.integer:
            return exact
        if (not self.adc_lossless) if sliced is None else sliced:
            exact -= self._saturation_excess(x)
        return exact

    def _block_product(self, x: np.ndarray) -> np.ndarray:
        """Σ over blocks of x[:, rows] · W[rows, outputs], scattered onto the outputs: exact per block in
        float32 when rows·max|x|·max|w| < 2^24 (else float64), summed in float64."""
        g = self.geometry
        x_max = max(abs(float(x.max(initial=0))), abs(float(x.min(initial=0))))
        dtype = np.float32 if not self.integer or g.rows * x_max * self.weight_max < _EXACT_FLOAT32 else np.float64
        total = np.zeros((x.shape[0], g.groups * g.m), dtype=np.float64)
        inputs = x.astype(dtype)
        for group, rows, cols in self.blocks:
            block = self.matrix[group][np.ix_(rows, cols)].astype(dtype, copy=False)
            total[:, group * g.m + cols] += np.matmul(inputs[:, group * g.k + rows], block)
        return total.astype(np.int64) if self.integer else total.astype(np.float32)

    def _exact_product(self, x: np.ndarray) -> np.ndarray:
        """x · W exactly. Any partial sum of a row's products is at most ‖x_row‖₁ · max|w| in magnitude,
        so when that is below 2^24 one float32 matmul is exact whatever order BLAS adds in; otherwise
        float32 matmuls over row chunks short enough for the bound, summed in float64."""
        g = self.geometry
        x_low = int(x.min(initial=0))
        x_max = max(abs(int(x.max(initial=0))), abs(x_low))
        term_max = float(x_max) * self.weight_max
        if g.k * term_max >= _EXACT_FLOAT64:
            product = np.matmul(grouped_rows(x.astype(np.int64), g.groups), self.weights.astype(np.int64))
            return ungrouped(product)
        if term_max >= _EXACT_FLOAT32:  # a single product needs more than float32's 24 bits
            product = np.matmul(grouped_rows(x.astype(np.float64), g.groups), self.weights.astype(np.float64))
            return ungrouped(product).astype(np.int64)
        rows = grouped_rows(x.astype(np.float32), g.groups)
        if g.k * term_max < _EXACT_FLOAT32 or self._largest_l1(rows, x_max, x_low >= 0) * self.weight_max < _EXACT_FLOAT32:
            return ungrouped(np.matmul(rows, self.matrix)).astype(np.int64)
        chunk = max(1, min(g.k, int((_EXACT_FLOAT32 - 1) // term_max))) if term_max else g.k
        total = np.zeros((g.groups, x.shape[0], g.m), dtype=np.float64)
        for start in range(0, g.k, chunk):
            total += np.matmul(rows[:, :, start:start + chunk], self.matrix[:, start:start + chunk])
        return ungrouped(total).astype(np.int64)

    def _largest_l1(self, rows: np.ndarray, x_max: int, nonnegative: bool) -> float:
        """max over vectors of ‖x‖₁, summed in float32 when that is exact (every partial sum an integer
        below 2^24), without the absolute value when no input is negative (unsigned activations)."""
        dtype = np.float32 if self.geometry.k * x_max < _EXACT_FLOAT32 else np.float64
        magnitudes = rows if nonnegative else np.abs(rows)
        return float(magnitudes.sum(axis=2, dtype=dtype).max(initial=0))

    def _saturation_excess(self, x: np.ndarray) -> np.ndarray:
        """Σ sign · 2^(dac·k) · 2^(cell·s) · max(v − A, 0) per vector and output [P, G·M], over arrays."""
        g, attrs = self.geometry, self.attrs
        excess = np.zeros((x.shape[0], g.groups * g.m), dtype=np.float64)
        dac_mask = (1 << attrs["dac_bits"]) - 1
        for group, rows, cols in self.tiles():
            levels = weight_levels(self.weights[group][np.ix_(rows, cols)], attrs["weight_bits"], attrs["cell_bits"],
                                   g.weight_slices, attrs["encoding"])     # per sign array [S, rows, outputs]
            inputs = x[:, group * g.k + rows].astype(np.int64) + self.input_offset
            for sign_index, level in enumerate(levels):
                cells = level.transpose(1, 0, 2).reshape(rows.size, -1)     # column j = s·outputs + i
                peak = dac_mask * cells.sum(axis=0, dtype=np.int64)
                saturable = np.flatnonzero(peak > self.adc_max)             # columns whose sum can exceed A
                if saturable.size == 0:
                    continue
                column_cells = cells[:, saturable].astype(np.float32)
                largest_level = float(column_cells.max())
                # shift-and-add weights of the slices, with the array's sign
                sign = -1.0 if sign_index == 1 else 1.0
                slice_weights = sign * 2.0 ** (attrs["cell_bits"] * np.arange(g.weight_slices))
                outputs = group * g.m + cols
                for cycle in range(g.input_cycles):
                    bits = (inputs >> (attrs["dac_bits"] * cycle)) & dac_mask
                    active = np.flatnonzero(bits.sum(axis=1) * largest_level > self.adc_max)
                    step = max(1, CHUNK_ELEMENTS // cells.shape[1])
                    for start in range(0, active.size, step):
                        chosen = active[start:start + step]
                        sums = np.matmul(bits[chosen].astype(np.float32), column_cells)   # exact column sums
                        over = np.zeros((chosen.size, cells.shape[1]))
                        over[:, saturable] = np.maximum(sums - self.adc_max, 0.0)
                        per_slice = over.reshape(chosen.size, g.weight_slices, cols.size).transpose(0, 2, 1)
                        merged = per_slice @ slice_weights
                        excess[np.ix_(chosen, outputs)] += (2.0 ** (attrs["dac_bits"] * cycle)) * merged
        return np.rint(excess).astype(np.int64)
