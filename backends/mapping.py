"""How a weight matrix is laid onto crossbar arrays: the one value holding every figure of a layer's mapping
(`CrossbarMapping`), the cells of a weight, and the figures of a mapping's content (non-zero cells and every
array's utilisation, by table look-up of a code per weight).

A layer's weights are [G, K, M] (groups, rows = input features, columns = outputs). Each group is tiled
separately: K into row tiles of `xbar_rows`; each weight's magnitude is split into `weight_slices`
cells of `cell_bits` that sit in neighbouring columns of one array, so an array holds
`xbar_cols // weight_slices` outputs; a differential pair doubles the arrays. A packed layer
(`pack-crossbars`) replaces the tiles by blocks, each holding some rows and outputs of one group.

    mapping = CrossbarMapping.of(op.attrs, weights.shape)        # an `xbar.mvm`'s, or an mvm instruction's
    mapping = CrossbarMapping.lowered(target, (G, K, M), input_signed=True)   # what lowering will write
    mapping.arrays, mapping.input_cycles, mapping.adc_lossless, mapping.merges, ...

Widths-only figures (slices, signs, input cycles, column sums, lossless ADC) come from `rcc.ir.xbar_figures`,
which `Target` calls too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from rcc.backends.target import Target
from rcc.ir import xbar_figures

# The `xbar.mvm` attributes a mapping is rebuilt from, and those that follow from them and the weights' shape.
_WIDTHS = ("xbar_rows", "xbar_cols", "weight_bits", "input_bits", "input_signed", "cell_bits", "dac_bits",
           "adc_bits", "encoding")
_BLOCK_FIGURES = ("block_outputs", "max_block_outputs", "covered_outputs")


@dataclass(frozen=True)
class CrossbarMapping:
    """Every figure of how one `xbar.mvm`'s weights [G, K, M] sit on arrays: the widths, the weights' shape,
    the packed blocks' figures (`blocks` None for the dense tiling), and as properties all that follows."""

    xbar_rows: int
    xbar_cols: int
    weight_bits: int
    input_bits: int
    input_signed: bool
    cell_bits: int
    dac_bits: int
    adc_bits: int
    encoding: str
    groups: int
    rows: int                   # K: weight rows (input features) per group
    outputs: int                # M: outputs per group
    blocks: int | None = None   # packed: array blocks (a differential pair counts once); None: dense tiling
    block_outputs: int = 0      # packed: Σ over blocks of the outputs each holds
    max_block_outputs: int = 0  # packed: outputs of the fullest block
    covered_outputs: int = 0    # packed: outputs held by at least one block

    # ---- construction ----------------------------------------------------------------------------------

    @classmethod
    def of(cls, attrs: dict[str, Any], weights_shape: tuple[int, ...] | list[int]) -> CrossbarMapping:
        """The mapping an `xbar.mvm` (or an `mvm` instruction) with these attributes states for weights
        [G, K, M]; ValueError when a derived attribute it states disagrees."""
        groups, rows, outputs = (int(n) for n in weights_shape)
        widths = {key: attrs[key] for key in _WIDTHS}
        packed = attrs.get("packing", "dense") != "dense"
        blocks = attrs["arrays"] // xbar_figures.sign_arrays(attrs["encoding"]) if packed else None
        mapping = cls(**widths, groups=groups, rows=rows, outputs=outputs, blocks=blocks,
                      **{key: attrs.get(key, 0) for key in _BLOCK_FIGURES})
        stated = mapping.derived_attrs()
        wrong = next((key for key in stated if key in attrs and attrs[key] != stated[key]), None)
        if wrong is not None:
            raise ValueError(f"mvm {attrs.get('layer', '?')!r}: {wrong} = {attrs[wrong]}, but weights "
                             f"{list(weights_shape)} with these widths give {stated[wrong]}")
        return mapping

    @classmethod
    def lowered(cls, target: Target, weights_shape: tuple[int, int, int], input_signed: bool) -> CrossbarMapping:
        """The dense mapping of weights [G, K, M] on `target` (what `lower-to-xbar` writes)."""
        groups, rows, outputs = weights_shape
        return cls(target.xbar_rows, target.xbar_cols, target.weight_bits, target.input_bits, input_signed,
                   target.cell_bits, target.dac_bits, target.effective_adc_bits, target.encoding,
                   groups, rows, outputs)

    def packed(self, col_map: np.ndarray) -> CrossbarMapping:
        """This layer's mapping onto the blocks of `col_map` [blocks, weights_per_array_row] (−1 padded)."""
        used = col_map >= 0
        return dataclasses.replace(self, blocks=col_map.shape[0], block_outputs=int(used.sum()),
                                   max_block_outputs=int(used.sum(axis=1).max(initial=0)),
                                   covered_outputs=int(np.unique(col_map[used]).size))

    def attrs(self) -> dict[str, Any]:
        """The `xbar.mvm` attributes that state this mapping (packing mode and dense_arrays aside)."""
        widths = {key: getattr(self, key) for key in _WIDTHS}
        blocks = {key: getattr(self, key) for key in _BLOCK_FIGURES} if self.is_packed else {}
        return {**widths, **self.derived_attrs(), **blocks}

    def derived_attrs(self) -> dict[str, int]:
        """The attributes that follow from the widths and the weights' shape."""
        return {"groups": self.groups, "row_tiles": self.row_tiles, "col_tiles": self.col_tiles,
                "weight_slices": self.weight_slices, "arrays": self.arrays}

    # ---- figures ---------------------------------------------------------------------------------------

    @property
    def is_packed(self) -> bool:
        return self.blocks is not None

    @property
    def signs(self) -> int:
        """Arrays per weight block: 2 for a differential pair, 1 for offset encoding."""
        return xbar_figures.sign_arrays(self.encoding)

    @property
    def weight_slices(self) -> int:
        return xbar_figures.weight_slices(self.weight_bits, self.cell_bits, self.encoding)

    @property
    def weights_per_array_row(self) -> int:
        """Outputs one array holds side by side (L)."""
        return xbar_figures.weights_per_array_row(self.xbar_cols, self.weight_slices)

    def _tiling(self) -> tuple[int, int, int]:
        return xbar_figures.dense_tiling(self.groups, self.rows, self.outputs, self.xbar_rows, self.xbar_cols,
                                         self.weight_slices)

    @property
    def row_tiles(self) -> int:
        """Row tiles of the dense tiling of one group."""
        return self._tiling()[0]

    @property
    def col_tiles(self) -> int:
        """Column tiles of the dense tiling of one group."""
        return self._tiling()[1]

    @property
    def dense_arrays(self) -> int:
        """Arrays of the dense tiling (the packed layer's before packing)."""
        return xbar_figures.array_count(self._tiling()[2], self.encoding)

    @property
    def arrays(self) -> int:
        """Arrays the layer uses: its packed blocks' or its dense tiling's, sign arrays included."""
        return xbar_figures.array_count(self.blocks, self.encoding) if self.is_packed else self.dense_arrays

    @property
    def cells(self) -> int:
        """Cells over all the layer's arrays."""
        return self.arrays * self.cells_per_array

    @property
    def cells_per_array(self) -> int:
        return self.xbar_rows * self.xbar_cols

    @property
    def weights(self) -> int:
        """Weights of the layer (G·K·M): its multiply-accumulates per input vector."""
        return self.groups * self.rows * self.outputs

    @property
    def input_cycles(self) -> int:
        return xbar_figures.input_cycles(self.input_bits, self.dac_bits)

    @property
    def input_offset(self) -> int:
        """What signed inputs are shifted by to enter the arrays in offset binary (0 when unsigned)."""
        return 2 ** (self.input_bits - 1) if self.input_signed else 0

    @property
    def max_column_sum(self) -> int:
        return xbar_figures.max_column_sum(self.xbar_rows, self.dac_bits, self.cell_bits)

    @property
    def adc_max(self) -> int:
        return xbar_figures.adc_max(self.adc_bits)

    @property
    def adc_lossless(self) -> bool:
        """Whether no column sum can saturate the ADC."""
        return self.max_column_sum <= self.adc_max

    @property
    def used_columns(self) -> int:
        """Columns with cells, over all arrays (each output uses `weight_slices` columns per sign array)."""
        outputs = self.block_outputs if self.is_packed else self.groups * self.row_tiles * self.outputs
        return outputs * self.signs * self.weight_slices

    @property
    def max_columns_per_array(self) -> int:
        """Columns holding cells in the fullest array; when `xbar_cols` is not a multiple of the slices, the
        last `xbar_cols mod slices` columns of every array stay empty."""
        outputs = self.max_block_outputs if self.is_packed else self.outputs
        return min(self.weights_per_array_row, outputs) * self.weight_slices

    @property
    def merges(self) -> int:
        """Digital additions per input vector that merge row tiles (or blocks) and sign arrays."""
        if self.is_packed:
            return max(self.block_outputs * self.signs - self.covered_outputs, 0)
        return (self.row_tiles * self.signs - 1) * self.groups * self.outputs

    @property
    def driven_rows(self) -> int:
        """Rows the DACs drive per input bit-slice over all arrays: every weight row on each column tile and
        sign array; a packed block is taken to fill its array's rows (its row count is not recorded)."""
        if self.is_packed:
            return self.arrays * min(self.xbar_rows, self.rows)
        return self.groups * self.rows * self.col_tiles * self.signs


