"""The schedule in words and pictures, from a report with costs (`build_report(..., chip)`): per layer its
copies, arrays, stage time and share of the pipeline's bottleneck (the bottleneck marked), the pipeline's
latency and throughput, the phases of a model larger than the chip with their write cost, and a
Gantt-style PNG of one inference (`rcc --plot DIR` writes `pipeline.png`).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from rcc.compiler.summary import format_table
from rcc.ir.files import write_output


def is_scheduled(cost: dict[str, Any], layers: list[dict[str, Any]]) -> bool:
    """Whether the schedule is more than one copy of every layer run one after another in one phase."""
    return cost["pipeline"] != "none" or cost["phases"] > 1 or any(r["cost"]["copies"] > 1 for r in layers)


def format_schedule(report: dict[str, Any]) -> str:
    """The per-layer schedule table and a line on latency, throughput and phases."""
    cost, rows = report["totals"]["cost"], report["layers"]
    table = [[r["name"], r["cost"]["copies"], r["cost"]["arrays"], r["cost"]["phase"],
              float(f"{r['cost']['latency_ns'] / 1e3:.4g}"), f"{100 * r['cost']['stage_share']:.1f}%",
              "◀ bottleneck" if r["cost"]["bottleneck"] else ""] for r in rows]
    lines = [format_table(["layer", "copies", "arrays", "phase", "stage_us", "share", ""], table)]
    throughput = cost["throughput_inf_s"]
    lines.append(f"pipeline {cost['pipeline']}: latency {cost['latency_ns'] / 1e3:.4g} µs per inference, "
                 f"throughput {throughput:.4g} inferences/s" if throughput else f"pipeline {cost['pipeline']}")
    if cost["phases"] > 1:
        lines.append(f"the model is larger than the chip: {cost['phases']} phases reprogram its "
                     f"{cost['arrays']} arrays, writes take {cost['write_latency_ns'] / 1e3:.4g} µs and "
                     f"{cost['energy_breakdown_pj']['write'] / 1e6:.4g} µJ per inference (batch {cost['batch']})")
    return "\n".join(lines)


def plot_pipeline(report: dict[str, Any], directory: Path) -> Path:
    """Write `directory/pipeline.png`: each layer's span in one inference (writes in grey, the
    bottleneck in red); return the path."""
    from matplotlib.figure import Figure  # matplotlib only when a plot is asked for

    directory = Path(directory)
    directory.mkdir(exist_ok=True)
    cost, rows = report["totals"]["cost"], report["layers"]
    spans = [(f"write phase {i}", start, finish, "0.6") for i, (start, finish) in enumerate(cost["writes"])]
    spans += [(r["name"], r["cost"]["start_ns"], r["cost"]["finish_ns"],
               "tab:red" if r["cost"]["bottleneck"] else "tab:blue") for r in rows]
    spans.sort(key=lambda span: span[1])
    figure = Figure(figsize=(11, 1.5 + 0.3 * max(len(spans), 4)), dpi=100, layout="constrained")
    ax = figure.subplots()
    for index, (name, start, finish, colour) in enumerate(spans):
        ax.barh(index, (finish - start) / 1e3, left=start / 1e3, color=colour)
    ax.set_yticks(range(len(spans)), [span[0] for span in spans], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("time in one inference (µs)")
    ax.set_title(f"Pipeline {cost['pipeline']} on {cost['chip']}: latency {cost['latency_ns'] / 1e3:.4g} µs, "
                 f"throughput {cost['throughput_inf_s'] or 0:.4g} inferences/s (bottleneck in red)", fontsize=11)
    ax.grid(axis="x", alpha=0.3)
    stream = io.BytesIO()
    figure.savefig(stream, format="png")
    path = directory / "pipeline.png"
    write_output(path, stream.getvalue())
    return path
