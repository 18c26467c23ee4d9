"""`prune-crossbars`: crossbar-grained pruning — drop each layer's least salient array blocks.

A unit is one array block of the layer's packing (the `mode` of `pack-crossbars`, on the quantised
weights' non-zero pattern) with salience S = Σ|w| over its cells (float weights). In every conv and
matmul with constant weights, the ⌊fraction · blocks⌋ least salient blocks are removed by zeroing their
weights in the graph-level op, so the later `lower-to-xbar` and `pack-crossbars` map fewer arrays and the
pruned model can be exported to ONNX and checked. A compiler cannot fine-tune, so this is lossy: the
driver measures the output error it causes against onnxruntime (`compiler/driver.py`).

    %y = nn.matmul(%x, %w) : f32[1,64]   →   %y = nn.matmul(%x, %w.pruned) : f32[1,64]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rcc.backends.packing import pack
from rcc.backends.target import Target
from rcc.compiler.passes.base import Pass
from rcc.compiler.passes.lower_to_xbar import is_mappable, grouped_weights, quantize_weights
from rcc.ir.core import Module, Op


def ungroup_weights(op: Op, grouped: np.ndarray) -> np.ndarray:
    """Inverse of `grouped_weights`: [G, K, M] back to the op's weight layout."""
    original = op.operands[1].data
    if op.opname == "nn.matmul":
        return grouped[0].astype(original.dtype)
    return grouped.transpose(0, 2, 1).reshape(original.shape).astype(original.dtype)


@dataclass
class PruneCrossbars(Pass):
    name = "prune-crossbars"
    fraction: float = 0.0
    mode: str = "best"
    target: Target = field(default_factory=Target)
    removed: list = field(default_factory=list)  # per layer: name, blocks, removed blocks, salience removed

    def run(self, module: Module) -> bool:
        self.removed = []
        if self.fraction <= 0:
            return False
        changed = False
        for op in module.ops:
            if is_mappable(op):
                changed |= self.prune(module, op)
        if changed:
            module.drop_unused_constants()
        return changed

    def prune(self, module: Module, op: Op) -> bool:
        weights = grouped_weights(op).astype(np.float64)
        quantized, _ = quantize_weights(weights, self.target.weight_bits)
        per_array = self.target.weights_per_array_row
        units = []  # (salience, group, rows, cols)
        for group in range(weights.shape[0]):
            for block in pack(quantized[group] != 0, self.target.xbar_rows, per_array, self.mode):
                cells = weights[group][np.ix_(block.rows, block.cols)]
                units.append((float(np.abs(cells).sum()), group, block.rows, block.cols))
        count = int(self.fraction * len(units))
        if count == 0:
            return False
        units.sort(key=lambda unit: unit[0])
        pruned = weights.copy()
        for _, group, rows, cols in units[:count]:
            pruned[group][np.ix_(rows, cols)] = 0.0
        weight = op.operands[1]
        new = module.add_constant(module.fresh_name(weight.name + ".pruned"), ungroup_weights(op, pruned))
        op.operands[1] = new
        total = sum(unit[0] for unit in units)
        self.removed.append({"layer": op.result.name, "blocks": len(units), "removed_blocks": count,
                             "removed_salience": sum(unit[0] for unit in units[:count]) / total if total else 0.0})
        return True
