"""How a weight matrix is laid onto crossbar arrays: tiles, slices, arrays, and the figures of a mapping.

A layer's weights are [G, K, M] (groups, rows = input features, columns = outputs). Each group is tiled
separately: K into row tiles of `xbar_rows`; each weight's magnitude is split into `weight_slices`
cells of `cell_bits` that sit in neighbouring columns of one array, so an array holds
`xbar_cols // weight_slices` outputs; a differential pair doubles the arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backends.target import Target


@dataclass(frozen=True)
class MvmPlan:
    groups: int
    rows: int          # K per group
    outputs: int       # M per group
    row_tiles: int
    col_tiles: int
    weight_slices: int
    signs: int

    @property
    def arrays(self) -> int:
        return self.groups * self.row_tiles * self.col_tiles * self.signs


def plan_mvm(target: Target, groups: int, rows: int, outputs: int) -> MvmPlan:
    per_array = target.weights_per_array_row
    return MvmPlan(groups, rows, outputs, -(-rows // target.xbar_rows), -(-outputs // per_array),
                   target.weight_slices, target.signs)


def weight_levels(weights: np.ndarray, weight_bits: int, cell_bits: int, slices: int,
                  encoding: str) -> list[np.ndarray]:
    """Per sign array, the cell levels [slices, ...weights.shape] (uint8, uint16 for cells over 8 bits) that
    encode integer weights.

    Differential: |w| of the positive part on one array, of the negative part on the other.
    Offset: w + 2^(weight_bits−1) on one array (the offset is removed digitally).
    """
    wide = weights.astype(np.int64)
    if encoding == "differential":
        magnitudes = [np.maximum(wide, 0), np.maximum(-wide, 0)]
    else:
        magnitudes = [wide + 2 ** (weight_bits - 1)]
    mask = (1 << cell_bits) - 1
    dtype = np.uint8 if cell_bits <= 8 else np.uint16  # the target allows cells up to 16 bits
    return [np.stack([(mag >> (cell_bits * s)) & mask for s in range(slices)]).astype(dtype)
            for mag in magnitudes]


def nonzero_cells(weights: np.ndarray, weight_bits: int, cell_bits: int, slices: int, encoding: str) -> int:
    """Cells with a non-zero level over all arrays of the mapping (for utilisation), from the histogram
    of weight values, so a 100 M-weight layer costs one np.unique."""
    values, counts = np.unique(weights.astype(np.int64), return_counts=True)
    cells_per_value = [sum(int(np.count_nonzero(level)) for level in
                           weight_levels(np.array([v]), weight_bits, cell_bits, slices, encoding))
                       for v in values]
    return int(np.dot(counts, cells_per_value)) if len(values) else 0


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
    per_array = attrs["xbar_cols"] // attrs["weight_slices"]
    return [(group, np.arange(r, min(r + attrs["xbar_rows"], k)), np.arange(c, min(c + per_array, m)))
            for group in range(groups) for r in range(0, k, attrs["xbar_rows"]) for c in range(0, m, per_array)]


def array_occupancy(weights: np.ndarray, attrs: dict, row_map: np.ndarray | None = None,
                    col_map: np.ndarray | None = None) -> np.ndarray:
    """Fraction of cells with a non-zero level in every array (sign arrays of a pair one after the other)."""
    cells = attrs["xbar_rows"] * attrs["xbar_cols"]
    occupancy = []
    for group, rows, cols in array_blocks(weights.shape, attrs, row_map, col_map):
        block = weights[group][np.ix_(rows, cols)]
        for level in weight_levels(block, attrs["weight_bits"], attrs["cell_bits"], attrs["weight_slices"],
                                   attrs["encoding"]):
            occupancy.append(np.count_nonzero(level) / cells)
    return np.array(occupancy)


def occupancy_histogram(occupancy: np.ndarray, bins: int = 10) -> list[int]:
    """Arrays per utilisation bin [0, 10%), [10%, 20%), ..., [90%, 100%]."""
    return np.histogram(occupancy, bins=bins, range=(0.0, 1.0))[0].astype(int).tolist()
