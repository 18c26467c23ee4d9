"""`rcc sweep MODEL.onnx [MODEL ...] --grid KEY=VALUES ... -o RESULTS`: design-space exploration on Dask
(a local cluster, or `--scheduler tcp://HOST:PORT`), results written as points finish, `--resume`,
random and Optuna searches, Pareto-front plots and the front's table. The options are here; the run is
sweep_run.py, imported only when a sweep runs (Dask, Optuna and pyarrow take seconds to import, which
every other `rcc` command would otherwise pay)."""

from __future__ import annotations

import argparse

from rcc.compiler.commands.common import Parser, add_common_arguments
from rcc.compiler.sweep_space import KEYS

SEARCHES = ("grid", "random", "optuna")


def parser() -> argparse.ArgumentParser:
    parser = Parser(prog="rcc sweep", usage="rcc sweep MODEL.onnx [MODEL ...] --grid KEY=VALUES ... -o RESULTS",
                    description="Evaluate many design points (compile, cost, verify) as Dask tasks and write one "
                                "row per point. Keys: " + ", ".join(KEYS) + ".")
    parser.add_argument("models", nargs="+", metavar="MODEL.onnx", help="the ONNX models")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=VALUES",
                        help="values of one key: V1,V2,... or LOW:HIGH[:STEP] (inclusive) for whole numbers "
                             "(repeatable; e.g. --grid xbar=64x64,128x128 --grid adc_bits=4:9)")
    parser.add_argument("-o", "--output", required=True, metavar="RESULTS.parquet|RESULTS.csv",
                        help="results file; the extension picks Parquet or CSV")
    parser.add_argument("--resume", action="store_true",
                        help="keep the points already in the results file and compute only the others")
    parser.add_argument("--search", choices=SEARCHES, default="grid",
                        help="grid: every point (default); random: --trials points of the grid; optuna: "
                             "--trials points chosen by Optuna's TPE sampler to optimise --objective")
    parser.add_argument("--trials", type=int, metavar="N", help="points to evaluate with --search random|optuna")
    parser.add_argument("--objective", metavar="COLUMN",
                        help="figure --search optuna optimises (energy, latency, area, crossbars, snr_db, ...)")
    parser.add_argument("--constraint", action="append", default=[], metavar="COLUMN>=X",
                        help="a condition feasible points meet, like snr_db>=30 or accuracy>=0.97 (repeatable); "
                             "the Pareto front and plots show feasible points only")
    parser.add_argument("--seed", type=int, default=0, help="seed of --search random and optuna (default 0)")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip the run against onnxruntime (no snr_db, rel_l2, max_abs_err columns)")
    parser.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                        help="run on this Dask cluster (default: a local cluster of worker processes)")
    parser.add_argument("--workers", type=int, metavar="N", help="local cluster size (default: one per core)")
    parser.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS",
                        help="give up reaching --scheduler after this long (default 10)")
    parser.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="stop the sweep after this long; finished points are written (--resume goes on)")
    parser.add_argument("--data", metavar="X.npz", help="measure every point's accuracy on these inputs (keyed by "
                        "input name, samples first) with rcc eval's machinery; enables the device keys")
    parser.add_argument("--labels", metavar="Y.npy", help="integer labels of --data (else: agreement with "
                        "onnxruntime)")
    parser.add_argument("--eval-trials", type=int, default=1, metavar="N",
                        help="device seeds each point's --data accuracy averages over (default 1)")
    parser.add_argument("--plot", metavar="DIR", help="write Pareto-front PNGs here")
    add_common_arguments(parser)
    return parser


def sweep_command(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    from rcc.compiler.commands import sweep_run  # heavy imports only when sweeping (see the docstring)

    return sweep_run.sweep(args)
