"""`rcc sweep` on a local Dask cluster of two worker processes: a grid's rows equal the same points run one
by one, a worker killed mid-sweep loses no point, an interrupted sweep resumed recomputes nothing it had
written, the command line end to end, and the Optuna search. Every sweep has a timeout, so a stuck
cluster fails the test instead of hanging CI."""

from __future__ import annotations

import os
import signal

import pytest

from rcc.compiler.cli import main
from rcc.compiler.sweep import run_sweep, sweep_client
from rcc.compiler.sweep_point import TIMING_COLUMNS, SweepModel, evaluate_point
from rcc.compiler.sweep_results import ResultsFile
from rcc.compiler.sweep_search import Constraint, GridSearch, OptunaSearch
from rcc.compiler.sweep_space import grid_points, parse_grid
from tests.conftest import ROOT

MLP = ROOT / "models" / "mlp.onnx"
SWEEP_TIMEOUT = 120.0  # seconds; a healthy sweep here takes a few


@pytest.fixture(scope="module")
def client():
    with sweep_client(workers=2) as client:
        yield client


@pytest.fixture(scope="module")
def model() -> SweepModel:
    return SweepModel.load(MLP)


def _measured_removed(row: dict) -> dict:
    return {key: value for key, value in row.items() if key not in TIMING_COLUMNS}


@pytest.mark.slow
def test_48_point_grid_equals_the_points_run_one_by_one(client, model, tmp_path) -> None:
    points = grid_points(parse_grid(["xbar=64x64,128x128", "adc_bits=6,7,8,auto", "cell_bits=1,2",
                                     "dac_bits=1,2,4"]))
    assert len(points) == 48
    results = ResultsFile.checked(tmp_path / "grid.parquet")
    outcome = run_sweep(client, [model], GridSearch([model.digest], points), results, timeout=SWEEP_TIMEOUT)
    assert outcome.computed == 48 and outcome.failed == 0
    written = {row["point_id"]: _measured_removed(row) for row in results.read()}
    one_by_one = {row["point_id"]: _measured_removed(row) for row in (evaluate_point(model, p) for p in points)}
    assert written == one_by_one
    assert len({row["energy_pj"] for row in written.values()}) > 10  # the points really differ


def test_interrupted_sweep_resumes_without_recomputing(client, model, tmp_path) -> None:
    points = grid_points(parse_grid(["xbar=64x64,128x128", "adc_bits=6,7,auto"]))
    results = ResultsFile.checked(tmp_path / "r.csv")

    def interrupt_after_two(row, outcome) -> None:
        if outcome.computed == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(client, [model], GridSearch([model.digest], points), results, on_row=interrupt_after_two,
                  timeout=SWEEP_TIMEOUT)
    first = results.read()
    assert len(first) == 2 and all(row["status"] == "ok" for row in first)
    resumed = run_sweep(client, [model], GridSearch([model.digest], points), results, resume=True,
                        timeout=SWEEP_TIMEOUT)
    assert (resumed.resumed, resumed.computed) == (2, len(points) - 2)
    final = results.read()
    assert final[:2] == first  # the finished rows, measured times included, were kept, not recomputed
    assert sorted(row["point_id"] for row in final) == sorted(
        evaluate_point(model, p, verify=False)["point_id"] for p in points)
    again = run_sweep(client, [model], GridSearch([model.digest], points), results, resume=True,
                      timeout=SWEEP_TIMEOUT)
    assert (again.resumed, again.computed) == (len(points), 0) and results.read() == final


def test_optuna_search_minimises_under_a_constraint(client, model) -> None:
    space = parse_grid(["xbar=32x32,64x64,128x128", "adc_bits=4:8", "cell_bits=1,2"])
    search = OptunaSearch([model.digest], space, trials=8, objective="energy_pj",
                          constraints=(Constraint.parse("snr_db>=20"),), parallel=2)
    outcome = run_sweep(client, [model], search, timeout=SWEEP_TIMEOUT)
    assert len(search.study.trials) == 8 and 1 <= outcome.computed <= 8
    assert all(t.state.name in ("COMPLETE", "FAIL") for t in search.study.trials)
    feasible = [row for row in outcome.rows if row["status"] == "ok" and row["snr_db"] >= 20]
    if feasible:
        assert search.study.best_trial.value == min(row["energy_pj"] for row in feasible)


@pytest.mark.slow
def test_a_worker_killed_mid_sweep_loses_no_point(model, tmp_path) -> None:
    points = grid_points(parse_grid(["xbar=64x64,128x128", "adc_bits=5:9", "cell_bits=1,2"]))
    killed: list[int] = []
    with sweep_client(workers=2) as own_client:
        def kill_a_busy_worker(row, outcome) -> None:
            if killed:
                return
            busy = [address for address, keys in own_client.processing().items() if keys]
            if busy:
                pid = own_client.run(os.getpid, workers=[busy[0]])[busy[0]]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

        outcome = run_sweep(own_client, [model], GridSearch([model.digest], points),
                            ResultsFile.checked(tmp_path / "r.parquet"), on_row=kill_a_busy_worker,
                            timeout=SWEEP_TIMEOUT)
    assert killed, "no worker was busy after the first point: the test did not kill anything"
    assert outcome.computed == len(points) and outcome.failed == 0
    assert {row["point_id"] for row in outcome.rows} == {evaluate_point(model, p, verify=False)["point_id"]
                                                         for p in points}


def test_command_line_sweep_on_a_scheduler_plots_and_resumes(client, tmp_path, capsys) -> None:
    out, plots = tmp_path / "r.parquet", tmp_path / "plots"
    argv = ["sweep", str(MLP), "--grid", "xbar=64x64,128x128", "--grid", "packing=dense,best",
            "--scheduler", client.scheduler.address, "--timeout", str(SWEEP_TIMEOUT), "-o", str(out)]
    assert main([*argv, "--plot", str(plots)]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "Pareto front over energy_pj" in printed and "4 points computed (0 failed), 0 kept" in printed
    assert len(ResultsFile.checked(out).read()) == 4
    pngs = sorted(p.name for p in plots.iterdir())
    assert pngs == ["energy_pj-vs-crossbars.png", "energy_pj-vs-snr_db.png", "latency_ns-vs-area_mm2.png"]
    assert all((plots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for name in pngs)
    assert main([*argv, "--resume"]) == 0
    assert "0 points computed (0 failed), 4 kept" in capsys.readouterr().out
