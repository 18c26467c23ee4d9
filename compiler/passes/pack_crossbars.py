"""`pack-crossbars`: map each sparse layer's non-zero weights onto as few arrays as possible.

    %acc = xbar.mvm(%xq, %wq) {packing = "dense", arrays = 8, row_tiles = 2, col_tiles = 2, ...}
        →
    %acc = xbar.mvm(%xq, %wq, %acc.row_map, %acc.col_map) {packing = "best", arrays = 2, dense_arrays = 8, ...}

`row_map` [blocks, xbar_rows] and `col_map` [blocks, xbar_cols // weight_slices] (int64, −1 padded) say
which input rows feed each array block and which outputs it produces (global indices over the groups);
the machine gathers and scatters through them, so results are unchanged bit for bit. A differential
pair shares its block's wiring. mvms reading the same weights (time-multiplexed on one set of arrays) get the
same packing. Modes (backends/packing.py): `dense` (no change), `compact`, `kmeans`
(Lin et al., ASP-DAC 2019) and `best`; the option `mode` overrides the context's `packing`. Layers whose weights are less than `min_sparsity` zeros, and
layers packing would not shrink, stay densely tiled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rcc.backends.mapping import CrossbarMapping
from rcc.backends.packing import MODES, pack
from rcc.compiler.pass_context import PassContext
from rcc.compiler.passes.base import Pass
from rcc.ir.builder import make_op
from rcc.ir.core import Module, Op, Value


def block_maps(weights: np.ndarray, rows: int, outputs_per_array: int, mode: str, seed: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """(row_map, col_map) of a packing of weights [G, K, M], group by group."""
    groups, k, m = weights.shape
    row_maps, col_maps = [], []
    for group in range(groups):
        for block in pack(weights[group] != 0, rows, outputs_per_array, mode, seed=seed):
            row_map = np.full(rows, -1, dtype=np.int64)
            col_map = np.full(outputs_per_array, -1, dtype=np.int64)
            row_map[:block.rows.size] = block.rows + group * k
            col_map[:block.cols.size] = block.cols + group * m
            row_maps.append(row_map)
            col_maps.append(col_map)
    empty = (np.zeros((0, rows), np.int64), np.zeros((0, outputs_per_array), np.int64))
    return (np.stack(row_maps), np.stack(col_maps)) if row_maps else empty


@dataclass
class PackCrossbars(Pass):
    name = "pack-crossbars"
    mode: str | None = field(default=None, metadata={"choices": MODES})  # None: the context's packing
    min_sparsity: float = 0.5
    seed: int = 0

    def run(self, module: Module, ctx: PassContext) -> bool:
        mode = self.mode or ctx.packing
        if mode == "dense":
            return False
        changed = False
        packings: dict[str, tuple[list[Value], dict] | None] = {}   # by weights: mvms sharing arrays pack alike
        for index, op in enumerate(module.ops):
            if op.opname != "xbar.mvm" or len(op.operands) != 2 or op.attrs["packing"] != "dense":
                continue
            weights = op.operands[1].name
            first = weights not in packings
            if first:
                packings[weights] = self.packing(module, op, mode)
            if packings[weights] is None:
                continue
            maps, attrs = packings[weights]
            replacement = make_op("xbar.mvm", [*op.operands, *maps], {**op.attrs, **attrs}, [op.result.name])
            module.ops[index] = replacement
            module.replace_uses(op.result, replacement.result)
            if first:
                ctx.report.removed.append({"layer": op.attrs["layer"], "arrays": op.attrs["arrays"],
                                           "packed_arrays": replacement.attrs["arrays"]})
            changed = True
        return changed

    def packing(self, module: Module, op: Op, mode: str) -> tuple[list[Value], dict] | None:
        """The maps (new constants) and mapping attributes of `op`'s packed weights; None when packing would
        not shrink them."""
        weights = op.operands[1].data
        if weights.size == 0 or np.count_nonzero(weights) > (1 - self.min_sparsity) * weights.size:
            return None
        dense = CrossbarMapping.of(op.attrs, weights.shape)
        row_map, col_map = block_maps(weights, dense.xbar_rows, dense.weights_per_array_row, mode, self.seed)
        packed = dense.packed(col_map)
        if packed.arrays >= dense.arrays or row_map.shape[0] == 0:
            return None
        name, names = op.result.name, module.name_allocator()
        maps = [module.add_constant(names.fresh(f"{name}.{what}"), data)
                for what, data in (("row_map", row_map), ("col_map", col_map))]
        return maps, {**packed.attrs(), "packing": mode, "dense_arrays": dense.arrays}
