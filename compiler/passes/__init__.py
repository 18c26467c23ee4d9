"""The pass table: every pass registered by its kebab-case name."""

from __future__ import annotations

from compiler.passes.base import Pass
from compiler.passes.constant_fold import ConstantFold
from compiler.passes.dce import DeadCodeElimination
from compiler.passes.deconv_to_pixelwise import DeconvToPixelwise
from compiler.passes.deconv_zero_insertion import DeconvZeroInsertion
from compiler.passes.fold_batch_norm import FoldBatchNorm
from compiler.passes.lower_to_xbar import LowerToXbar
from compiler.passes.pack_crossbars import PackCrossbars
from compiler.passes.prune_crossbars import PruneCrossbars
from compiler.passes.remove_identity import RemoveIdentity

PASSES: dict[str, type[Pass]] = {cls.name: cls for cls in (
    ConstantFold,
    FoldBatchNorm,
    RemoveIdentity,
    DeadCodeElimination,
    DeconvZeroInsertion,
    DeconvToPixelwise,
    LowerToXbar,
    PackCrossbars,
    PruneCrossbars,
)}

__all__ = ["PASSES", "Pass"]
