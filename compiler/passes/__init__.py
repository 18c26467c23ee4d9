"""The pass table: every pass registered by its kebab-case name."""

from __future__ import annotations

from rcc.compiler.passes.base import Pass
from rcc.compiler.passes.constant_fold import ConstantFold
from rcc.compiler.passes.dce import DeadCodeElimination
from rcc.compiler.passes.deconv_to_pixelwise import DeconvToPixelwise
from rcc.compiler.passes.deconv_zero_insertion import DeconvZeroInsertion
from rcc.compiler.passes.fold_batch_norm import FoldBatchNorm
from rcc.compiler.passes.lower_to_xbar import LowerToXbar
from rcc.compiler.passes.pack_crossbars import PackCrossbars
from rcc.compiler.passes.prune_crossbars import PruneCrossbars
from rcc.compiler.passes.remove_identity import RemoveIdentity

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
