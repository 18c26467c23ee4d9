"""The crossbar arrays of one `mvm` instruction: programmed conductance levels, bit-serial inputs, ADCs.

Integer mode, per array and per input bit-slice (`dac_bits` bits of the input at a time, `input_cycles`
of them): every column sums row_input × cell_level; the ADC converts that sum and saturates at
2^adc_bits − 1; shift-and-add merges the weight slices (2^(cell_bits·s)) and the input slices
(2^(dac_bits·k)); the row tiles' partial sums and the sign arrays are merged digitally.

Signed inputs enter the arrays in offset binary (x + 2^(B−1), B = input_bits) and signed weights as a
differential pair (|w⁺| and |w⁻| on two arrays) or with an offset (w + 2^(b−1) on one array); the
offsets are removed digitally with exact correction terms, so the result is the integer product x·W.

Two exact paths compute this:
- `sliced`: simulates every input slice × weight slice × sign array, with ADC saturation. Column sums
  are float32 matmuls of small integers: each is ≤ xbar_rows·(2^dac_bits−1)·(2^cell_bits−1) < 2^24
  (the target refuses larger), so float32 holds them exactly.
- `merged`: when the ADC is lossless no column sum can saturate, and the shift-and-add of the slices is
  by construction the integer product of each array's block; it computes each row tile's block product
  directly (float32 when xbar_rows·max|x_u|·max|w| < 2^24, else float64) and sums the row tiles in
  float64 (< 2^53). Tests prove both paths equal an int64 reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from backends.mapping import weight_levels

CHUNK_ELEMENTS = 1 << 25  # bound on the temporaries of one step (elements)


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

    @property
    def arrays(self) -> int:
        return self.groups * self.row_tiles * self.col_tiles * self.signs

    @property
    def used_columns(self) -> int:
        """Columns with cells, over all arrays (each output uses `weight_slices` columns per sign array)."""
        return self.groups * self.row_tiles * self.signs * self.m * self.weight_slices

    @property
    def max_columns_per_array(self) -> int:
        """Columns with cells in the fullest array: whole outputs only, so `cols % weight_slices` stay empty."""
        return min(self.cols // self.weight_slices * self.weight_slices, self.m * self.weight_slices)


class CrossbarGroup:
    """The arrays holding one layer's weights [G, K, M], and their execution."""

    def __init__(self, weights: np.ndarray, attrs: dict) -> None:
        self.weights = weights
        self.attrs = attrs
        self.integer = weights.dtype.kind == "i"
        groups, k, m = weights.shape
        self.geometry = ArrayGeometry(attrs["xbar_rows"], attrs["xbar_cols"], groups, k, m, attrs["row_tiles"],
                                      attrs["col_tiles"], attrs["weight_slices"],
                                      2 if attrs["encoding"] == "differential" else 1,
                                      math.ceil(attrs["input_bits"] / attrs["dac_bits"]))
        self.input_offset = 2 ** (attrs["input_bits"] - 1) if attrs["input_signed"] else 0
        self.weight_offset = 2 ** (attrs["weight_bits"] - 1) if attrs["encoding"] == "offset" else 0
        self.adc_max = 2 ** attrs["adc_bits"] - 1
        max_column_sum = attrs["xbar_rows"] * (2 ** attrs["dac_bits"] - 1) * (2 ** attrs["cell_bits"] - 1)
        self.adc_lossless = max_column_sum <= self.adc_max
        if self.integer:
            self.weight_column_sums = weights.astype(np.int64).sum(axis=1)  # [G, M], for the input offset

    # ----- layout helpers
    def _tiled_inputs(self, x: np.ndarray, group: int) -> np.ndarray:
        """Group `group`'s slice of x [P, G·K] padded to [P, row_tiles, rows] (padded rows get no input)."""
        g = self.geometry
        block = x[:, group * g.k:(group + 1) * g.k]
        padded = np.zeros((x.shape[0], g.row_tiles * g.rows), dtype=block.dtype)
        padded[:, :g.k] = block
        return padded.reshape(x.shape[0], g.row_tiles, g.rows)

    def _tiled_weights(self, matrix: np.ndarray, dtype) -> np.ndarray:
        """[K, N] padded to [row_tiles, rows, N]."""
        g = self.geometry
        padded = np.zeros((g.row_tiles * g.rows, matrix.shape[1]), dtype=dtype)
        padded[:g.k] = matrix
        return padded.reshape(g.row_tiles, g.rows, matrix.shape[1])

    def _chunk(self, per_vector: int) -> int:
        return max(1, CHUNK_ELEMENTS // max(1, per_vector))

    # ----- execution
    def run(self, x: np.ndarray, sliced: bool | None = None) -> np.ndarray:
        """The layer's accumulators [P, G·M]: int64 in integer mode, float32 in float mode."""
        if not self.integer:
            return self._run_float(x)
        use_sliced = (not self.adc_lossless) if sliced is None else sliced
        outputs = [self._run_sliced(x, g) if use_sliced else self._run_merged(x, g)
                   for g in range(self.geometry.groups)]
        return np.concatenate(outputs, axis=1) if len(outputs) > 1 else outputs[0]

    def _run_float(self, x: np.ndarray) -> np.ndarray:
        """Ideal analog arrays: each row tile's block product in float64, tiles summed digitally."""
        outputs = []
        for group in range(self.geometry.groups):
            tiles = self._tiled_inputs(x.astype(np.float64), group).transpose(1, 0, 2)   # [T, P, R]
            weights = self._tiled_weights(self.weights[group].astype(np.float64), np.float64)
            outputs.append(np.matmul(tiles, weights).sum(axis=0))
        return np.concatenate(outputs, axis=1).astype(np.float32)

    def _run_merged(self, x: np.ndarray, group: int) -> np.ndarray:
        g = self.geometry
        x_max = float(np.abs(x).max(initial=0))
        w_max = float(np.abs(self.weights[group]).max(initial=0))
        dtype = np.float32 if g.rows * x_max * w_max < 2.0 ** 24 else np.float64
        weights = self._tiled_weights(self.weights[group].astype(dtype), dtype)       # [T, R, M]
        out = np.empty((x.shape[0], g.m), dtype=np.int64)
        step = self._chunk(g.row_tiles * g.m)
        for start in range(0, x.shape[0], step):
            tiles = self._tiled_inputs(x[start:start + step].astype(dtype), group).transpose(1, 0, 2)
            partial = np.matmul(tiles, weights)                                         # [T, Pc, M] exact
            out[start:start + step] = partial.sum(axis=0, dtype=np.float64).astype(np.int64)
        return out

    def _run_sliced(self, x: np.ndarray, group: int) -> np.ndarray:
        g, attrs = self.geometry, self.attrs
        dac_mask = (1 << attrs["dac_bits"]) - 1
        levels = weight_levels(self.weights[group], attrs["weight_bits"], attrs["cell_bits"], g.weight_slices,
                               attrs["encoding"])                                       # per sign [S, K, M]
        arrays = [self._tiled_weights(level.transpose(1, 0, 2).reshape(g.k, g.weight_slices * g.m), np.float32)
                  for level in levels]                                                  # [T, R, S·M]
        input_weights = 2.0 ** (attrs["dac_bits"] * np.arange(g.input_cycles))
        slice_weights = 2.0 ** (attrs["cell_bits"] * np.arange(g.weight_slices))
        out = np.empty((x.shape[0], g.m), dtype=np.int64)
        step = self._chunk(g.row_tiles * g.input_cycles * g.weight_slices * g.m)
        for start in range(0, x.shape[0], step):
            unsigned = x[start:start + step, group * g.k:(group + 1) * g.k].astype(np.int64) + self.input_offset
            padded = np.zeros((unsigned.shape[0], g.row_tiles * g.rows), dtype=np.int64)
            padded[:, :g.k] = unsigned
            # [T, cycles·Pc, R]: bit-slice k of every input vector, per row tile
            slices = np.stack([(padded >> (attrs["dac_bits"] * k)) & dac_mask for k in range(g.input_cycles)])
            slices = slices.reshape(g.input_cycles, -1, g.row_tiles, g.rows).transpose(2, 0, 1, 3)
            slices = slices.reshape(g.row_tiles, -1, g.rows).astype(np.float32)
            totals = []
            for array in arrays:
                column_sums = np.matmul(slices, array)                                   # [T, cycles·Pc, S·M]
                converted = np.minimum(column_sums, self.adc_max)                      # the ADC saturates
                converted = converted.reshape(g.row_tiles, g.input_cycles, -1, g.weight_slices, g.m)
                totals.append(np.einsum("tkpsm,k,s->pm", converted, input_weights, slice_weights,
                                        optimize=True))
            merged = totals[0] - totals[1] if g.signs == 2 else totals[0]
            acc = np.rint(merged).astype(np.int64)
            if self.weight_offset:
                acc -= self.weight_offset * unsigned.sum(axis=1, keepdims=True)
            if self.input_offset:
                acc -= self.input_offset * self.weight_column_sums[group][None, :]
            out[start:start + step] = acc
        return out