def weight_levels(weights: np.ndarray, weight_bits: int, cell_bits: int, slices: int,
                  encoding: str) -> list[np.ndarray]:
    """Per sign array, the cell levels [slices, ...weights.shape] (uint8, uint16 for cells over 8 bits) that
    encode integer weights.

    Differential: |w| of the positive part on one array, of the negative part on the other.
    Offset: w + 2^(weight_bits−1) on one array (the offset is removed digitally).
    """
    wide = weights.astype(np.int32)   # at most 16 bits (the target's limit), offset included
    if encoding == "differential":
        magnitudes = [np.maximum(wide, 0), np.maximum(-wide, 0)]
    else:
        magnitudes = [wide + 2 ** (weight_bits - 1)]
    mask = (1 << cell_bits) - 1
    dtype = np.uint8 if cell_bits <= 8 else np.uint16  # the target allows cells up to 16 bits
    per_array = []
    for magnitude in magnitudes:
        levels = np.empty((slices, *weights.shape), dtype=dtype)
        for s in range(slices):
            np.bitwise_and(magnitude >> (cell_bits * s), mask, out=levels[s], casting="unsafe")
        per_array.append(levels)
    return per_array


def array_blocks(weights_shape: tuple[int, int, int], attrs: dict, row_map: np.ndarray | None = None,
                 col_map: np.ndarray | None = None) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(group, rows, outputs) held by every array (pair) of an `xbar.mvm`: its packed blocks, or the dense
    tiles (row tile × column tile) of each group."""
    groups, k, m = weights_shape
    if row_map is not None:
        blocks = []
        for rows, cols in zip(row_map, col_map):
            rows, cols = rows[rows >= 0], cols[cols >= 0]
            group = int(cols[0] // m) if cols.size else 0
            blocks.append((group, rows - group * k, cols - group * m))
        return blocks
    mapping = CrossbarMapping.of(attrs, weights_shape)
    per_array, tile_rows = mapping.weights_per_array_row, mapping.xbar_rows
    return [(group, np.arange(r, min(r + tile_rows, k)), np.arange(c, min(c + per_array, m)))
            for group in range(groups) for r in range(0, k, tile_rows) for c in range(0, m, per_array)]


def cell_codes(weights: np.ndarray, attrs: dict) -> tuple[np.ndarray, np.ndarray]:
    """(codes, table): an unsigned code per weight, same shape, and table[sign, code] the cells of that sign
    array the weight holds at a non-zero level. Looking codes up beats slicing 100 M weights into levels."""
    mapping = CrossbarMapping.of(attrs, weights.shape)
    slices = mapping.weight_slices
    if weights.dtype.kind == "f":  # float mode: a non-zero weight fills its slices on one array of the pair
        codes = ((weights > 0) + 2 * (weights < 0)).astype(np.uint8)  # 0 zero, 1 positive, 2 negative
        table = [[0, slices, 0], [0, 0, slices]] if mapping.signs == 2 else [[0, slices, slices]]
        return codes, np.array(table, dtype=np.uint8)
    # Every value of the weights' integer type, in the order of its unsigned view, so that view is the code.
    unsigned = np.dtype(f"u{weights.dtype.itemsize}")
    values = np.arange(np.iinfo(unsigned).max + 1, dtype=np.int64).astype(unsigned).view(weights.dtype)
    levels = weight_levels(values, mapping.weight_bits, mapping.cell_bits, slices, mapping.encoding)
    return weights.view(unsigned), np.stack([np.count_nonzero(level, axis=0) for level in levels]).astype(np.uint8)


def tile_occupancy(codes: np.ndarray, table: np.ndarray, attrs: dict) -> np.ndarray:
    """[signs, G, row tiles, col tiles]: utilisation of every array of the dense tiling."""
    mapping = CrossbarMapping.of(attrs, codes.shape)
    used = [sum_runs(sum_runs(np.take(per_sign, codes), 1, mapping.xbar_rows), 2, mapping.weights_per_array_row)
            for per_sign in table]
    return np.stack(used) / mapping.cells_per_array


def block_occupancy(codes: np.ndarray, table: np.ndarray, attrs: dict, row_map: np.ndarray,
                    col_map: np.ndarray) -> np.ndarray:
    """Utilisation of every packed array (sign arrays of a pair one after the other)."""
    groups, rows, outputs = codes.shape
    flat = codes.reshape(groups, rows * outputs)
    code_counts = [np.bincount(np.take(flat[group], block_rows[:, None] * outputs + block_cols).ravel(),
                               minlength=table.shape[1])
                   for group, block_rows, block_cols in array_blocks(codes.shape, attrs, row_map, col_map)]
    if not code_counts:
        return np.zeros(0)
    used = np.stack(code_counts) @ table.T.astype(np.int64)   # [blocks, signs]
    return used.reshape(-1) / CrossbarMapping.of(attrs, codes.shape).cells_per_array


def sum_runs(values: np.ndarray, axis: int, run: int) -> np.ndarray:
    """int64 sums of consecutive runs of `run` entries along `axis`, the last run possibly shorter (a
    reshape for the whole runs: far faster than `np.add.reduceat` on 100 M cells)."""
    length = values.shape[axis]
    whole = length // run * run
    index = [slice(None)] * values.ndim
    index[axis] = slice(0, whole)
    head = values[tuple(index)]
    sums = head.reshape(head.shape[:axis] + (whole // run, run) + head.shape[axis + 1:]).sum(axis=axis + 1,
                                                                                             dtype=np.int64)
    if whole < length:
        index[axis] = slice(whole, length)
        tail = values[tuple(index)].sum(axis=axis, keepdims=True, dtype=np.int64)
        sums = np.concatenate([sums, tail], axis=axis)
    return sums


def array_occupancy(weights: np.ndarray, attrs: dict, row_map: np.ndarray | None = None,
                    col_map: np.ndarray | None = None) -> np.ndarray:
    """Fraction of cells with a non-zero level in every array (sign arrays of a pair one after the other):
    the packed blocks' when maps are given, the dense tiling's otherwise."""
    codes, table = cell_codes(weights, attrs)
    if row_map is not None:
        return block_occupancy(codes, table, attrs, row_map, col_map)
    return np.moveaxis(tile_occupancy(codes, table, attrs), 0, -1).reshape(-1)


def nonzero_cells(weights: np.ndarray, attrs: dict) -> int:
    """Cells with a non-zero level over all arrays of the mapping (for utilisation)."""
    codes, table = cell_codes(weights, attrs)
    return int(sum(np.take(per_sign, codes).sum(dtype=np.int64) for per_sign in table))


def occupancy_histogram(occupancy: np.ndarray, bins: int = 10) -> list[int]:
    """Arrays per utilisation bin [0, 10%), [10%, 20%), ..., [90%, 100%]."""
    return np.histogram(occupancy, bins=bins, range=(0.0, 1.0))[0].astype(int).tolist()
