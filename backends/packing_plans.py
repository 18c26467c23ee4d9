"""How packings are planned: the non-zero lines of one side of W grouped (naturally, greedily, or by the
k-means of Lin et al., ASP-DAC 2019), then each group's union of cross indices tiled into array blocks.
`backends/packing.py` holds the modes and the public API built on these."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

KMEANS_MAX_ITER = 20
# kmeans work cap, in non-zeros × first-round clusters (one Lloyd iteration's multiply-adds): above it,
# Hamming distances are measured on a seeded sample of W's rows that fits (see `_kmeans_groups`).
KMEANS_MAX_WORK = 1 << 28


@dataclass(frozen=True, eq=False)
class Block:
    """One array's share of W: input rows `rows` (≤ R, sorted) feed it, output columns `cols` (≤ L,
    sorted) come out of it."""

    rows: np.ndarray  # int64
    cols: np.ndarray  # int64


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
