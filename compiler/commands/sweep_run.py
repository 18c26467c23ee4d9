"""The body of `rcc sweep` (compiler/commands/sweep.py has its options): check every option, build the
search, run it on Dask with a progress bar of points done, failed and remaining, then plot and print
the Pareto front."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from rcc.compiler.commands.common import input_files
from rcc.compiler.commands.eval import load_labels
from rcc.compiler.commands.progress import showing_progress
from rcc.compiler.sweep import SweepOutcome, check_scheduler_address, run_sweep, sweep_client
from rcc.compiler.sweep_plot import front_table, plot_fronts
from rcc.compiler.sweep_point import SweepData, SweepModel
from rcc.compiler.sweep_results import ResultsFile
from rcc.compiler.sweep_search import (Constraint, GridSearch, OptunaSearch, RandomSearch, Search, column_of,
                                      feasible)
from rcc.compiler.sweep_space import KEYS, SweepError, check_device_keys, check_points, grid_points, parse_grid
from rcc.ir.inputs import load_inputs
from rcc.ir.files import check_distinct_files, check_output_folder


def _positive(value: int | float | None, flag: str) -> None:
    if value is None:
        return
    if isinstance(value, float) and not 0 < value < math.inf:  # nan compares false with everything
        raise SweepError(f"{flag} must be positive and finite, got {value:g}")
    if value <= 0:
        raise SweepError(f"{flag} must be positive, got {value:g}")


def constraints_of(args: argparse.Namespace) -> tuple[Constraint, ...]:
    return tuple(Constraint.parse(text, args.data is not None) for text in args.constraint)


def load_data(args: argparse.Namespace) -> SweepData | None:
    """The `--data` set (with `--labels`), None without `--data`."""
    _positive(args.eval_trials, "--eval-trials")
    if args.data is None:
        if args.labels is not None or args.eval_trials != 1:
            raise SweepError("--labels and --eval-trials go with --data X.npz")
        return None
    labels = None if args.labels is None else load_labels(args.labels)
    return SweepData.of(load_inputs(args.data, "--data"), labels, args.eval_trials)


def build_search(args: argparse.Namespace, digests: list[str]) -> tuple[Search, int]:
    """The search the options describe and how many points it will evaluate at most."""
    space = parse_grid(args.grid)
    check_device_keys(space, args.data is not None)
    points = grid_points(space)
    check_points(points)
    constraints = constraints_of(args)
    objective = None if args.objective is None else column_of(args.objective, "--objective", args.data is not None)
    _positive(args.trials, "--trials")
    if args.search == "grid":
        if args.trials is not None or objective is not None:
            raise SweepError("--search grid evaluates every point; --trials and --objective go with --search "
                             "random or optuna")
        return GridSearch(digests, points), len(points) * len(digests)
    if args.trials is None:
        raise SweepError(f"--search {args.search}: give --trials N")
    if args.search == "random":
        return RandomSearch(digests, space, args.trials, args.seed), min(args.trials, len(points) * len(digests))
    if objective is None:
        raise SweepError("--search optuna: give --objective COLUMN (energy, latency, area, snr_db, ...)")
    return OptunaSearch(digests, space, args.trials, objective, constraints, seed=args.seed), args.trials


@contextmanager
def _points_display(total: int, enabled: bool) -> Iterator:
    """A progress bar of points done, failed and remaining (on a terminal, without -q)."""
    progress = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[note]}"),
                        TimeElapsedColumn(), console=Console(file=sys.stderr), transient=True, disable=not enabled)
    task = progress.add_task("sweep", total=total, note="")

    def on_row(row: dict, outcome: SweepOutcome) -> None:
        done = outcome.computed + outcome.resumed
        progress.update(task, completed=done, note=f"{outcome.failed} failed, {max(total - done, 0)} remaining")

    with progress:
        yield on_row


def sweep(args: argparse.Namespace) -> int:
    """Run the sweep `args` describe (parsed by commands/sweep.py's parser)."""
    _positive(args.workers, "--workers")
    _positive(args.connect_timeout, "--connect-timeout")
    _positive(args.timeout, "--timeout")
    if args.scheduler is not None:
        check_scheduler_address(args.scheduler)
    models = [SweepModel.load(path) for path in args.models]
    search, total = build_search(args, [model.digest for model in models])
    data = load_data(args)
    results = ResultsFile.checked(args.output)
    models_read = [("the input model", path) for path in args.models]
    check_distinct_files([("-o", results.path)], input_files(args, *models_read))
    plot_folder = None if args.plot is None else check_output_folder(args.plot, "--plot")
    with showing_progress(args), sweep_client(args.scheduler, args.workers, args.connect_timeout) as client, \
            _points_display(total, not args.quiet and sys.stderr.isatty()) as on_row:
        if isinstance(search, OptunaSearch):  # one trial per worker in flight: the sampler learns from the rest
            search.parallel = max(1, len(client.scheduler_info()["workers"]))
        outcome = run_sweep(client, models, search, results, args.resume, not args.no_verify, on_row,
                            args.timeout, data=data)
    shown = feasible(outcome.rows, constraints_of(args))  # the fronts of the points meeting --constraint
    written = [results.path] + (plot_fronts(shown, plot_folder) if plot_folder is not None else [])
    if not args.quiet:
        options = list(dict.fromkeys(name for row in outcome.rows for name in row if name in KEYS))
        if len(shown) < len(outcome.rows):
            print(f"{len(outcome.rows) - len(shown)} of {len(outcome.rows)} points miss a --constraint")
        print(front_table(shown, options))
        print(f"{outcome.computed} points computed ({outcome.failed} failed), {outcome.resumed} kept from "
              f"{results.path}")
        print("wrote " + ", ".join(map(str, written)))
    return 0
