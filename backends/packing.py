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
need no array and are left out of every grouping. That machinery is in `backends/packing_plans.py`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from rcc.backends.packing_plans import (Block, _Chunked, _csr, _greedy_groups, _greedy_work, _kmeans_groups,
                                    _natural_groups, _plan_blocks, _plan_cost, _Side)
from rcc.ir.errors import RccError
from rcc.ir.progress import stage

MODES = ("dense", "compact", "kmeans", "best")
# best's greedy work caps, in units of `_greedy_work` (≈ 0.3–0.6 ns each on the reference 2-core
# machine): per greedy run, and per side for tuning the chunk size on a sample.
GREEDY_MAX_WORK = 40_000_000_000
TUNING_MAX_WORK = 30_000_000_000
LARGE_LAYER_CELLS = 1 << 20  # packing a weight this large can take seconds: shown as a step
TUNING_SAMPLE = 2048  # cross indices (rows of W for column groups) the chunk size is tuned on


class PackingError(RccError, ValueError):
    """An invalid packing, or a bad argument to `pack`; the message says which block or option."""


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
    with stage(f"pack {mask.shape[0]}x{mask.shape[1]} weights") if mask.size >= LARGE_LAYER_CELLS else nullcontext():
        return _pack_sparse(mask, rows, cols, mode, seed, restarts)


def _pack_sparse(mask: np.ndarray, rows: int, cols: int, mode: str, seed: int, restarts: int) -> list[Block]:
    if mode == "best":
        found = [c.blocks for c in best_candidates(mask, rows, cols, seed, restarts) if c.blocks is not None]
        return min(found, key=len)
    columns, _ = _sides(mask, rows, cols)
    return _compact(columns) if mode == "compact" else _kmeans(columns, seed, restarts)
