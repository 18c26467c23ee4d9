"""Benchmark: `rcc sweep`'s throughput on a local Dask cluster with 1 and 2 workers, and what the engine
costs per point beyond the point's own work.

For a grid of `--points` points on a zoo model (default `models/mlp.onnx`, compile + cost + verify):

1. serial: `evaluate_point` in this process, one after another (after one warm-up point);
2. for each worker count: start a local cluster (`sweep_client`, timed separately), run one warm-up
   sweep (the workers import rcc and read the model), then time `run_sweep` over the grid, writing a
   Parquet results file as the CLI does.

Columns: `points/s` = points ÷ wall time of the sweep; `work s/pt` = the mean of the rows' `seconds`
(the time evaluate_point took inside a worker); `overhead ms/pt` = (wall × workers − Σ seconds) ÷ points,
the time a worker slot spent not computing a point (scheduling, transfer, results, idle at the tail),
per point; `startup s` = creating the cluster. The machine's core count and load average are printed:
on a shared machine, other processes take cores from the workers.

    python bench/sweep.py                      # 48 points, 1 and 2 workers
    python bench/sweep.py --points 96 --model models/lenet5.onnx
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from rcc.compiler.sweep import run_sweep, sweep_client
from rcc.compiler.sweep_point import SweepModel, evaluate_point
from rcc.compiler.sweep_results import ResultsFile
from rcc.compiler.sweep_search import GridSearch
from rcc.compiler.sweep_space import grid_points, parse_grid

REPO = Path(__file__).resolve().parent.parent
GRID = ["xbar=64x64,128x128", "adc_bits=6,7,8,auto", "cell_bits=1,2", "dac_bits=1,2,4", "packing=dense,best",
        "encoding=differential,offset"]


def measure(workers: int, model: SweepModel, points: list[dict], folder: Path) -> dict:
    started = time.perf_counter()
    with sweep_client(workers=workers) as client:
        startup = time.perf_counter() - started
        run_sweep(client, [model], GridSearch([model.digest], [{"seed": 99}]))  # warm-up: imports, model file
        results = ResultsFile.checked(folder / f"bench-{workers}.parquet")
        started = time.perf_counter()
        outcome = run_sweep(client, [model], GridSearch([model.digest], points), results)
        wall = time.perf_counter() - started
    work = sum(row["seconds"] for row in outcome.rows)
    assert outcome.computed == len(points) and outcome.failed == 0, outcome.rows
    return {"workers": workers, "points_per_s": len(points) / wall, "work_s": work / len(points),
            "overhead_ms": 1e3 * (wall * workers - work) / len(points), "startup_s": startup, "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "models" / "mlp.onnx"))
    parser.add_argument("--points", type=int, default=48, help="points of the grid to run (default 48)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    model = SweepModel.load(args.model)
    points = grid_points(parse_grid(GRID))[:args.points]
    print(f"model {model.name}, {len(points)} points, {os.cpu_count()} cores, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    evaluate_point(model, points[0])
    started = time.perf_counter()
    serial = [evaluate_point(model, point) for point in points]
    serial_wall = time.perf_counter() - started
    print(f"serial (one process, no Dask): {len(points) / serial_wall:.2f} points/s, "
          f"{serial_wall / len(points) * 1e3:.1f} ms/point")
    assert all(row["status"] == "ok" for row in serial)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for workers in args.workers:
            rows.append(measure(workers, model, points, Path(folder)))
    print(f"{'workers':>7}  {'points/s':>8}  {'work s/pt':>9}  {'overhead ms/pt':>14}  {'startup s':>9}  "
          f"{'wall s':>6}")
    for r in rows:
        print(f"{r['workers']:>7}  {r['points_per_s']:>8.2f}  {r['work_s']:>9.3f}  {r['overhead_ms']:>14.1f}  "
              f"{r['startup_s']:>9.2f}  {r['wall_s']:>6.2f}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
