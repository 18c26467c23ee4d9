"""How a sweep picks its points: every point of the grid (`GridSearch`), `trials` of them drawn at random
(`RandomSearch`), or `trials` chosen one after another by Optuna's TPE sampler minimising an objective
under constraints (`OptunaSearch`). The engine (sweep.py) asks a search for points while workers are
free and tells it each finished row:

    search.propose(in_flight) -> [(model_digest, point), ...]    # [] when it has nothing more to run now
    search.observe(point, model_digest, row)

Objectives and constraints name results columns (`energy` is `energy_pj`; see ALIASES); the accuracy
columns exist when the sweep has `--data`.
"""

from __future__ import annotations

import operator
import random
import re
from dataclasses import dataclass
from typing import Any, Protocol

try:
    import optuna
except ImportError:  # an optional dependency: `pip install 'rcc[search]'`
    optuna = None

from rcc.compiler.sweep_point import ACCURACY_COLUMNS, FIGURE_COLUMNS
from rcc.compiler.sweep_space import Point, SweepError, Value, grid_points

ALIASES = {"energy": "energy_pj", "latency": "latency_ns", "area": "area_mm2", "throughput": "throughput_inf_s",
           "power": "power_mw", "snr": "snr_db", "efficiency": "tops_per_w"}
MAXIMISED = frozenset({"throughput_inf_s", "tops_per_w", "utilization", "snr_db", "accuracy", "top5",
                       "verify_passed"})
Proposal = tuple[str, Point]


def column_of(name: str, flag: str, has_data: bool = False) -> str:
    """The results column an objective or constraint names (the accuracy columns only when the sweep has
    `--data`); SweepError when there is none."""
    column = ALIASES.get(name, name)
    if column in ACCURACY_COLUMNS and not has_data:
        raise SweepError(f"{flag} {name}: accuracy needs --data X.npz (and --labels Y.npy for top-1 against "
                         f"labels); without it use a cost or verify column such as snr_db")
    known = FIGURE_COLUMNS + (ACCURACY_COLUMNS if has_data else ())
    if column not in known:
        raise SweepError(f"{flag} {name}: not a results column (known: {', '.join(known)})")
    return column


_COMPARISONS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


@dataclass(frozen=True)
class Constraint:
    """`COLUMN>=BOUND` and friends: a condition a row must meet to count as feasible."""

    column: str
    comparison: str
    bound: float

    @staticmethod
    def parse(text: str, has_data: bool = False) -> Constraint:
        match = re.fullmatch(r"\s*([A-Za-z_]+)\s*(>=|<=|>|<)\s*([-+0-9.eE]+|inf)\s*", text)
        if match is None:
            raise SweepError(f"--constraint {text!r}: expected COLUMN>=NUMBER (or <=, >, <), like snr_db>=30")
        try:
            bound = float(match.group(3))
        except ValueError:
            raise SweepError(f"--constraint {text!r}: {match.group(3)!r} is not a number") from None
        return Constraint(column_of(match.group(1), "--constraint", has_data), match.group(2), bound)

    def violation(self, row: dict[str, Any]) -> float:
        """How far `row` is from meeting the constraint: ≤ 0 when it does (Optuna's convention)."""
        value = row.get(self.column)
        if value is None:
            return 1.0
        if _COMPARISONS[self.comparison](float(value), self.bound):
            return 0.0
        return abs(float(value) - self.bound) or 1.0


def feasible(rows: list[dict[str, Any]], constraints: tuple[Constraint, ...]) -> list[dict[str, Any]]:
    """The rows that meet every constraint."""
    return [row for row in rows if all(c.violation(row) <= 0 for c in constraints)]


class Search(Protocol):
    def propose(self, in_flight: int) -> list[Proposal]: ...

    def observe(self, point: Point, model_digest: str, row: dict[str, Any]) -> None: ...


class GridSearch:
    """Every point for every model, proposed at once."""

    def __init__(self, digests: list[str], points: list[Point]) -> None:
        self.remaining = [(digest, point) for digest in digests for point in points]

    def propose(self, in_flight: int) -> list[Proposal]:
        proposals, self.remaining = self.remaining, []
        return proposals

    def observe(self, point: Point, model_digest: str, row: dict[str, Any]) -> None:
        pass


class RandomSearch(GridSearch):
    """`trials` distinct (model, point) pairs of the grid, drawn with `seed`."""

    def __init__(self, digests: list[str], space: dict[str, list[Value]], trials: int, seed: int = 0) -> None:
        super().__init__(digests, grid_points(space))
        if trials < len(self.remaining):
            self.remaining = random.Random(seed).sample(self.remaining, trials)


class OptunaSearch:
    """`trials` points chosen by Optuna's TPE sampler (seeded) to minimise `objective` (maximise it for the
    columns in MAXIMISED) subject to `constraints`; at most `parallel` trials run at once. A failed
    point is a failed trial. The model is one more categorical choice when there are several."""

    def __init__(self, digests: list[str], space: dict[str, list[Value]], trials: int, objective: str,
                 constraints: tuple[Constraint, ...] = (), parallel: int = 1, seed: int = 0) -> None:
        if optuna is None:
            raise SweepError("--search optuna needs Optuna, which is not installed: pip install 'rcc[search]'")
        self.digests, self.space, self.trials, self.parallel = digests, space, trials, parallel
        self.objective, self.constraints = objective, constraints
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = optuna.samplers.TPESampler(seed=seed)  # reads the trials' constraints (set_constraint)
        direction = "maximize" if objective in MAXIMISED else "minimize"
        self.study = optuna.create_study(sampler=sampler, direction=direction)
        self.running: dict[tuple[str, str], list] = {}  # (model, point) → its Optuna trials in flight
        self.asked = 0

    def propose(self, in_flight: int) -> list[Proposal]:
        proposals = []
        while in_flight + len(proposals) < self.parallel and self.asked < self.trials:
            trial = self.study.ask()
            self.asked += 1
            # Optuna's categorical choices must be plain values; the index keeps None ("auto") usable.
            point = {name: values[trial.suggest_categorical(name, list(range(len(values))))]
                     for name, values in self.space.items()}
            digest = self.digests[trial.suggest_categorical("model", list(range(len(self.digests))))] \
                if len(self.digests) > 1 else self.digests[0]
            self.running.setdefault(_key(digest, point), []).append(trial)
            proposals.append((digest, point))
        return proposals

    def observe(self, point: Point, model_digest: str, row: dict[str, Any]) -> None:
        trial = self.running[_key(model_digest, point)].pop(0)
        value = row.get(self.objective)
        if row["status"] != "ok" or value is None:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return
        for constraint in self.constraints:
            trial.set_constraint(f"{constraint.column}{constraint.comparison}{constraint.bound:g}",
                                 constraint.violation(row))
        self.study.tell(trial, float(value))


def _key(digest: str, point: Point) -> tuple[str, str]:
    return digest, repr(sorted(point.items()))
