"""Sparsity-driven crossbar packing: which rows and output columns of a pruned weight matrix share an array.

A layer's weight matrix W [K, M] (rows = input features, columns = outputs) is seen through its boolean
non-zero mask. An array has R rows and holds L = xbar_cols // weight_slices output columns. A packing is a
list of `Block`s; the machine computes y[:, b.cols] += x[:, b.rows] @ W[b.rows][:, b.cols] for every block
b, which equals x @ W exactly when the packing is valid (`check_packing`): every non-zero cell lies in a
block, and no cell lies in two blocks (the blocks that hold a column have disjoint row sets).

Modes of `pack` (deterministic for a given seed):
- `dense`: the plain ⌈K/R⌉×⌈M/L⌉ tiling, all-zero tiles included (a dense mapping spends them too).
- `compact`: columns in natural order in groups of L; per group, rows all-zero within it are dropped and
  the rest tiled by R (an empty group costs nothing).
- `kmeans`: Lin et al., ASP-DAC 2019, Algorithm 1 with a single row block (all of W's rows; see
  `_kmeans_groups`), then rows compacted as above; the restart with the fewest blocks wins.
- `best`: the fewest blocks among `best_candidates`: compact and kmeans themselves, and on both sides
  (columns grouped by L, or W's rows grouped by R) natural-order groups and greedy union-minimising
  groups (`_greedy_groups`), the latter over all of the other side or within chunks of it whose size is
  tuned on a sample (the paper's row blocks). It never uses more arrays than compact or kmeans.
  Why these: the greedy recovers planted blocks exactly (a line of another block shares no cross index
  with the union, so its uncovered fraction stays 1), where Hamming k-means mixes blocks at low density;
  on i.i.d. masks at small arrays most of the gain comes from chunking (a chunk of 2–4 tiles lets whole
  groups fit one array), and which side to group is a coin toss, so both are tried (bench/packing.py).

Every mode but `dense` partitions the non-zero "lines" of one side into groups (W's columns into groups
of ≤ L, or W's rows into groups of ≤ R), within chunks of the other ("cross") side; a group costs
⌈|union of its lines' non-zero cross indices| / tile⌉ blocks (tile = R for column groups, L for row
groups). Any such partition is valid: a cell belongs to exactly one (chunk, group, tile). All-zero lines
need no array and are left out of every grouping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ir.errors import RccError

MODES = ("dense", "compact", "kmeans", "best")
KMEANS_MAX_ITER = 20
# kmeans work cap, in non-zeros × first-round clusters (one Lloyd iteration's multiply-adds): above it,
# Hamming distances are measured on a seeded sample of W's rows that fits (see `_kmeans_groups`).
KMEANS_MAX_WORK = 1 << 28
# best's greedy work caps, in units of `_greedy_work` (≈ 0.3–0.6 ns each on the reference 2-core
# machine): per greedy run, and per side for tuning the chunk size on a sample.
GREEDY_MAX_WORK = 40_000_000_000
TUNING_MAX_WORK = 30_000_000_000
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


# --- sides, chunks and plans ----------------------------------------------------------------------------

def _csr(matrix: sp.spmatrix) -> sp.csr_matrix:
    """CSR with sorted int64 indices, so `_gather` and slicing never mix index widths."""
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    matrix.sort_indices()
    matrix.indices = matrix.indices.astype(np.int64)
    matrix.indptr = matrix.indptr.astype(np.int64)
    return matrix


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


@dataclass(frozen=True)
class _Chunked:
    """A side's non-zeros with the cross indices cut into chunks of `chunk`: line i of chunk c becomes the
    virtual line c·n_lines + i, so all chunks are grouped together in one vectorised pass."""

    side: _Side
    n_chunks: int
    n_lines: int
    by_line: sp.csr_matrix  # [n_chunks·n_lines, n_cross]
    by_cross: sp.csr_matrix  # [n_cross, n_chunks·n_lines]

    @staticmethod
    def of(side: _Side, chunk: int, stop: int | None = None) -> "_Chunked":
        """Chunks of `chunk` cross indices over the first `stop` (default: all)."""
        coo = (side.by_cross if stop is None else side.by_cross[:stop]).tocoo()
        (n_cross, n_lines), n_chunks = coo.shape, -(-coo.shape[0] // chunk)
        virtual = (coo.row.astype(np.int64) // chunk) * n_lines + coo.col
        by_cross = _csr(sp.csr_matrix((np.ones(coo.nnz, dtype=np.float32), (coo.row, virtual)),
                                      shape=(n_cross, n_chunks * n_lines)))
        return _Chunked(side, n_chunks, n_lines, _csr(by_cross.T), by_cross)

    @property
    def line_nnz(self) -> np.ndarray:
        return np.diff(self.by_line.indptr)


def _unions(chunked: _Chunked, groups: list[np.ndarray]) -> sp.csr_matrix:
    """[groups, n_cross]: row g lists (sorted) the cross indices where some line of group g is non-zero."""
    n_virtual = chunked.by_line.shape[0]
    owner = np.repeat(np.arange(len(groups)), [g.size for g in groups])
    onehot = sp.csr_matrix((np.ones(owner.size, dtype=np.float32), (owner, np.concatenate(groups))),
                           shape=(len(groups), n_virtual))
    return _csr(onehot @ chunked.by_line)


def _plan_cost(chunked: _Chunked, groups: list[np.ndarray]) -> int:
    """Σ over groups of ⌈|union of the group's cross indices| / tile⌉."""
    grouped = np.count_nonzero(chunked.line_nnz[np.concatenate(groups)])
    assert grouped == np.count_nonzero(chunked.line_nnz), "a non-zero line is in no group"
    return int(np.sum(-(-np.diff(_unions(chunked, groups).indptr) // chunked.side.tile)))


def _plan_blocks(chunked: _Chunked, groups: list[np.ndarray]) -> list[Block]:
    """Each group's cross indices tiled, as blocks (rows and cols swapped back for groups of W's rows)."""
    side, blocks = chunked.side, []
    unions = _unions(chunked, groups)
    for g, group in enumerate(groups):
        lines = np.sort(group % chunked.n_lines).astype(np.int64)
        cross = unions.indices[unions.indptr[g]:unions.indptr[g + 1]]
        for start in range(0, cross.size, side.tile):
            part = cross[start:start + side.tile]
            blocks.append(Block(rows=lines, cols=part) if side.transposed else Block(rows=part, cols=lines))
    return blocks


# --- groupings ------------------------------------------------------------------------------------------

def _natural_groups(chunked: _Chunked) -> list[np.ndarray]:
    """Lines in natural order, `size` at a time, per chunk; a group is dropped only when all-zero."""
    n_lines, size, nonzero = chunked.n_lines, chunked.side.size, chunked.line_nnz > 0
    groups = [np.arange(c * n_lines + start, c * n_lines + min(start + size, n_lines))
              for c in range(chunked.n_chunks) for start in range(0, n_lines, size)]
    return [g for g in groups if nonzero[g].any()]


def _greedy_work(chunked: _Chunked) -> int:
    """What `_greedy_groups` costs, in units of about 0.3–0.6 ns on the reference 2-core machine: each step
    (one line per chunk) scans all virtual lines and pays a fixed overhead; each round of groups gathers
    about all non-zeros again (the union's cross indices' lines), at about 60 units a non-zero."""
    per_chunk = chunked.line_nnz.reshape(chunked.n_chunks, chunked.n_lines)
    steps = int(np.count_nonzero(per_chunk, axis=1).max(initial=0))
    rounds = -(-steps // chunked.side.size)
    return steps * (chunked.by_line.shape[0] + 60_000) + 60 * rounds * chunked.by_line.nnz


def _greedy_groups(chunked: _Chunked) -> list[np.ndarray]:
    """Grow groups one line at a time, in every chunk at once: seed with the free line with most
    non-zeros, then add the free line whose non-zeros are least outside the group's union (smallest
    uncovered fraction; ties: fewest new cross indices, then lowest index); `size` lines make a group."""
    by_line, by_cross, size = chunked.by_line, chunked.by_cross, chunked.side.size
    n_virtual, n_cross = by_line.shape
    chunk_base = np.arange(chunked.n_chunks) * chunked.n_lines
    nnz = chunked.line_nnz.astype(np.float64)
    tie = 0.5 / (nnz.max(initial=0.0) + 1.0) ** 3  # below any gap between two distinct fractions
    free = nnz > 0
    alone = np.where(free, 1.0 + tie * nnz, np.inf)  # the score of a line sharing nothing with the union
    score, shared = alone.copy(), np.zeros(n_virtual)
    in_union = np.zeros(n_cross, dtype=bool)
    groups = []
    while free.any():
        members, union, touched = [], [], []
        for step in range(size):
            if step == 0:
                grid = np.where(free, nnz, -1.0).reshape(chunked.n_chunks, -1)
                pick = np.argmax(grid, axis=1)
                lines = (chunk_base + pick)[grid[np.arange(chunked.n_chunks), pick] > 0]
            else:
                grid = score.reshape(chunked.n_chunks, -1)
                pick = np.argmin(grid, axis=1)
                lines = (chunk_base + pick)[np.isfinite(grid[np.arange(chunked.n_chunks), pick])]
            if lines.size == 0:
                break
            members.append(lines)
            free[lines], score[lines] = False, np.inf
            cross = _gather(by_line, lines)  # distinct: one line per chunk, chunks disjoint
            new = cross[~in_union[cross]]
            if new.size == 0:
                continue
            in_union[new] = True
            union.append(new)
            hits = _gather(by_cross, new)
            if hits.size > n_virtual // 16:  # a pass over all lines beats sorting the hits
                counts = np.bincount(hits, minlength=n_virtual)
                hits = np.flatnonzero(counts)
                counts = counts[hits]
            else:
                hits, counts = np.unique(hits, return_counts=True)
            shared[hits] += counts
            hits = hits[free[hits]]
            added = nnz[hits] - shared[hits]
            score[hits] = added / nnz[hits] + tie * added
            touched.append(hits)
        if union:
            in_union[np.concatenate(union)] = False
        if touched:
            touched = np.concatenate(touched)
            shared[touched] = 0.0
            score[touched] = np.where(free[touched], alone[touched], np.inf)
        members = np.sort(np.concatenate(members))
        groups += np.split(members, np.flatnonzero(np.diff(members // chunked.n_lines)) + 1)
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
        products = np.asarray(points @ centres.T)
        distances = norms[:, None] + (centres ** 2).sum(axis=1)[None, :] - 2.0 * products
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


def _kmeans_groups(by_line: sp.csr_matrix, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Lin et al.'s Algorithm 1 on the lines (rows) of `by_line`.

    Repeatedly cluster the free lines into ⌈n/size⌉ clusters; every cluster with ≥ size members gives
    the `size` members nearest its centre as a group. Fallback the paper lacks: when no cluster reaches
    `size`, the largest cluster is grown by the free lines nearest its centre. Work cap: when non-zeros ×
    first-round clusters pass KMEANS_MAX_WORK, distances are measured on a seeded random sample of the
    cross indices that fits (the same distances up to scale and sampling noise); the blocks stay exact.
    """
    free = np.flatnonzero(np.diff(by_line.indptr) > 0)
    work = by_line.nnz * -(-free.size // size)
    if work > KMEANS_MAX_WORK:
        n_cross = by_line.shape[1]
        keep = rng.choice(n_cross, size=max(1, n_cross * KMEANS_MAX_WORK // work), replace=False)
        by_line = by_line[:, np.sort(keep)].tocsr()
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


def _whole(side: _Side) -> _Chunked:
    return _Chunked.of(side, max(side.by_cross.shape[0], 1))


def _compact(side: _Side) -> list[Block]:
    whole = _whole(side)
    return _plan_blocks(whole, _natural_groups(whole))


def _kmeans(side: _Side, seed: int, restarts: int) -> list[Block]:
    """Algorithm 1 with `restarts` seeds ([seed, r] for r < restarts); the one with the fewest blocks."""
    whole = _whole(side)
    plans = [_kmeans_groups(whole.by_line, side.size, np.random.default_rng([seed, r]))
             for r in range(max(restarts, 1))]
    return _plan_blocks(whole, min(plans, key=lambda groups: _plan_cost(whole, groups)))


def _timed(name: str, build: Callable[[], list[Block]]) -> Candidate:
    start = time.perf_counter()
    blocks = build()
    return Candidate(name, blocks, time.perf_counter() - start)


def _greedy_candidates(side: _Side, name: str) -> list[Candidate]:
    """Greedy grouping over the whole cross side, and within chunks whose size is tuned on a sample (the
    first TUNING_SAMPLE cross indices): 2·tile, 4·tile, ... (a chunk of one tile needs no search: every
    group then fits one block, so natural groups are as good). Runs whose work would pass a cap are
    skipped and say so."""
    n_cross = side.by_cross.shape[0]
    whole = _whole(side)
    work = _greedy_work(whole)
    found = [_timed(f"{name}/greedy", lambda: _plan_blocks(whole, _greedy_groups(whole)))
             if work <= GREEDY_MAX_WORK else
             Candidate(f"{name}/greedy", None, 0.0, f"skipped: work {work:.2g} > GREEDY_MAX_WORK")]
    start, sample, spent, best, skipped = time.perf_counter(), min(n_cross, TUNING_SAMPLE), 0, None, []
    chunk = 2 * side.tile
    while chunk < n_cross and chunk <= sample:
        chunked = _Chunked.of(side, chunk, stop=sample)
        work = _greedy_work(chunked)
        if spent + work > TUNING_MAX_WORK or work * n_cross / sample > GREEDY_MAX_WORK:
            skipped.append(chunk)
        else:
            spent += work
            groups = _greedy_groups(chunked)
            estimate = _plan_cost(chunked, groups) * n_cross / sample
            if best is None or estimate < best[0]:
                best = (estimate, chunk, chunked, groups)
        chunk *= 2
    note = f"chunks {skipped} skipped by the work caps" if skipped else ""
    if best is None:
        return found + [Candidate(f"{name}/greedy-chunked", None, 0.0, note or "no chunk size applies")]
    _, chunk, chunked, groups = best
    if sample < n_cross:
        chunked = _Chunked.of(side, chunk)
        groups = _greedy_groups(chunked)
    blocks = _plan_blocks(chunked, groups)
    return found + [Candidate(f"{name}/greedy-chunk{chunk}", blocks, time.perf_counter() - start, note)]


def best_candidates(mask: np.ndarray, rows: int, cols: int, seed: int = 0,
                    restarts: int = 5) -> list[Candidate]:
    """Every packing `best` chooses from, in order (the first with the fewest blocks wins)."""
    columns, by_rows = _sides(np.asarray(mask, dtype=bool), rows, cols)
    return [_timed("compact", lambda: _compact(columns)),
            _timed("kmeans", lambda: _kmeans(columns, seed, restarts)),
            _timed("rows/natural", lambda: _compact(by_rows)),
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
    return _compact(columns) if mode == "compact" else _kmeans(columns, seed, restarts)
