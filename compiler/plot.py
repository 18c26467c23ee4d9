"""Pictures of how sparse layers sit on crossbars: one PNG per sparse `mvm` comparing the dense tiling
with the packed blocks (`rcc --plot DIR`).

    paths = plot_sparse_layers(compiled.program, Path("plots"))   # plots/fc1.matmul.png, ...

Each figure shows the weights' non-zero pattern with the dense tile grid, the utilisation of every dense
tile, the per-array utilisation before and after packing sorted from fullest to emptiest, and both
utilisation histograms. Utilisation is the fraction of an array's cells holding a non-zero level, the
figure of `backends.mapping.array_occupancy` (a table look-up per weight, so a 25088×4096 layer
renders in seconds).
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # the object API renders with Agg and never touches pyplot's state
from matplotlib import colormaps
from matplotlib.colors import PowerNorm
from matplotlib.ticker import MaxNLocator, PercentFormatter

from rcc.backends.mapping import CrossbarMapping, block_occupancy, cell_codes, sum_runs, tile_occupancy
from rcc.backends.program import Program
from rcc.ir.files import check_output_folder, write_output
from rcc.runtime.schedule import array_owners

PATTERN_PIXELS = 480  # the non-zero pattern is binned down to at most this many pixels a side
MAX_GRID_LINES = 48   # tile boundaries drawn over the pattern only while they stay readable
SORTED_STEPS = 1000   # steps of the sorted-utilisation curves (a 50 000-step patch takes seconds to draw)
DENSE_COLOUR, PACKED_COLOUR = "0.55", "tab:orange"
# Sparse layers fill a few percent of their cells: a square-root colour scale (its bar still reads 0–100%)
# and utilisation axes zoomed to the fullest array keep those few percent visible.
UTILISATION_NORM = PowerNorm(gamma=0.5, vmin=0.0, vmax=1.0)
UTILISATION_TICKS = [0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0]
ZOOM_LIMITS = (0.05, 0.1, 0.2, 0.3, 0.5, 1.0)


def plot_sparse_layers(program: Program, directory: Path, min_sparsity: float = 0.5) -> list[Path]:
    """Write `directory/<layer>.png` for every `mvm` whose weights are at least `min_sparsity` zeros, and
    for every packed one, once per set of arrays (not again for an mvm on an earlier one's: a recurrent step);
    return the paths written."""
    directory = Path(directory)
    check_output_folder(directory, "--plot")
    directory.mkdir(exist_ok=True)
    written: list[Path] = []
    used_names: set[str] = set()
    for instruction, owner in zip(program.instructions, array_owners(program)):
        if instruction.opcode != "mvm" or owner is not None:
            continue
        weights = program.constants[instruction.src[1]]
        maps = [program.constants[name] for name in instruction.src[2:]]
        sparsity = 1.0 - np.count_nonzero(weights) / weights.size if weights.size else 0.0
        if not maps and sparsity < min_sparsity:
            continue
        layer = str(instruction.attrs.get("layer") or instruction.dst[0])
        path = directory / f"{_unique(_safe_name(layer), used_names)}.png"
        figure = layer_figure(layer, weights, instruction.attrs, *maps)
        _save(figure, path)
        written.append(path)
    return written


def plot_energy_breakdown(report: dict, directory: Path) -> Path:
    """Write `directory/energy.png`: each layer's energy per inference as a bar stacked by component,
    from a report with costs (`build_report(..., chip)`, `rcc --plot DIR`); return the path."""
    directory = Path(directory)
    directory.mkdir(exist_ok=True)
    layers = {row["name"]: row["cost"]["energy_breakdown_pj"] for row in report["layers"]
              if row["cost"]["energy_pj"] > 0}
    totals = report["totals"]["cost"]
    components = [c for c in totals["energy_breakdown_pj"] if any(b[c] > 0 for b in layers.values())]
    figure = Figure(figsize=(11, 1.5 + 0.3 * max(len(layers), 4)), dpi=100, layout="constrained")
    ax = figure.subplots()
    left = np.zeros(len(layers))
    for index, component in enumerate(components):
        widths = np.array([b[component] for b in layers.values()]) / 1e3
        ax.barh(list(layers), widths, left=left, label=component, color=colormaps["tab20"](index))
        left += widths
    ax.invert_yaxis()
    ax.set_xlabel("energy per inference (nJ)")
    ax.set_title(f"Energy per layer by component on {totals['chip']}: {totals['energy_pj'] / 1e6:.4g} µJ, "
                 f"{totals['latency_ns'] / 1e3:.4g} µs per inference", fontsize=11)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    path = directory / "energy.png"
    _save(figure, path)
    return path


def layer_figure(layer: str, weights: np.ndarray, attrs: dict, row_map: np.ndarray | None = None,
                 col_map: np.ndarray | None = None) -> Figure:
    """The before/after packing figure of one `mvm` (weights [G, K, M], maps as in its program)."""
    groups, rows, outputs = weights.shape
    mapping = CrossbarMapping.of(attrs, weights.shape)
    codes, table = cell_codes(weights, attrs)
    dense = tile_occupancy(codes, table, attrs)                # [signs, G, row tiles, col tiles]
    dense_arrays = np.moveaxis(dense, 0, -1).reshape(-1)       # array_occupancy's order
    packed = block_occupancy(codes, table, attrs, row_map, col_map) if row_map is not None else None
    sparsity = 1.0 - np.count_nonzero(weights) / weights.size if weights.size else 0.0

    figure = Figure(figsize=(13, 9), dpi=100, layout="constrained")
    (pattern_ax, tiles_ax), (sorted_ax, histogram_ax) = figure.subplots(2, 2)
    shape = (f"{groups} groups of " if groups > 1 else "") + f"{rows}×{outputs}"
    after = f"{packed.size} packed ({attrs.get('packing', '?')})" if packed is not None else "not packed"
    figure.suptitle(f"{layer}: weights {shape} (inputs × outputs), {sparsity:.1%} zeros\n"
                    f"crossbars {dense_arrays.size} dense → {after}, "
                    f"{mapping.xbar_rows}×{mapping.xbar_cols} arrays, {mapping.weight_slices} slices/weight, "
                    f"{mapping.encoding} encoding", fontsize=13)
    _draw_pattern(pattern_ax, weights, mapping, figure)
    _draw_tiles(tiles_ax, dense, figure)
    fullest = max(dense_arrays.max(initial=0.0), packed.max(initial=0.0) if packed is not None else 0.0)
    zoom = next(limit for limit in ZOOM_LIMITS if limit >= min(1.0, fullest * 1.05))
    _draw_sorted(sorted_ax, dense_arrays, packed, attrs, zoom)
    _draw_histograms(histogram_ax, dense_arrays, packed, zoom)
    return figure


# ---- panels --------------------------------------------------------------------------------------------

def _side_by_side(per_group: np.ndarray) -> np.ndarray:
    """[G, A, B] → [A, G·B]: groups laid next to each other."""
    groups, height, width = per_group.shape
    return per_group.transpose(1, 0, 2).reshape(height, groups * width)


def _binned_density(mask: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Fraction of True per pixel after binning a 2-D mask to at most PATTERN_PIXELS a side."""
    height, width = mask.shape
    row_bin, col_bin = -(-height // PATTERN_PIXELS), -(-width // PATTERN_PIXELS)
    counts = sum_runs(sum_runs(mask, 0, row_bin), 1, col_bin)
    pixel_sizes = np.outer(np.minimum(row_bin, height - np.arange(0, height, row_bin)),
                           np.minimum(col_bin, width - np.arange(0, width, col_bin)))
    return counts / pixel_sizes, row_bin, col_bin


def _draw_pattern(ax, weights: np.ndarray, mapping: CrossbarMapping, figure: Figure) -> None:
    groups, rows, outputs = weights.shape
    density, row_bin, col_bin = _binned_density(_side_by_side(weights != 0))
    image = ax.imshow(density, cmap="Greys", norm=UTILISATION_NORM, aspect="auto", interpolation="nearest",
                      extent=(0, groups * outputs, rows, 0))
    binned = f", {row_bin}×{col_bin} weights per pixel" if row_bin * col_bin > 1 else ""
    per_array = mapping.weights_per_array_row
    row_lines = np.arange(mapping.xbar_rows, rows, mapping.xbar_rows)
    col_lines = np.concatenate([np.arange(g * outputs + per_array, (g + 1) * outputs, per_array)
                                for g in range(groups)])
    if row_lines.size <= MAX_GRID_LINES and col_lines.size <= MAX_GRID_LINES:
        ax.hlines(row_lines, 0, groups * outputs, colors="tab:blue", linewidth=0.6, alpha=0.7)
        ax.vlines(col_lines, 0, rows, colors="tab:blue", linewidth=0.6, alpha=0.7)
        grid = f"blue lines: dense tiles of {mapping.xbar_rows} rows × {per_array} outputs"
    else:
        grid = f"tile grid ({row_lines.size + 1}×{col_lines.size + groups} tiles) too fine to draw"
    if 1 < groups <= MAX_GRID_LINES:
        ax.vlines(np.arange(outputs, groups * outputs, outputs), 0, rows, colors="tab:red", linewidth=1.2)
        grid += "; red lines: groups"
    ax.set_title(f"Non-zero weights{binned}\n{grid}", fontsize=10)
    ax.set_xlabel("output" + (" (groups side by side)" if groups > 1 else ""))
    ax.set_ylabel("input row")
    figure.colorbar(image, ax=ax, label="non-zero weights per pixel (square-root scale)", ticks=UTILISATION_TICKS,
                    format=PercentFormatter(1.0, decimals=0))


def _draw_tiles(ax, dense: np.ndarray, figure: Figure) -> None:
    signs, groups, row_tiles, col_tiles = dense.shape
    per_tile = _side_by_side(dense.mean(axis=0))  # a pair's two arrays: used cells over both
    image = ax.imshow(per_tile, cmap="viridis", norm=UTILISATION_NORM, aspect="auto", interpolation="nearest",
                      extent=(-0.5, groups * col_tiles - 0.5, row_tiles - 0.5, -0.5))
    if 1 < groups <= MAX_GRID_LINES:
        ax.vlines(np.arange(col_tiles, groups * col_tiles, col_tiles) - 0.5, -0.5, row_tiles - 0.5,
                  colors="tab:red", linewidth=1.2)
    unit = "tile (mean of its ± array pair)" if signs == 2 else "array"
    ax.set_title(f"BEFORE packing: utilisation per dense {unit}\n"
                 f"{_count(row_tiles, 'row tile')} × {_count(col_tiles, 'column tile')}"
                 + (f" × {groups} groups" if groups > 1 else ""),
                 fontsize=10)
    ax.set_xlabel("column tile" + (" (groups side by side)" if groups > 1 else ""))
    ax.set_ylabel("row tile")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    figure.colorbar(image, ax=ax, label="cells holding a non-zero level (square-root scale)",
                    ticks=UTILISATION_TICKS, format=PercentFormatter(1.0, decimals=0))


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _zoom_note(zoom: float) -> str:
    return "" if zoom >= 1.0 else f"axis zoomed to 0–{zoom:.0%}: no array is fuller"


def _draw_sorted(ax, dense: np.ndarray, packed: np.ndarray | None, attrs: dict, zoom: float) -> None:
    series = [("dense tiling", dense, DENSE_COLOUR)]
    if packed is not None:
        series.append((f"packed ({attrs.get('packing', '?')})", packed, PACKED_COLOUR))
    for label, occupancy, colour in series:
        if not occupancy.size:
            continue
        # At most SORTED_STEPS steps, each the mean of the arrays it stands for, so areas stay exact.
        ordered = np.sort(occupancy)[::-1]
        edges = np.unique(np.linspace(0, ordered.size, min(ordered.size, SORTED_STEPS) + 1).astype(np.int64))
        heights = np.add.reduceat(ordered, edges[:-1]) / np.diff(edges)
        ax.stairs(heights, edges, fill=True, color=colour, alpha=0.55,
                  label=f"{label}: {occupancy.size} arrays, mean {occupancy.mean():.1%}")
        ax.stairs(heights, edges, color=colour, linewidth=1.2)
    ax.set_xlim(0, max(occupancy.size for _, occupancy, _ in series) or 1)
    ax.set_ylim(0, zoom)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    if packed is None:
        areas = "(layer not packed: the dense tiling is what runs)"
    elif np.isclose(packed.sum(), dense.sum()):
        areas = "(equal areas: the same non-zero cells on fewer arrays)"
    else:
        areas = f"(areas differ: {packed.sum() / dense.sum():.2f}× the dense tiling's non-zero cells)"
    heading = "AFTER packing: every" if packed is not None else "Every"
    ax.set_title(f"{heading} array's utilisation, fullest first\n{areas}\n{_zoom_note(zoom)}",
                 fontsize=10)
    ax.set_xlabel("arrays (sorted)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_ylabel("cells holding a non-zero level")
    ax.legend(loc="upper right", fontsize=9)
    ax.grid(alpha=0.3)


def _draw_histograms(ax, dense: np.ndarray, packed: np.ndarray | None, zoom: float) -> None:
    """Ten bins over the zoomed range (the report's `utilization_histogram` uses ten over 0–100%)."""
    edges = np.linspace(0.0, zoom, 11)
    ax.stairs(np.histogram(dense, edges)[0], edges, fill=True, color=DENSE_COLOUR, alpha=0.55,
              label=f"dense tiling ({dense.size} arrays)")
    if packed is not None:
        ax.stairs(np.histogram(packed, edges)[0], edges, color=PACKED_COLOUR, linewidth=2.2,
                  label=f"packed ({packed.size} arrays)")
    ax.set_xticks(edges)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=1 if zoom < 0.1 else 0))
    ax.set_xlim(0, zoom)
    ax.set_title(f"Utilisation histograms, overlaid\n{_zoom_note(zoom)}", fontsize=10)
    ax.set_xlabel(f"cells holding a non-zero level ({zoom * 10:g}% bins)")
    ax.set_ylabel("arrays")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.legend(loc="upper right", fontsize=9)
    ax.grid(axis="y", alpha=0.3)


# ---- files ---------------------------------------------------------------------------------------------

def _safe_name(layer: str) -> str:
    """A file name for a layer: characters outside [A-Za-z0-9._-] become '_', and no leading dot."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", layer).lstrip(".") or "layer"


def _unique(name: str, used: set[str]) -> str:
    candidate, number = name, 2
    while candidate in used:
        candidate, number = f"{name}_{number}", number + 1
    used.add(candidate)
    return candidate


def _save(figure: Figure, path: Path) -> None:
    stream = io.BytesIO()
    figure.savefig(stream, format="png")
    write_output(path, stream.getvalue())
