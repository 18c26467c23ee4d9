"""How a weight matrix is laid onto crossbar arrays: tiles, slices, arrays, and the figures of a mapping
(non-zero cells and every array's utilisation, by table look-up of a code per weight).

A layer's weights are [G, K, M] (groups, rows = input features, columns = outputs). Each group is tiled
separately: K into row tiles of `xbar_rows`; each weight's magnitude is split into `weight_slices`
cells of `cell_bits` that sit in neighbouring columns of one array, so an array holds
`xbar_cols // weight_slices` outputs; a differential pair doubles the arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rcc.backends.target import Target


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


def cell_codes(weights: np.ndarray, attrs: dict) -> tuple[np.ndarray, np.ndarray]:
    """(codes, table): an unsigned code per weight, same shape, and table[sign, code] the cells of that sign
    array the weight holds at a non-zero level. Looking codes up beats slicing 100 M weights into levels."""
    slices = attrs["weight_slices"]
    if weights.dtype.kind == "f":  # float mode: a non-zero weight fills its slices on one array of the pair
        codes = ((weights > 0) + 2 * (weights < 0)).astype(np.uint8)  # 0 zero, 1 positive, 2 negative
        table = [[0, slices, 0], [0, 0, slices]] if attrs["encoding"] == "differential" else [[0, slices, slices]]
        return codes, np.array(table, dtype=np.uint8)
    # Every value of the weights' integer type, in the order of its unsigned view, so that view is the code.
    unsigned = np.dtype(f"u{weights.dtype.itemsize}")
    values = np.arange(np.iinfo(unsigned).max + 1, dtype=np.int64).astype(unsigned).view(weights.dtype)
    levels = weight_levels(values, attrs["weight_bits"], attrs["cell_bits"], slices, attrs["encoding"])
    return weights.view(unsigned), np.stack([np.count_nonzero(level, axis=0) for level in levels]).astype(np.uint8)


def tile_occupancy(codes: np.ndarray, table: np.ndarray, attrs: dict) -> np.ndarray:
    """[signs, G, row tiles, col tiles]: utilisation of every array of the dense tiling."""
    per_array = attrs["xbar_cols"] // attrs["weight_slices"]
    used = [sum_runs(sum_runs(np.take(per_sign, codes), 1, attrs["xbar_rows"]), 2, per_array)
            for per_sign in table]
    return np.stack(used) / (attrs["xbar_rows"] * attrs["xbar_cols"])


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
    return used.reshape(-1) / (attrs["xbar_rows"] * attrs["xbar_cols"])


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
