"""`rcc sweep` without a cluster: grids and their errors (one line naming the key, exit 2, nothing
written), an unreachable scheduler, one point's row, the results file's formats and the Pareto front."""

from __future__ import annotations

import math
import time

import pytest

from rcc.compiler.cli import main
from rcc.compiler.sweep_plot import front_table, pareto_front
from rcc.compiler.sweep_point import FIGURE_COLUMNS, SweepModel, evaluate_point
from rcc.compiler.sweep_results import ResultsFile
from rcc.compiler.sweep_search import Constraint, RandomSearch
from rcc.compiler.sweep_space import SweepError, check_points, grid_points, parse_grid, point_id, point_settings
from tests.conftest import ROOT

MLP = ROOT / "models" / "mlp.onnx"


def test_grid_values_ranges_and_points() -> None:
    space = parse_grid(["xbar=64x64,128", "adc_bits=4:9:2,auto", "packing=dense,best", "cell_bits=1:2"])
    assert space == {"xbar": ["64x64", "128x128"], "adc_bits": [4, 6, 8, None], "packing": ["dense", "best"],
                     "cell_bits": [1, 2]}
    points = grid_points(space)
    assert len(points) == 2 * 4 * 2 * 2 and points[1] == {"xbar": "64x64", "adc_bits": 4, "packing": "dense",
                                                          "cell_bits": 2}
    settings = point_settings({"xbar": "64x32", "adc_bits": None, "prune": "0.2", "cost_model": "puma"})
    assert (settings.target.xbar_rows, settings.target.xbar_cols, settings.target.adc_bits) == (64, 32, None)
    assert settings.compile_options["prune"].fraction == 0.2 and settings.cost_model == "puma"
    assert parse_grid(["mixed_precision=none,auto,35"]) == {"mixed_precision": [None, "auto", "35"]}
    goals = [point_settings({"mixed_precision": value, "input_bits": 6}).compile_options.get("mixed_precision")
             for value in (None, "auto", "35")]
    assert goals == [None, pytest.approx(6.02 * 6 - 22 + 3), 35.0]  # auto: the point's own bound + 3 dB
    assert point_id("d", points[0]) == point_id("d", dict(reversed(points[0].items())))
    assert point_id("d", points[0]) != point_id("e", points[0])


