"""Sparsity-driven crossbar packing: which rows and output columns of a pruned weight matrix share an array.

A layer's weight matrix W [K, M] (rows = input features, columns = outputs) is seen through its boolean
non-zero mask. An array has R rows and holds L = xbar_cols // weight_slices output columns. A packing is a
list of `Block`s; the machine computes y[:, b.cols] += x[:, b.rows] @ W[b.rows][:, b.cols] for every block
b, which equals x @ W exactly when the packing is valid (`check_packing`): every non-zero cell lies in a
block, and no cell lies in two blocks (the blocks that hold a column have disjoint row sets).

Modes of `pack` (deterministic for a given seed):
- `dense`: the plain ⌈K/R⌉×⌈M/L⌉ tiling, all-zero tiles included, since a dense mapping spends them too.
- `compact`: columns in natural order in groups of L; per group, rows all-zero within it are dropped and
  the rest tiled by R (an empty group costs nothing).
- `kmeans`: Lin et al., ASP-DAC 2019, Algorithm 1 (see `_kmeans_groups`), then rows compacted as above;
  the restart with the fewest blocks wins.
- `best`: every candidate of `best_candidates` (compact, kmeans, greedy union-minimising growth, and the
  same on Wᵀ) and the one with the fewest blocks; so it never uses more arrays than compact or kmeans.

Every mode but `dense` first partitions the "lines" of one side into groups: output columns into groups
of ≤ L, or (the transposed variants) input rows into groups of ≤ R. A group costs ⌈|union of its
non-zero cross indices| / tile⌉ blocks. Both sides are valid: in either, a cell belongs to exactly one
(group, tile) pair. All-zero lines need no array and are left out of every grouping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.sparse as sp

from ir.errors import RccError

MODES = ("dense", "compact", "kmeans", "best")
KMEANS_MAX_ITER = 20
# The kmeans work cap: above this many non-zeros, Hamming distances are measured on a seeded sample of
# cross indices (rows of W) of this many non-zeros' worth; see `_kmeans_groups`.
KMEANS_MAX_NNZ = 1 << 20


class PackingError(RccError, ValueError):
    """An invalid packing, or a bad argument to `pack`; the message says which block or option."""


@dataclass(frozen=True, eq=False)
class Block:
    """One array's share of W: input rows `rows` (≤ R, sorted) feed it, output columns `cols` (≤ L,
    sorted) come out of it."""

    rows: np.ndarray  # int64
    cols: np.ndarray  # int64


def lower_bound(mask: np.ndarray, rows: int, cols: int) -> int:
    """⌈nnz / (R·L)⌉: no packing holds more non-zeros per array than an array has cells."""
    return -(-int(np.count_nonzero(mask)) // (rows * cols))


def check_packing(mask: np.ndarray, blocks: list[Block], rows: int, cols: int) -> None:
    """Raise `PackingError` (a ValueError) with the first reason `blocks` is not a valid packing of `mask`."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise PackingError(f"the mask must be 2-D, got shape {mask.shape}")
    covered = np.zeros(mask.shape, dtype=bool)
    for index, block in enumerate(blocks):
        for name, values, limit, extent in (("rows", block.rows, rows, mask.shape[0]),
                                            ("cols", block.cols, cols, mask.shape[1])):
            values = np.asarray(values)
            if values.ndim != 1 or values.size == 0 or not np.issubdtype(values.dtype, np.integer):
                raise PackingError(f"block {index}: {name} must be a non-empty 1-D integer array")
            if values.size > limit:
                raise PackingError(f"block {index}: {values.size} {name}, more than the array's {limit}")
            if np.any(np.diff(values) <= 0):
                raise PackingError(f"block {index}: {name} are not sorted and distinct")
            if values[0] < 0 or values[-1] >= extent:
                raise PackingError(f"block {index}: {name} outside [0, {extent})")
        cells = np.ix_(block.rows, block.cols)
        if covered[cells].any():
            k, m = np.argwhere(covered[cells])[0]
            raise PackingError(f"block {index}: cell ({block.rows[k]}, {block.cols[m]}) is already in an "
                               f"earlier block (column {block.cols[m]}'s blocks must have disjoint rows)")
        covered[cells] = True
    missed = mask & ~covered
    if missed.any():
        k, m = np.argwhere(missed)[0]
        raise PackingError(f"non-zero ({k}, {m}) is in no block ({np.count_nonzero(missed)} uncovered)")


