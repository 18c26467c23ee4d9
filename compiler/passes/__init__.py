"""The pass table: every pass registered by its kebab-case name."""

from __future__ import annotations

from compiler.passes.base import Pass
from compiler.passes.constant_fold import ConstantFold
from compiler.passes.dce import DeadCodeElimination
from compiler.passes.fold_batch_norm import FoldBatchNorm
from compiler.passes.remove_identity import RemoveIdentity

PASSES: dict[str, type[Pass]] = {cls.name: cls for cls in (
    ConstantFold,
    FoldBatchNorm,
    RemoveIdentity,
    DeadCodeElimination,
)}

__all__ = ["PASSES", "Pass"]
