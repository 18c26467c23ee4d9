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
- `kmeans`: Lin et al., ASP-DAC 2019, Algorithm 1 with a single row block (all of W's rows; see
  `_kmeans_groups`), then rows compacted as above; the restart with the fewest blocks wins.
- `best`: the fewest blocks among `best_candidates`: compact and kmeans themselves, and on both sides
  (columns grouped by L, or W's rows grouped by R) natural-order groups and greedy union-minimising
  groups (`_greedy_groups`), the latter over all of the other side or within chunks of it whose size is
  tuned on a sample (the paper's row blocks). It never uses more arrays than compact or kmeans.

Every mode but `dense` partitions the non-zero "lines" of one side into groups (W's columns into groups
of ≤ L, or W's rows into groups of ≤ R), within chunks of the other ("cross") side; a group costs
⌈|union of its lines' non-zero cross indices| / tile⌉ blocks (tile = R for column groups, L for row
groups). Any such partition is valid: a cell belongs to exactly one (chunk, group, tile). All-zero lines
need no array and are left out of every grouping.
"""

from __future__ import annotations

from dataclasses import dataclass
import time
from typing import Callable

import numpy as np
import scipy.sparse as sp

from ir.errors import RccError

MODES = ("dense", "compact", "kmeans", "best")
KMEANS_MAX_ITER = 20
# kmeans work cap: above this many non-zeros, Hamming distances are measured on a seeded sample of W's
# rows holding about this many non-zeros (see `_kmeans_groups`).
KMEANS_MAX_NNZ = 1 << 20
# best's greedy work caps, in units of `_greedy_work` (≈ 5–10 ns each on the reference 2-core machine):
# per greedy run over the whole matrix, and per side for tuning the chunk size on a sample.
GREEDY_MAX_WORK = 2_000_000_000
TUNING_MAX_WORK = 1_500_000_000
TUNING_SAMPLE = 2048  # cross indices (rows of W for column groups) the chunk size is tuned on


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


# --- patterns and plans ---------------------------------------------------------------------------------

def _csr(matrix: sp.spmatrix) -> sp.csr_matrix:
    """CSR with sorted int64 indices, so `_gather` and slicing never mix index widths."""
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    matrix.sort_indices()
    matrix.indices = matrix.indices.astype(np.int64)
    matrix.indptr = matrix.indptr.astype(np.int64)
    return matrix


@dataclass(frozen=True)
class _Pattern:
    """One chunk seen from the side being grouped: `by_line[i]` lists the cross indices where line i is
    non-zero, `by_cross` is its transpose."""

    by_line: sp.csr_matrix  # [n_lines, n_cross]
    by_cross: sp.csr_matrix  # [n_cross, n_lines]

    @staticmethod
    def of(by_cross: sp.csr_matrix) -> "_Pattern":
        return _Pattern(_csr(by_cross.T), _csr(by_cross))

    @property
    def line_nnz(self) -> np.ndarray:
        return np.diff(self.by_line.indptr)


def _gather(matrix: sp.csr_matrix, lines: np.ndarray) -> np.ndarray:
    """The column indices of rows `lines` of a CSR matrix, concatenated, without building a submatrix."""
    starts = matrix.indptr[lines]
    lengths = matrix.indptr[lines + 1] - starts
    shift = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
    return matrix.indices[shift + np.arange(shift.size)]


@dataclass(frozen=True)
class _Side:
    """Which lines are grouped: W's columns (by ≤ L, tiled by R) or, `transposed`, W's rows (by ≤ R,
    tiled by L). `by_cross` is W (or Wᵀ) as CSR [n_cross, n_lines]."""

    by_cross: sp.csr_matrix
    size: int
    tile: int
    transposed: bool

    def chunks(self, chunk: int, stop: int | None = None) -> list[tuple[int, _Pattern]]:
        """(first cross index, pattern) for consecutive chunks of `chunk` cross indices up to `stop`."""
        stop = self.by_cross.shape[0] if stop is None else stop
        return [(start, _Pattern.of(self.by_cross[start:min(start + chunk, stop)]))
                for start in range(0, stop, chunk)]


_Plan = list[tuple[int, _Pattern, list[np.ndarray]]]  # (chunk offset, chunk pattern, groups of lines)


def _plan_cost(plan: _Plan, tile: int) -> int:
    """Σ over chunks and groups of ⌈|cross union| / tile⌉, from one boolean [cross, groups] table each."""
    total = 0
    for _, pattern, groups in plan:
        n_lines, n_cross = pattern.by_line.shape
        group_of = np.full(n_lines, -1, dtype=np.int64)
        for g, group in enumerate(groups):
            group_of[group] = g
        owners = group_of[np.repeat(np.arange(n_lines), pattern.line_nnz)]
        assert np.all(owners >= 0), "a non-zero line is in no group"
        seen = np.zeros((n_cross, max(len(groups), 1)), dtype=bool)
        seen[pattern.by_line.indices, owners] = True
        total += int(np.sum(-(-seen.sum(axis=0) // tile)))
    return total


def _plan_blocks(plan: _Plan, side: _Side) -> list[Block]:
    """Each group's non-zero cross indices, tiled, as blocks (rows and cols swapped back for row groups)."""
    blocks = []
    for offset, pattern, groups in plan:
        for group in groups:
            lines = np.sort(group).astype(np.int64)
            cross = np.unique(_gather(pattern.by_line, lines)) + offset
            for start in range(0, cross.size, side.tile):
                part = cross[start:start + side.tile]
                blocks.append(Block(rows=lines, cols=part) if side.transposed else Block(rows=part, cols=lines))
    return blocks


# --- groupings of one chunk's lines ---------------------------------------------------------------------

def _natural_groups(pattern: _Pattern, size: int) -> list[np.ndarray]:
    """Lines in natural order, `size` at a time; a group is dropped only when all its lines are zero."""
    n_lines = pattern.by_line.shape[0]
    nonzero = pattern.line_nnz > 0
    groups = [np.arange(s, min(s + size, n_lines)) for s in range(0, n_lines, size)]
    return [g for g in groups if nonzero[g].any()]


def _greedy_work(pattern: _Pattern, size: int) -> int:
    """What `_greedy_groups` costs: a pass over all lines per step, and about one pass over the non-zeros
    per group (each group's union re-gathers the lines of its cross indices)."""
    active = int(np.count_nonzero(pattern.line_nnz))
    return active * pattern.by_line.shape[0] + -(-active // size) * pattern.by_line.nnz


def _greedy_groups(pattern: _Pattern, size: int) -> list[np.ndarray]:
    """Grow one group at a time: seed it with the free line with most non-zeros, then keep adding the free
    line whose non-zeros are least outside the group's union (smallest uncovered fraction; ties: fewest
    new cross indices, then lowest index). Lines entirely inside the union are added in one step, which
    is what one-at-a-time would do, since adding them changes no score."""
    by_line, by_cross = pattern.by_line, pattern.by_cross
    n_lines, n_cross = by_line.shape
    nnz = pattern.line_nnz.astype(np.float64)
    tie = 0.5 / (nnz.max(initial=0.0) + 1.0) ** 3  # below any gap between two distinct fractions
    free = nnz > 0
    alone = np.where(free, 1.0 + tie * nnz, np.inf)  # the score of a line sharing nothing with the union
    score, shared = alone.copy(), np.zeros(n_lines)
    in_union = np.zeros(n_cross, dtype=bool)
    groups, n_free = [], int(free.sum())
    while n_free:
        adding = np.array([np.argmax(np.where(free, nnz, -1.0))])
        group, union, touched, room = [], [], [], size
        while True:
            group.append(adding)
            free[adding], score[adding] = False, np.inf
            n_free -= adding.size
            room -= adding.size
            if adding.size == 1:  # the common case, without the general gather's overhead
                line = adding[0]
                cross = by_line.indices[by_line.indptr[line]:by_line.indptr[line + 1]]
                new = cross[~in_union[cross]]
            else:
                cross = _gather(by_line, adding)
                new = np.unique(cross[~in_union[cross]])
            if new.size:
                in_union[new] = True
                union.append(new)
                hits = _gather(by_cross, new)
                if new.size == 1:  # no repeats
                    shared[hits] += 1.0
                elif hits.size > n_lines // 16:  # a pass over all lines beats sorting the hits
                    counts = np.bincount(hits, minlength=n_lines)
                    hits = np.flatnonzero(counts)
                    shared[hits] += counts[hits]
                else:
                    hits, counts = np.unique(hits, return_counts=True)
                    shared[hits] += counts
                hits = hits[free[hits]]
                added = nnz[hits] - shared[hits]
                score[hits] = added / nnz[hits] + tie * added
                touched.append(hits)
            if room == 0 or n_free == 0:
                break
            best = int(np.argmin(score))
            adding = np.flatnonzero(score == 0.0)[:room] if score[best] == 0.0 else np.array([best])
        if union:
            in_union[np.concatenate(union)] = False
        if touched:
            touched = np.concatenate(touched)
            shared[touched] = 0.0
            score[touched] = np.where(free[touched], alone[touched], np.inf)
        groups.append(np.sort(np.concatenate(group)).astype(np.int64))
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
    """Lin et al.'s Algorithm 1 on the lines of `pattern`.

    Repeatedly cluster the free lines into ⌈n/size⌉ clusters; every cluster with ≥ size members gives
    the `size` members nearest its centre as a group. Fallback the paper lacks: when no cluster reaches
    `size`, the largest cluster is grown by the free lines nearest its centre. Work cap: above
    KMEANS_MAX_NNZ non-zeros, distances are measured on a seeded random sample of cross indices holding
    about that many (an unbiased estimate of the Hamming distance, scaled); the blocks stay exact.
    """
    by_line = pattern.by_line
    if by_line.nnz > KMEANS_MAX_NNZ:
        n_cross = by_line.shape[1]
        keep = rng.choice(n_cross, size=max(1, n_cross * KMEANS_MAX_NNZ // by_line.nnz), replace=False)
        by_line = by_line[:, np.sort(keep)].tocsr()
    free = np.flatnonzero(pattern.line_nnz > 0)
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
            order = np.lexsort((distances[:, cluster], labels != cluster))  # members first, then nearest
            taken.append(order[:size])
        groups += [np.sort(free[t]) for t in taken]
        free = np.delete(free, np.concatenate(taken))
    if free.size:
        groups.append(free)
    return groups


# --- modes ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Candidate:
    """One packing `best` considered: its blocks (None when a work cap skipped it, `note` says why) and
    the seconds it took, tuning included."""

    name: str
    blocks: list[Block] | None
    seconds: float
    note: str = ""


def _dense(shape: tuple[int, int], rows: int, cols: int) -> list[Block]:
    K, M = shape
    return [Block(rows=np.arange(r, min(r + rows, K), dtype=np.int64),
                  cols=np.arange(c, min(c + cols, M), dtype=np.int64))
            for r in range(0, K, rows) for c in range(0, M, cols)]


def _sides(mask: np.ndarray, rows: int, cols: int) -> tuple[_Side, _Side]:
    """(W's columns grouped by L, W's rows grouped by R)."""
    by_rows = _csr(sp.csr_matrix(mask))
    return _Side(by_rows, cols, rows, transposed=False), _Side(_csr(by_rows.T), rows, cols, transposed=True)


def _whole(side: _Side) -> tuple[int, _Pattern]:
    return side.chunks(side.by_cross.shape[0])[0]


def _kmeans_plan(side: _Side, seed: int, restarts: int) -> _Plan:
    """Algorithm 1 with `restarts` seeds ([seed, r] for r < restarts); the one with the fewest blocks."""
    offset, pattern = _whole(side)
    plans = [[(offset, pattern, _kmeans_groups(pattern, side.size, np.random.default_rng([seed, r])))]
             for r in range(max(restarts, 1))]
    return min(plans, key=lambda plan: _plan_cost(plan, side.tile))


def _timed(name: str, side: _Side, make_plan: Callable[[], _Plan]) -> Candidate:
    start = time.perf_counter()
    blocks = _plan_blocks(make_plan(), side)
    return Candidate(name, blocks, time.perf_counter() - start)


def _greedy_candidates(side: _Side, name: str) -> list[Candidate]:
    """Greedy grouping over the whole cross side, and within chunks of a size tuned on a sample (the
    first TUNING_SAMPLE cross indices): 2·tile, 4·tile, ... (a chunk of one tile is the natural grouping
    already, since every group then fits one block). Runs whose work would pass a cap are skipped and
    say so."""
    n_cross, size, tile = side.by_cross.shape[0], side.size, side.tile
    whole = _whole(side)
    work = _greedy_work(whole[1], size)
    found = [_timed(f"{name}/greedy", side, lambda: [(*whole, _greedy_groups(whole[1], size))])
             if work <= GREEDY_MAX_WORK else
             Candidate(f"{name}/greedy", None, 0.0, f"skipped: work {work:.2g} > GREEDY_MAX_WORK")]
    start, sample, spent, best, skipped = time.perf_counter(), min(n_cross, TUNING_SAMPLE), 0, None, []
    chunk = 2 * tile
    while chunk < n_cross and chunk <= sample:
        parts = side.chunks(chunk, stop=sample)
        work = sum(_greedy_work(pattern, size) for _, pattern in parts)
        if spent + work > TUNING_MAX_WORK or work * n_cross / sample > GREEDY_MAX_WORK:
            skipped.append(chunk)
        else:
            spent += work
            plan = [(offset, pattern, _greedy_groups(pattern, size)) for offset, pattern in parts]
            estimate = _plan_cost(plan, tile) * n_cross / sample
            if best is None or estimate < best[0]:
                best = (estimate, chunk, plan)
        chunk *= 2
    note = f"chunks {skipped} skipped by the work caps" if skipped else ""
    if best is None:
        return found + [Candidate(f"{name}/greedy-chunked", None, 0.0, note or "no chunk size applies")]
    _, chunk, plan = best
    if sample < n_cross:
        plan = [(offset, pattern, _greedy_groups(pattern, size)) for offset, pattern in side.chunks(chunk)]
    blocks = _plan_blocks(plan, side)
    return found + [Candidate(f"{name}/greedy-chunk{chunk}", blocks, time.perf_counter() - start, note)]


def best_candidates(mask: np.ndarray, rows: int, cols: int, seed: int = 0, restarts: int = 5) -> list[Candidate]:
    """Every packing `best` chooses from, in order (the first with the fewest blocks wins)."""
    columns, by_rows = _sides(np.asarray(mask, dtype=bool), rows, cols)
    column_whole = _whole(columns)
    row_whole = _whole(by_rows)
    return [_timed("compact", columns, lambda: [(*column_whole, _natural_groups(column_whole[1], cols))]),
            _timed("kmeans", columns, lambda: _kmeans_plan(columns, seed, restarts)),
            _timed("rows/natural", by_rows, lambda: [(*row_whole, _natural_groups(row_whole[1], rows))]),
            *_greedy_candidates(columns, "columns"),
            *_greedy_candidates(by_rows, "rows")]


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
    if mode == "best":
        found = [c.blocks for c in best_candidates(mask, rows, cols, seed, restarts) if c.blocks is not None]
        return min(found, key=len)
    columns, _ = _sides(mask, rows, cols)
    whole = _whole(columns)
    plan = [(*whole, _natural_groups(whole[1], cols))] if mode == "compact" else _kmeans_plan(columns, seed, restarts)
    return _plan_blocks(plan, columns)