def planted_mask(K: int, M: int, rows: int, cols: int, blocks: int, density_inside: float,
                 seed: int) -> tuple[np.ndarray, int]:
    """A [K, M] mask whose non-zeros lie in `blocks` disjoint R×L blocks on the diagonal, with rows and
    columns then secretly permuted; returns (mask, optimum) with optimum = `blocks`.

    Every planted column gets at least one non-zero, so there are blocks·L non-zero columns; each needs
    a slot in some array and an array has L slots, so no packing uses fewer than `blocks` arrays, and
    the planted blocks use exactly that many.
    """
    if blocks * rows > K or blocks * cols > M:
        raise PackingError(f"{blocks} blocks of {rows}×{cols} do not fit a {K}×{M} matrix")
    rng = np.random.default_rng(seed)
    mask = np.zeros((K, M), dtype=bool)
    for b in range(blocks):
        inside = rng.random((rows, cols)) < density_inside
        empty = ~inside.any(axis=0)
        inside[rng.integers(0, rows, size=int(empty.sum())), np.flatnonzero(empty)] = True
        mask[b * rows:(b + 1) * rows, b * cols:(b + 1) * cols] = inside
    return mask[rng.permutation(K)][:, rng.permutation(M)], blocks


# --- the pattern seen from the side whose lines are grouped ---------------------------------------------

@dataclass(frozen=True)
class _Pattern:
    """`by_line[i]` lists the cross indices where line i is non-zero; `by_cross` is its transpose.
    Lines are W's columns (cross = rows), or W's rows for the transposed variants."""

    by_line: sp.csr_matrix
    by_cross: sp.csr_matrix

    @staticmethod
    def of(mask: np.ndarray) -> "_Pattern":
        """Lines = the columns of `mask`."""
        by_cross = sp.csr_matrix(mask, dtype=np.float32)
        by_line = by_cross.T.tocsr()
        for matrix in (by_cross, by_line):
            matrix.sort_indices()
            matrix.indices = matrix.indices.astype(np.int64)
            matrix.indptr = matrix.indptr.astype(np.int64)
        return _Pattern(by_line, by_cross)

    def transposed(self) -> "_Pattern":
        return _Pattern(self.by_cross, self.by_line)

    @property
    def line_nnz(self) -> np.ndarray:
        return np.diff(self.by_line.indptr)


def _gather(matrix: sp.csr_matrix, lines: np.ndarray) -> np.ndarray:
    """The column indices of rows `lines` of a CSR matrix, concatenated, without building a submatrix."""
    starts = matrix.indptr[lines]
    lengths = matrix.indptr[lines + 1] - starts
    shift = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
    return matrix.indices[shift + np.arange(shift.size)]


