"""How many copies of each crossbar stage to make under an array budget: the allocation strategies of the
`replicate` pass and of bench/schedule.py's baselines.

A stage is one `xbar.mvm`: `vectors` input vectors, `step` time per vector (its arrays' reads and
conversions over the input bit-slices) and `arrays` per copy. With c copies each serving ⌈vectors / c⌉
vectors its time is ⌈vectors / c⌉ · step; a pipeline of stages starts one inference per slowest stage.

- `greedy` (PIMCOMP's balance, DAC 2023): give the slowest stage its next useful copy while arrays
  remain; it stops when the slowest stage cannot be sped up, so its slowest stage is the least possible.
- `dp` (CIM-MLC's dynamic programming over layers and free arrays, ASPLOS 2024): over stages and the free
  arrays (in at most `DP_UNITS` units, so near-exact on large budgets), the allocation with the least
  (slowest stage, sum of stages): the same bottleneck as greedy when the units are fine enough, and the
  free arrays spent on latency.
- `isaac` (a baseline): ISAAC balances every layer against the last one, which keeps one copy; when
  arrays run short the common target time grows until the copies fit. Free arrays stay unused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DP_UNITS = 256


@dataclass(frozen=True)
class Stage:
    vectors: int
    step: float
    arrays: int

    def time(self, copies: int) -> float:
        return math.ceil(self.vectors / copies) * self.step

    def useful_copies(self) -> list[int]:
        """The copy counts that each lower the stage time (the least c for every value of ⌈vectors / c⌉)."""
        counts, copies = [], 1
        while copies <= self.vectors:
            counts.append(copies)
            per_copy = math.ceil(self.vectors / copies)
            if per_copy == 1:
                break
            copies = math.ceil(self.vectors / (per_copy - 1))
        return counts

    def copies_for(self, time: float) -> int | None:
        """The fewest copies that bring the stage within `time`, or None when none does."""
        return next((c for c in self.useful_copies() if self.time(c) <= time), None)


def schedule_key(stages: list[Stage], copies: list[int]) -> tuple[float, float]:
    """What the strategies minimise, in order: the slowest stage, then the sum of stage times."""
    times = [stage.time(c) for stage, c in zip(stages, copies)]
    return max(times, default=0.0), sum(times)


def arrays_used(stages: list[Stage], copies: list[int]) -> int:
    return sum(stage.arrays * c for stage, c in zip(stages, copies))


def greedy(stages: list[Stage], budget: int) -> list[int]:
    copies = [1] * len(stages)
    free = budget - arrays_used(stages, copies)
    while stages:
        slowest = max(range(len(stages)), key=lambda i: stages[i].time(copies[i]))
        stage = stages[slowest]
        more = next((c for c in stage.useful_copies() if c > copies[slowest]), None)
        if more is None or (more - copies[slowest]) * stage.arrays > free:
            return copies
        free -= (more - copies[slowest]) * stage.arrays
        copies[slowest] = more


def dp(stages: list[Stage], budget: int) -> list[int]:
    free = budget - arrays_used(stages, [1] * len(stages))
    unit = max(1, math.ceil(free / DP_UNITS))
    units = free // unit
    # best[u]: (key, copies) of the stages so far using u units of free arrays
    best: list[tuple[tuple[float, float], list[int]] | None] = [((0.0, 0.0), [])] + [None] * units
    for stage in stages:
        options = [(c, math.ceil((c - 1) * stage.arrays / unit)) for c in stage.useful_copies()]
        options = [(c, cost) for c, cost in options if cost <= units]
        nxt: list[tuple[tuple[float, float], list[int]] | None] = [None] * (units + 1)
        for used, entry in enumerate(best):
            if entry is None:
                continue
            (slowest, total), chosen = entry
            for c, cost in options:
                if used + cost > units:
                    break
                time = stage.time(c)
                key = (max(slowest, time), total + time)
                held = nxt[used + cost]
                if held is None or key < held[0]:
                    nxt[used + cost] = (key, chosen + [c])
        best = nxt
    return min((entry for entry in best if entry is not None), key=lambda entry: entry[0])[1]


def isaac(stages: list[Stage], budget: int) -> list[int]:
    if not stages:
        return []
    targets = sorted({s.time(c) for s in stages for c in s.useful_copies() if s.time(c) >= stages[-1].time(1)})
    for target in targets:
        copies = [s.copies_for(target) for s in stages]
        if None not in copies and arrays_used(stages, copies) <= budget:
            return copies
    return [1] * len(stages)


STRATEGIES = {"greedy": greedy, "dp": dp}
BASELINES = {"isaac": isaac}


def best_allocation(stages: list[Stage], budget: int) -> tuple[str, list[int], dict[str, tuple[float, float]]]:
    """The better of the strategies' allocations (by `schedule_key`), its strategy's name, and every
    strategy's key."""
    results = {name: strategy(stages, budget) for name, strategy in STRATEGIES.items()}
    keys = {name: schedule_key(stages, copies) for name, copies in results.items()}
    winner = min(keys, key=lambda name: keys[name])
    return winner, results[winner], keys


def uniform(stages: list[Stage], copies: int) -> list[int]:
    """`--replicate N`: N copies of every stage, or as many as it has vectors."""
    return [min(copies, stage.vectors) for stage in stages]
