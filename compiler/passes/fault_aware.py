"""`fault-aware`: knowing which cells of each array are stuck, permute every array's rows and output columns
so that zero and small weights land on stuck-off cells and large ones avoid stuck-on cells.

    %acc = xbar.mvm(%xq, %wq) {packing = "dense", arrays = 4, ...}
        →
    %acc = xbar.mvm(%xq, %wq, %acc.row_map, %acc.col_map) {packing = "fault-aware", arrays = 4, ...}

A cell's cost is what it would read wrong, in units of the layer's least significant slice: a stuck-off cell
holding level l costs l·2^(cell_bits·s), a stuck-on one (L − l)·2^(cell_bits·s) (s: the cell's slice). Per
array (pair: both sign arrays share the wiring) the pass alternates two linear assignments (Hungarian
method, scipy's `linear_sum_assignment`), rows onto physical rows with the columns fixed, then outputs onto
output positions with the rows fixed, for `rounds` rounds, and keeps the cheapest placement seen, the
given one included, so it never makes the mapping worse by its own measure. Spare rows (a tile with fewer
rows than the array) and spare output positions are used as they come.

The placement is written as a packed layer's maps (`row_map`/`col_map`, the position in a map being the
physical row or output slot), so it composes with `pack-crossbars` (run it after) and the machine needs
nothing new; a dense layer becomes a packed one with its tiles as blocks, in the tiles' order, so arrays
keep their numbers (rcc.backends.faults). Results are unchanged bit for bit with perfect cells.
Spare columns (target `spare_columns` per array): after the placement, each array's columns that still read
wrong are replaced by its spares, costliest first (then the one with most faulty non-zero cells), recorded in
the mvm's `spare_columns` attribute as (array of the layer, column) pairs; the machine reads a repaired column
as perfect cells (spares are taken as tested good) and the cost model adds the spares' area.
mvms that read the same weights in one phase run on the same arrays (time-multiplexed): the first is placed, the
others take its maps. The report gives the faulty cells holding a non-zero level and the total cost before, after the permutation
and after the spares (`faulty_nonzero_after` and `fault_cost_after` are the final figures).
The chip is `faults` (a Python option: the machine's fault map), or else a random one from the text options
`stuck_off_rate`, `stuck_on_rate` and `fault_seed` (`fault-aware{stuck_off_rate=0.09;stuck_on_rate=0.01}`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from rcc.backends.faults import STUCK_OFF, STUCK_ON, FaultMap, RandomFaults
from rcc.backends.mapping import CrossbarMapping
from rcc.compiler.pass_context import PassContext
from rcc.compiler.passes.base import Pass
from rcc.ir.builder import make_op
from rcc.ir.core import Module, Op
from rcc.ir.ops.xbar import arrays_key
from rcc.ir.errors import RccError
from rcc.runtime.devices import PhysicalBlock, block_columns, block_levels, physical_blocks


@dataclass
class _ArrayCosts:
    """One array pair's cells: per sign array the cost of each logical cell on a stuck-off and a stuck-on
    cell [rows, outputs, S], and the physical fault masks [xbar_rows, xbar_cols]."""

    off_cost: list[np.ndarray]
    on_cost: list[np.ndarray]
    off: list[np.ndarray]
    on: list[np.ndarray]
    nonzero: list[np.ndarray]

    def row_cost(self, columns: np.ndarray) -> np.ndarray:
        """[rows, xbar_rows]: each logical row's cost on each physical row, outputs at `columns`."""
        return sum(oc.reshape(oc.shape[0], -1) @ off[:, columns].T.astype(np.float64)
                   + nc.reshape(nc.shape[0], -1) @ on[:, columns].T.astype(np.float64)
                   for oc, nc, off, on in zip(self.off_cost, self.on_cost, self.off, self.on))

    def output_cost(self, row_slots: np.ndarray, positions: int, slices: int) -> np.ndarray:
        """[outputs, positions]: each logical output's cost at each output position, rows at `row_slots`."""
        total = 0.0
        for oc, nc, off, on in zip(self.off_cost, self.on_cost, self.off, self.on):
            for cost, mask in ((oc, off), (nc, on)):
                cells = mask[row_slots][:, :positions * slices].reshape(row_slots.size, positions, slices)
                total = total + np.einsum("ros,rps->op", cost, cells.astype(np.float64))
        return total

    def per_column(self, row_slots: np.ndarray, columns: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per sign array, (cost, faulty cells holding a non-zero level) of each of `columns` in a placement."""
        figures = []
        for oc, nc, off, on, nz in zip(self.off_cost, self.on_cost, self.off, self.on, self.nonzero):
            off_here, on_here = off[np.ix_(row_slots, columns)], on[np.ix_(row_slots, columns)]
            shape = off_here.shape
            cost = (oc.reshape(shape) * off_here).sum(axis=0) + (nc.reshape(shape) * on_here).sum(axis=0)
            figures.append((cost, (nz.reshape(shape) & (off_here | on_here)).sum(axis=0)))
        return figures

    def totals(self, row_slots: np.ndarray, columns: np.ndarray) -> tuple[float, int]:
        """(cost, faulty cells holding a non-zero level) of a placement."""
        figures = self.per_column(row_slots, columns)
        return float(sum(cost.sum() for cost, _ in figures)), int(sum(faulty.sum() for _, faulty in figures))


@dataclass
class FaultAware(Pass):
    name = "fault-aware"
    rounds: int = 3
    stuck_off_rate: float = 0.0      # without `faults`: a random chip with these rates and seed
    stuck_on_rate: float = 0.0
    fault_seed: int = 0
    faults: FaultMap | None = field(default=None, repr=False)   # the chip's stuck cells (not a text option)

    def chip(self) -> FaultMap | None:
        """The stuck cells to map around: `faults`, else the random chip of the rates (None: no faults)."""
        if self.faults is not None:
            return self.faults
        for rate in (self.stuck_off_rate, self.stuck_on_rate):
            if not 0.0 <= rate <= 1.0:
                raise RccError(f"pass 'fault-aware': stuck-at rates must be in [0, 1], got {rate}")
        if not 0 <= self.fault_seed < 2**63:
            raise RccError(f"pass 'fault-aware': fault_seed must be between 0 and 2^63 - 1, got {self.fault_seed}")
        if self.stuck_off_rate == 0 and self.stuck_on_rate == 0:
            return None
        return RandomFaults(self.stuck_off_rate, self.stuck_on_rate, self.fault_seed)

    def run(self, module: Module, ctx: PassContext) -> bool:
        faults = self.chip()
        if faults is None:
            return False
        figures = {"faulty_nonzero_before": 0, "faulty_nonzero_after_permutation": 0, "faulty_nonzero_after": 0,
                   "fault_cost_before": 0.0, "fault_cost_after_permutation": 0.0, "fault_cost_after": 0.0,
                   "spare_columns_used": 0}
        spares = ctx.target.spare_columns
        changed, first_array = False, 0
        remapped: dict[tuple, tuple[Op, dict]] = {}   # by weights and maps: mvms sharing arrays share the remapping
        for index, op in enumerate(module.ops):
            if op.opname != "xbar.mvm":
                continue
            key = arrays_key(op)   # reprogrammed per phase
            if key in remapped:
                done, before = remapped[key]   # the first reader, and its attributes before remapping
                changes = {k: v for k, v in done.attrs.items() if k not in before or before[k] != v}
                replacement = make_op("xbar.mvm", [op.operands[0], *done.operands[1:]], {**op.attrs, **changes},
                                      [op.result.name])
                module.ops[index] = replacement
                module.replace_uses(op.result, replacement.result)
                continue
            weights = op.operands[1].data
            mapping = CrossbarMapping.of(op.attrs, weights.shape)
            if weights.dtype.kind != "i":
                first_array += mapping.arrays
                continue
            maps = [v.data for v in op.operands[2:4]] or [None, None]
            blocks = physical_blocks(weights.shape, op.attrs, *maps)
            placed, repaired = [], []
            for b, block in enumerate(blocks):
                costs = self._costs(weights, mapping, block, faults, first_array + b * mapping.signs)
                best = self._place(costs, mapping, block, figures)
                columns = self._repairs(costs, mapping, best, spares, figures)
                placed.append(best)
                repaired += [(b * mapping.signs + sign, int(column)) for sign, column in columns]
            first_array += mapping.arrays
            replacement = self._rewritten(module, op, mapping, placed, repaired)
            remapped[key] = (replacement, op.attrs)
            module.ops[index] = replacement
            module.replace_uses(op.result, replacement.result)
            changed = True
        figures["faulty_nonzero_after_spares"] = figures["faulty_nonzero_after"]
        figures["fault_cost_after_spares"] = figures["fault_cost_after"]
        ctx.report.figures.update(figures)
        return changed

    @staticmethod
    def _costs(weights: np.ndarray, mapping: CrossbarMapping, block: PhysicalBlock, faults: FaultMap,
               first_id: int) -> _ArrayCosts:
        level_max = (1 << mapping.cell_bits) - 1
        significance = np.tile(2.0 ** (mapping.cell_bits * np.arange(mapping.weight_slices)), block.outputs.size)
        levels = block_levels(weights, mapping, block)
        states = [faults.states(first_id + sign, mapping.xbar_rows, mapping.xbar_cols)
                  for sign in range(mapping.signs)]
        shape = (block.rows.size, block.outputs.size, mapping.weight_slices)
        return _ArrayCosts([(lv * significance).reshape(shape) for lv in levels],
                           [((level_max - lv) * significance).reshape(shape) for lv in levels],
                           [s == STUCK_OFF for s in states], [s == STUCK_ON for s in states],
                           [lv != 0 for lv in levels])

    @staticmethod
    def _repairs(costs: _ArrayCosts, mapping: CrossbarMapping, block: PhysicalBlock, spares: int,
                 figures: dict) -> list[tuple[int, int]]:
        """(sign array, physical column) of the columns to replace by spares: per array the `spares` columns
        that still read wrong, costliest first (then most faulty non-zero cells); figures after the repair."""
        repaired = []
        for sign, (cost, faulty) in enumerate(costs.per_column(block.row_slots, block_columns(mapping, block))):
            order = np.lexsort((-faulty, -cost))[:spares]
            chosen = order[(cost[order] > 0) | (faulty[order] > 0)]
            figures["fault_cost_after"] -= float(cost[chosen].sum())
            figures["faulty_nonzero_after"] -= int(faulty[chosen].sum())
            repaired += [(sign, column) for column in block_columns(mapping, block)[chosen]]
        figures["spare_columns_used"] += len(repaired)
        return repaired

    def _place(self, costs: _ArrayCosts, mapping: CrossbarMapping, block: PhysicalBlock,
               figures: dict) -> PhysicalBlock:
        best = block
        best_cost, best_faulty = costs.totals(block.row_slots, block_columns(mapping, block))
        figures["fault_cost_before"] += best_cost
        figures["faulty_nonzero_before"] += best_faulty
        current = block
        for _ in range(self.rounds if best_cost > 0 else 0):
            rows_to, slots = linear_sum_assignment(costs.row_cost(block_columns(mapping, current)))
            current = _with(current, row_slots=slots[np.argsort(rows_to)])
            positions = mapping.weights_per_array_row
            outputs_to, out_slots = linear_sum_assignment(
                costs.output_cost(current.row_slots, positions, mapping.weight_slices))
            current = _with(current, output_slots=out_slots[np.argsort(outputs_to)])
            cost, faulty = costs.totals(current.row_slots, block_columns(mapping, current))
            if cost < best_cost:
                best, best_cost, best_faulty = current, cost, faulty
        for suffix in ("_after_permutation", "_after"):
            figures["fault_cost" + suffix] += best_cost
            figures["faulty_nonzero" + suffix] += best_faulty
        return best

    def _rewritten(self, module: Module, op: Op, mapping: CrossbarMapping, blocks: list[PhysicalBlock],
                   repaired: list[tuple[int, int]]) -> Op:
        groups, k, m = op.operands[1].data.shape
        row_map = np.full((len(blocks), mapping.xbar_rows), -1, dtype=np.int64)
        col_map = np.full((len(blocks), mapping.weights_per_array_row), -1, dtype=np.int64)
        for b, block in enumerate(blocks):
            row_map[b, block.row_slots] = block.rows + block.group * k
            col_map[b, block.output_slots] = block.outputs + block.group * m
        name, names = op.result.name, module.name_allocator()
        maps = [module.add_constant(names.fresh(f"{name}.{what}"), data)
                for what, data in (("row_map", row_map), ("col_map", col_map))]
        dense = mapping if not mapping.is_packed else None
        packed = mapping.packed(col_map)
        attrs = {**op.attrs, **packed.attrs(),
                 "packing": op.attrs["packing"] if mapping.is_packed else "fault-aware",
                 "dense_arrays": op.attrs["dense_arrays"] if dense is None else dense.arrays,
                 "spare_columns": [index for pair in sorted(repaired) for index in pair]}
        return make_op("xbar.mvm", [*op.operands[:2], *maps], attrs, [name])


def _with(block: PhysicalBlock, **changes) -> PhysicalBlock:
    return PhysicalBlock(**{**block.__dict__, **changes})
