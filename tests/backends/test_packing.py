"""Crossbar packing: validity of every mode, the order best ≤ kmeans/compact ≤ dense, planted optima, the
checker's reasons, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rcc.backends.packing import MODES, Block, PackingError, check_packing, lower_bound, pack, planted_mask
from rcc.ir.errors import RccError


def blocks_as_tuples(blocks: list[Block]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    return [(tuple(b.rows.tolist()), tuple(b.cols.tolist())) for b in blocks]


def test_compact_drops_zero_rows_per_group_and_empty_groups() -> None:
    mask = np.array([[1, 0, 0, 0, 0, 0],
                     [0, 0, 0, 0, 0, 0],
                     [0, 1, 0, 0, 0, 0],
                     [1, 1, 0, 0, 0, 1]], dtype=bool)
    expected = [((0, 2), (0, 1)), ((3,), (0, 1)), ((3,), (4, 5))]
    assert blocks_as_tuples(pack(mask, 2, 2, "compact")) == expected
    assert len(pack(mask, 2, 2, "dense")) == 2 * 3


@st.composite
def masks(draw) -> tuple[np.ndarray, int, int]:
    K, M = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    rows, cols = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    density = draw(st.sampled_from([0.0, 0.02, 0.1, 0.3, 0.7, 1.0]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return rng.random((K, M)) < density, rows, cols


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(masks())
def test_every_mode_packs_validly_and_modes_are_ordered(case) -> None:
    mask, rows, cols = case
    counts = {}
    for mode in MODES:
        blocks = pack(mask, rows, cols, mode, seed=3, restarts=2)
        check_packing(mask, blocks, rows, cols)
        counts[mode] = len(blocks)
        assert lower_bound(mask, rows, cols) <= counts[mode]
    K, M = mask.shape
    assert counts["dense"] == -(-K // rows) * -(-M // cols)
    assert counts["compact"] <= counts["dense"]
    assert counts["best"] <= min(counts["kmeans"], counts["compact"])


@pytest.mark.parametrize("K, M, rows, cols, n_blocks, density", [
    (256, 256, 32, 32, 6, 0.5),
    (512, 384, 64, 32, 7, 0.3),
    (300, 200, 16, 24, 8, 0.4),
    (1000, 700, 32, 16, 20, 0.15),
    (130, 250, 12, 20, 10, 0.6),
])
def test_best_finds_the_planted_optimum(K, M, rows, cols, n_blocks, density) -> None:
    mask, optimum = planted_mask(K, M, rows, cols, n_blocks, density, seed=11)
    assert optimum == n_blocks
    # the optimum's certificate: every non-zero column needs one of an array's L column slots
    assert np.count_nonzero(mask.any(axis=0)) == n_blocks * cols
    blocks = pack(mask, rows, cols, "best")
    check_packing(mask, blocks, rows, cols)
    assert len(blocks) == optimum


def test_planted_mask_hides_its_blocks_and_rejects_what_does_not_fit() -> None:
    mask, _ = planted_mask(64, 64, 8, 8, 4, 0.5, seed=0)
    assert len(pack(mask, 8, 8, "compact")) > 4  # the natural order does not reveal the blocks
    with pytest.raises(PackingError, match="do not fit"):
        planted_mask(10, 10, 8, 8, 2, 0.5, seed=0)


def test_modes_are_deterministic_for_a_seed() -> None:
    mask = np.random.default_rng(5).random((90, 70)) < 0.1
    for mode in MODES:
        first = blocks_as_tuples(pack(mask, 8, 6, mode, seed=7))
        assert first == blocks_as_tuples(pack(mask, 8, 6, mode, seed=7))


def test_lower_bound() -> None:
    mask = np.zeros((10, 10), dtype=bool)
    assert lower_bound(mask, 4, 4) == 0
    mask.flat[:17] = True
    assert lower_bound(mask, 4, 4) == 2


@pytest.mark.parametrize("blocks, reason", [
    ([Block(np.array([0, 1]), np.array([0, 1]))], r"non-zero \(2, 1\) is in no block"),
    ([Block(np.array([0, 1, 2]), np.array([0, 1])), Block(np.array([2]), np.array([1]))],
     r"block 1: cell \(2, 1\) is already in an earlier block"),
    ([Block(np.array([0, 1, 2]), np.array([0, 1, 2]))], r"block 0: 3 cols, more than the array's 2"),
    ([Block(np.array([2, 0, 1]), np.array([0, 1]))], r"block 0: rows are not sorted and distinct"),
    ([Block(np.array([0, 1, 2]), np.array([0, 3]))], r"block 0: cols outside \[0, 3\)"),
    ([Block(np.array([], dtype=np.int64), np.array([0]))], r"block 0: rows must be a non-empty"),
])
def test_check_packing_names_the_reason(blocks, reason) -> None:
    mask = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0]], dtype=bool)
    with pytest.raises(ValueError, match=reason):
        check_packing(mask, blocks, 3, 2)


def test_bad_arguments_are_user_errors() -> None:
    mask = np.ones((4, 4), dtype=bool)
    with pytest.raises(RccError, match="unknown packing mode 'sparse'"):
        pack(mask, 2, 2, "sparse")
    with pytest.raises(PackingError, match="must be positive"):
        pack(mask, 0, 2, "dense")
    with pytest.raises(PackingError, match="2-D"):
        pack(np.ones(4), 2, 2, "compact")


def test_kmeans_work_cap_samples_distances_but_packs_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    import rcc.backends.packing_plans as plans

    mask = np.random.default_rng(2).random((200, 120)) < 0.2
    monkeypatch.setattr(plans, "KMEANS_MAX_WORK", 5000)
    check_packing(mask, pack(mask, 16, 8, "kmeans"), 16, 8)


def test_best_candidates_name_what_a_work_cap_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    import rcc.backends.packing as packing

    mask = np.random.default_rng(3).random((64, 64)) < 0.1
    monkeypatch.setattr(packing, "GREEDY_MAX_WORK", 0)
    candidates = packing.best_candidates(mask, 8, 8)
    skipped = [c for c in candidates if c.blocks is None]
    assert {c.name for c in skipped} >= {"columns/greedy", "rows/greedy"}
    assert all("skipped" in c.note for c in skipped)
    check_packing(mask, pack(mask, 8, 8, "best"), 8, 8)
