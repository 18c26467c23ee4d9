"""Pareto fronts of a sweep's rows: which points no other point beats on every figure, a PNG per pair of
figures (`rcc sweep --plot DIR`), and the front as a terminal table.

    front = pareto_front(rows, ["energy_pj", "latency_ns", "area_mm2"])
    paths = plot_fronts(rows, Path("plots"))   # plots/energy_pj-vs-snr_db.png, ...

Every figure is minimised except those in `sweep_search.MAXIMISED` (accuracy, SNR, throughput, ...).
Without `--data` there is no accuracy column; the energy plot then pairs energy with the verified SNR.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure  # the object API renders with Agg and never touches pyplot's state

from rcc.compiler.summary import format_table
from rcc.compiler.sweep_search import MAXIMISED
from rcc.compiler.sweep_space import KEYS
from rcc.ir.files import write_output

Row = dict[str, Any]
PLOT_PAIRS = (("energy_pj", "accuracy"), ("energy_pj", "snr_db"), ("latency_ns", "area_mm2"),
              ("energy_pj", "crossbars"))
SUMMARY_FIGURES = ("energy_pj", "latency_ns", "area_mm2", "crossbars", "accuracy", "snr_db")


def _usable(row: Row, columns: list[str]) -> bool:
    return row.get("status") == "ok" and all(isinstance(row.get(c), (int, float)) and not
                                             (isinstance(row[c], float) and math.isnan(row[c])) for c in columns)


def _cost(row: Row, column: str) -> float:
    """The figure as something to minimise."""
    return -float(row[column]) if column in MAXIMISED else float(row[column])


def pareto_front(rows: list[Row], columns: list[str]) -> list[Row]:
    """The successful rows no other row dominates on `columns` (at least as good on all, better on one),
    sorted by the first column; rows missing a figure are left out."""
    candidates = [row for row in rows if _usable(row, columns)]
    costs = [tuple(_cost(row, c) for c in columns) for row in candidates]
    front = [row for row, mine in zip(candidates, costs)
             if not any(all(o <= m for o, m in zip(other, mine)) and other != mine for other in costs)]
    unique = list({tuple(row[c] for c in columns): row for row in front}.values())
    return sorted(unique, key=lambda row: _cost(row, columns[0]))


def plot_front(rows: list[Row], x: str, y: str, directory: Path) -> Path | None:
    """Write `directory/X-vs-Y.png`: every point, the front highlighted; None when no row has both figures."""
    usable = [row for row in rows if _usable(row, [x, y])]
    if not usable:
        return None
    front = pareto_front(usable, [x, y])
    figure = Figure(figsize=(7, 5), dpi=100, layout="constrained")
    ax = figure.subplots()
    ax.scatter([r[x] for r in usable], [r[y] for r in usable], s=14, color="0.6", label=f"{len(usable)} points")
    ax.plot([r[x] for r in front], [r[y] for r in front], "o-", color="tab:red", label=f"Pareto front ({len(front)})")
    ax.set_xlabel(x + (" (higher is better)" if x in MAXIMISED else ""))
    ax.set_ylabel(y + (" (higher is better)" if y in MAXIMISED else ""))
    finite = [r[x] for r in usable if math.isfinite(r[x]) and r[x] > 0]
    if finite and max(finite) / min(finite) > 100:
        ax.set_xscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{x} vs {y}", fontsize=11)
    directory.mkdir(exist_ok=True)
    path = directory / f"{x}-vs-{y}.png"
    stream = io.BytesIO()
    figure.savefig(stream, format="png")
    write_output(path, stream.getvalue())
    return path


def plot_fronts(rows: list[Row], directory: Path) -> list[Path]:
    """The PNGs of every pair in PLOT_PAIRS that the rows have figures for."""
    return [path for x, y in PLOT_PAIRS if (path := plot_front(rows, x, y, Path(directory))) is not None]


def front_table(rows: list[Row], options: list[str], limit: int = 20) -> str:
    """The front over the summary figures the rows carry, as a table of options and figures."""
    figures = [c for c in SUMMARY_FIGURES if any(_usable(row, [c]) for row in rows)]
    front = pareto_front(rows, figures) if figures else []
    if not front:
        return "no point finished, so there is no Pareto front"
    table = [[row["model"], *(KEYS[o].unset if row.get(o) is None else row[o] for o in options),
              *(row[c] if isinstance(row[c], int) else float(f"{row[c]:.4g}") for c in figures)]
             for row in front[:limit]]
    more = f"\n({len(front) - limit} more points on the front)" if len(front) > limit else ""
    title = f"Pareto front over {', '.join(figures)}: {len(front)} of {len(rows)} points\n"
    return title + format_table(["model", *options, *figures], table) + more