def _group_cost(pattern: _Pattern, groups: list[np.ndarray], tile: int) -> int:
    """Σ over groups of ⌈|cross union| / tile⌉, from one boolean [cross, groups] table."""
    n_lines, n_cross = pattern.by_line.shape
    group_of = np.full(n_lines, -1, dtype=np.int64)
    for g, group in enumerate(groups):
        group_of[group] = g
    lines = np.repeat(np.arange(n_lines), pattern.line_nnz)
    seen = np.zeros((n_cross, max(len(groups), 1)), dtype=bool)
    assert np.all(group_of[lines] >= 0), "a non-zero line is in no group"
    seen[pattern.by_line.indices, group_of[lines]] = True
    return int(np.sum(-(-seen.sum(axis=0) // tile)))


def _blocks(pattern: _Pattern, groups: list[np.ndarray], tile: int, transposed: bool) -> list[Block]:
    """Each group's non-zero cross indices, tiled by `tile`, as blocks (rows and cols swapped back when the
    lines were W's rows)."""
    blocks = []
    for group in groups:
        lines = np.sort(group).astype(np.int64)
        cross = np.unique(_gather(pattern.by_line, lines))
        for start in range(0, cross.size, tile):
            part = cross[start:start + tile]
            blocks.append(Block(rows=lines, cols=part) if transposed else Block(rows=part, cols=lines))
    return blocks


# --- groupings -----------------------------------------------------------------------------------------

def _natural_groups(pattern: _Pattern, size: int) -> list[np.ndarray]:
    """Lines in natural order, `size` at a time; all-zero lines dropped only where a whole group is empty."""
    n_lines = pattern.by_line.shape[0]
    nonzero = pattern.line_nnz > 0
    groups = [np.arange(s, min(s + size, n_lines)) for s in range(0, n_lines, size)]
    return [g for g in groups if nonzero[g].any()]


def _greedy_groups(pattern: _Pattern, size: int, criterion: str) -> list[np.ndarray]:
    """Grow one group at a time from the free line with most non-zeros, adding the free line that brings
    the fewest new cross indices into the group's union (`criterion="rows"`; ties: the most shared), or
    the one with the smallest uncovered fraction of its non-zeros (`"fraction"`; ties: fewest new)."""
    by_line, by_cross = pattern.by_line, pattern.by_cross
    n_lines, n_cross = by_line.shape
    nnz = pattern.line_nnz
    free = nnz > 0
    in_union = np.zeros(n_cross, dtype=bool)
    tie = 0.5 / (float(nnz.max(initial=0)) + 1.0) ** 3
    groups = []
    while free.any():
        shared = np.zeros(n_lines, dtype=np.int64)
        line = int(np.argmax(np.where(free, nnz, -1)))
        group, union = [], []
        while True:
            group.append(line)
            free[line] = False
            cross = by_line.indices[by_line.indptr[line]:by_line.indptr[line + 1]]
            new = cross[~in_union[cross]]
            in_union[new] = True
            union.append(new)
            if new.size:
                shared += np.bincount(_gather(by_cross, new), minlength=n_lines)
            if len(group) == size or not free.any():
                break
            added = nnz - shared
            if criterion == "rows":
                score = added * (n_cross + 1.0) - shared
            else:
                score = added / np.maximum(nnz, 1) + tie * added
            line = int(np.argmin(np.where(free, score, np.inf)))
        in_union[np.concatenate(union)] = False
        groups.append(np.sort(np.array(group, dtype=np.int64)))
    return groups


def _lloyd(points: sp.csr_matrix, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """k-means of binary points under Hamming distance (= squared Euclidean between binary vectors), mean
    centres, k-means++ start; returns (labels, distances [n, k] to the final centres)."""
    n = points.shape[0]
    norms = np.asarray(points.sum(axis=1)).ravel()
    chosen = [int(rng.integers(n))]
    nearest = np.full(n, np.inf)
    for _ in range(1, k):
        centre = points[chosen[-1]].toarray().ravel()
        nearest = np.minimum(nearest, norms + centre.sum() - 2.0 * (points @ centre))
        weights = np.maximum(nearest, 0.0)
        total = weights.sum()
        chosen.append(int(rng.choice(n, p=weights / total)) if total > 0 else int(rng.integers(n)))
    centres = points[chosen].toarray()
    labels = np.full(n, -1)
    for _ in range(KMEANS_MAX_ITER):
        distances = norms[:, None] + (centres ** 2).sum(axis=1)[None, :] - 2.0 * np.asarray(points @ centres.T)
        new_labels = np.argmin(distances, axis=1)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
        counts = np.bincount(labels, minlength=k)
        onehot = sp.csr_matrix((np.ones(n, dtype=np.float32), (labels, np.arange(n))), shape=(k, n))
        sums = (onehot @ points).toarray()
        for empty in np.flatnonzero(counts == 0):  # re-seed at the point farthest from its centre
            far = int(np.argmax(distances[np.arange(n), labels]))
            sums[empty], counts[empty] = points[far].toarray().ravel(), 1
            distances[far, labels[far]] = -np.inf
        centres = sums / counts[:, None]
    return labels, distances


def _kmeans_groups(pattern: _Pattern, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Lin et al.'s Algorithm 1 on the lines of `pattern` (one row block: all of W's rows).

    Repeatedly cluster the free lines into ⌈n/size⌉ clusters; every cluster with ≥ size members gives
    the `size` members nearest its centre as a group. Fallback the paper lacks: when no cluster reaches
    `size`, the largest cluster is grown by the free lines nearest its centre. Work cap: when W has more
    than KMEANS_MAX_NNZ non-zeros, distances use a seeded random sample of cross indices holding about
    that many (a random-projection of the Hamming distance; the final blocks are still exact).
    """
    by_line = pattern.by_line
    nnz = pattern.line_nnz
    if by_line.nnz > KMEANS_MAX_NNZ:
        n_cross = by_line.shape[1]
        keep = np.sort(rng.choice(n_cross, size=max(1, n_cross * KMEANS_MAX_NNZ // by_line.nnz), replace=False))
        by_line = by_line[:, keep].tocsr()
    free = np.flatnonzero(nnz > 0)
    groups = []
    while free.size > size:
        k = -(-free.size // size)
        labels, distances = _lloyd(by_line[free], k, rng)
        counts = np.bincount(labels, minlength=k)
        taken = []
        for cluster in np.flatnonzero(counts >= size):
            members = np.flatnonzero(labels == cluster)
            taken.append(members[np.argsort(distances[members, cluster], kind="stable")[:size]])
        if not taken:
            cluster = int(np.argmax(counts))
            members = labels == cluster
            order = np.lexsort((distances[:, cluster], ~members))  # members first, then nearest others
            taken.append(order[:size])
        groups += [np.sort(free[t]) for t in taken]
        free = np.delete(free, np.concatenate(taken))
    if free.size:
        groups.append(free)
    return groups


# --- modes ---------------------------------------------------------------------------------------------

def _dense(shape: tuple[int, int], rows: int, cols: int) -> list[Block]:
    K, M = shape
    return [Block(rows=np.arange(r, min(r + rows, K), dtype=np.int64),
                  cols=np.arange(c, min(c + cols, M), dtype=np.int64))
            for r in range(0, K, rows) for c in range(0, M, cols)]


def _kmeans(pattern: _Pattern, rows: int, cols: int, seed: int, restarts: int) -> list[np.ndarray]:
    best_groups, best_cost = None, None
    for restart in range(max(restarts, 1)):
        groups = _kmeans_groups(pattern, cols, np.random.default_rng([seed, restart]))
        cost = _group_cost(pattern, groups, rows)
        if best_cost is None or cost < best_cost:
            best_groups, best_cost = groups, cost
    return best_groups


def best_candidates(mask: np.ndarray, rows: int, cols: int, seed: int = 0,
                    restarts: int = 5) -> dict[str, Callable[[], list[Block]]]:
    """The packings `best` chooses from, by name, each a thunk (so a benchmark can time them apart)."""
    columns = _Pattern.of(np.asarray(mask, dtype=bool))
    rows_side = columns.transposed()

    def on_columns(grouping: Callable[[], list[np.ndarray]]) -> Callable[[], list[Block]]:
        return lambda: _blocks(columns, grouping(), rows, transposed=False)

    def on_rows(grouping: Callable[[], list[np.ndarray]]) -> Callable[[], list[Block]]:
        return lambda: _blocks(rows_side, grouping(), cols, transposed=True)

    return {
        "compact": on_columns(lambda: _natural_groups(columns, cols)),
        "kmeans": on_columns(lambda: _kmeans(columns, rows, cols, seed, restarts)),
        "greedy-rows": on_columns(lambda: _greedy_groups(columns, cols, "rows")),
        "greedy-fraction": on_columns(lambda: _greedy_groups(columns, cols, "fraction")),
        "T-compact": on_rows(lambda: _natural_groups(rows_side, rows)),
        "T-greedy-rows": on_rows(lambda: _greedy_groups(rows_side, rows, "rows")),
        "T-greedy-fraction": on_rows(lambda: _greedy_groups(rows_side, rows, "fraction")),
    }


def pack(mask: np.ndarray, rows: int, cols: int, mode: str, seed: int = 0, restarts: int = 5) -> list[Block]:
    """Pack the non-zeros of `mask` [K, M] onto arrays of `rows` rows × `cols` output columns (see the
    module docstring for the modes)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise PackingError(f"the mask must be 2-D, got shape {mask.shape}")
    if rows < 1 or cols < 1:
        raise PackingError(f"array size must be positive, got {rows}×{cols}")
    if mode not in MODES:
        raise PackingError(f"unknown packing mode {mode!r}; choose one of {', '.join(MODES)}")
    if mode == "dense":
        return _dense(mask.shape, rows, cols)
    if not mask.any():
        return []
    candidates = best_candidates(mask, rows, cols, seed, restarts)
    if mode != "best":
        return candidates[mode]()
    best = None
    for build in candidates.values():
        blocks = build()
        if best is None or len(blocks) < len(best):
            best = blocks
    return best