@pytest.mark.parametrize("grid, message", [
    (["speed=1,2"], "--grid speed: unknown key"),
    (["adc_bits=9:4"], "--grid adc_bits=9:4: range '9:4' is empty"),
    (["adc_bits="], "--grid adc_bits=: an empty value"),
    (["adc_bits=six"], "--grid adc_bits=six: expected a whole number, got 'six'"),
    (["adc_bits=auto:9"], "--grid adc_bits=auto:9: expected a whole number, got 'auto'"),
    (["packing=tight"], "--grid packing=tight: choose from"),
    (["xbar=64x64", "xbar=32x32"], "--grid xbar: given twice"),
    (["xbar=64x64", "xbar_rows=32"], "--grid xbar: give either"),
    (["cell_bits=1,8"], "--grid cell_bits=8: --cell-bits 8 exceeds"),
    (["weight_bits=4", "cell_bits=4"], "--grid weight_bits=4, cell_bits=4: --cell-bits 4 exceeds"),
    (["cost_model=sparkle"], "--grid cost_model=sparkle:"),
    (["mixed_precision=loud"], "--grid mixed_precision=loud: --mixed-precision 'loud': give auto or an SNR goal"),
])
def test_bad_grid_is_one_line_exit_2(grid, message, tmp_path, capsys) -> None:
    argv = ["sweep", str(MLP), "-o", str(tmp_path / "r.parquet")]
    for item in grid:
        argv += ["--grid", item]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"rcc: error: {message}") and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, message", [
    (["--search", "random"], "--search random: give --trials N"),
    (["--search", "optuna", "--trials", "3"], "--search optuna: give --objective"),
    (["--trials", "3"], "--search grid evaluates every point"),
    (["--search", "optuna", "--trials", "3", "--objective", "accuracy"], "--objective accuracy: accuracy needs --data"),
    (["--search", "optuna", "--trials", "3", "--objective", "joy"], "--objective joy: not a results column"),
    (["--search", "random", "--trials", "0"], "--trials must be positive"),
    (["--constraint", "snr_db=>3"], "--constraint 'snr_db=>3': expected COLUMN>=NUMBER"),
    (["-o", "r.txt"], "-o r.txt: the results file must end in .parquet, .pq or .csv"),
])
def test_bad_search_options_are_one_line_exit_2(argv, message, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", str(MLP), "-o", "r.csv", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"rcc: error: {message}") and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


def test_unreachable_scheduler_is_one_line_not_a_hang(tmp_path, capsys) -> None:
    started = time.monotonic()
    assert main(["sweep", str(MLP), "--scheduler", "tcp://127.0.0.1:9", "--connect-timeout", "1",
                 "-o", str(tmp_path / "r.csv")]) == 2
    assert time.monotonic() - started < 30
    err = capsys.readouterr().err
    assert err.startswith("rcc: error: --scheduler tcp://127.0.0.1:9: cannot reach") and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


def test_a_point_row_and_a_failing_point() -> None:
    model = SweepModel.load(MLP)
    row = evaluate_point(model, {"xbar": "64x64", "adc_bits": 6})
    assert row["status"] == "ok" and row["error"] is None and row["model"] == "mlp" and row["xbar"] == "64x64"
    assert all(row[column] is not None for column in FIGURE_COLUMNS)
    assert row["crossbars"] > 0 and row["energy_pj"] > 0 and row["snr_db"] > 20 and row["verify_passed"]
    # smaller arrays: more of them for the same weights
    assert evaluate_point(model, {"xbar": "128x128"})["crossbars"] < row["crossbars"]
    failed = evaluate_point(model, {"xbar": "2x2"})  # two columns cannot hold one weight's slices
    assert failed["status"] == "failed" and "--xbar columns (2)" in failed["error"] and failed["energy_pj"] is None
    assert "\n" not in failed["error"]


@pytest.mark.parametrize("name", ["r.parquet", "r.csv"])
def test_results_file_round_trip(name, tmp_path) -> None:
    rows = [{"point_id": "a", "model": "m", "adc_bits": None, "prune": "0.2", "status": "ok", "error": None, "snr_db": math.inf,
             "energy_pj": 1.5, "verify_passed": True},
            {"point_id": "b", "model": "m", "adc_bits": 6, "prune": None, "status": "failed", "error": "no", "snr_db": None,
             "energy_pj": None, "verify_passed": None}]
    results = ResultsFile.checked(tmp_path / name)
    assert results.read() == []
    results.write(rows)
    assert results.read() == rows
    digits = [{**rows[0], "point_id": "123"}, {**rows[1], "point_id": "1e5"}]  # ids that look like numbers
    results.write(digits)
    assert results.read() == digits
    results.write(results.read() + [{**rows[0], "point_id": "abc"}])  # a resumed sweep appends
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(SweepError, match="no point_id column"):
        ResultsFile.checked(tmp_path / "other.csv").read()


def test_pareto_front_keeps_exactly_the_undominated_points() -> None:
    rows = [{"model": "m", "status": "ok", "energy_pj": e, "snr_db": s, "xbar": str(i)}
            for i, (e, s) in enumerate([(1, 10), (2, 30), (3, 20), (2, 25), (4, 40), (1, 5)])]
    rows.append({"model": "m", "status": "failed", "energy_pj": None, "snr_db": None, "xbar": "x"})
    front = pareto_front(rows, ["energy_pj", "snr_db"])  # snr is maximised
    assert [(r["energy_pj"], r["snr_db"]) for r in front] == [(1, 10), (2, 30), (4, 40)]
    table = front_table(rows, ["xbar"])
    assert "3 of 7 points" in table.splitlines()[0]


def test_the_front_table_says_what_an_unset_option_means() -> None:
    rows = [{"model": "m", "status": "ok", "energy_pj": 1.0, "snr_db": 20.0, "mixed_precision": None,
             "prune": None, "adc_bits": None}]
    last = front_table(rows, ["mixed_precision", "prune", "adc_bits"]).splitlines()[-1].split()
    assert last[:4] == ["m", "none", "none", "auto"]  # no goal, no budget; the ADC width rcc chooses


def test_random_search_and_constraints() -> None:
    space = parse_grid(["adc_bits=4:9", "cell_bits=1,2"])
    check_points(grid_points(space))
    drawn = RandomSearch(["d"], space, 5, seed=1).propose(0)
    assert len(drawn) == 5 == len({repr(p) for p in drawn}) and drawn == RandomSearch(["d"], space, 5, 1).propose(0)
    assert len(RandomSearch(["d"], space, 100).propose(0)) == 12
    constraint = Constraint.parse("snr>=30")
    assert constraint.column == "snr_db"
    assert constraint.violation({"snr_db": 31.0}) == 0 and constraint.violation({"snr_db": 25.0}) == 5.0
    assert constraint.violation({"snr_db": None}) > 0
