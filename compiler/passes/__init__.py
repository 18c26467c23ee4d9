"""The pass table: every pass registered by its kebab-case name (`register_pass` adds your own)."""

from __future__ import annotations

from rcc.compiler.passes.base import Pass
from rcc.compiler.passes.constant_fold import ConstantFold
from rcc.compiler.passes.dce import DeadCodeElimination
from rcc.compiler.passes.deconv_to_pixelwise import DeconvToPixelwise
from rcc.compiler.passes.deconv_zero_insertion import DeconvZeroInsertion
from rcc.compiler.passes.fault_aware import FaultAware
from rcc.compiler.passes.fold_batch_norm import FoldBatchNorm
from rcc.compiler.passes.fuse_qdq import FuseQdq
from rcc.compiler.passes.lower_quantized import LowerQuantized
from rcc.compiler.passes.lower_to_xbar import LowerToXbar
from rcc.compiler.passes.mixed_precision import MixedPrecision
from rcc.compiler.passes.pack_crossbars import PackCrossbars
from rcc.compiler.passes.place_attention import PlaceAttention
from rcc.compiler.passes.prune_crossbars import PruneCrossbars
from rcc.compiler.passes.remove_identity import RemoveIdentity
from rcc.compiler.passes.replicate import Replicate
from rcc.ir.errors import RccError

PASSES: dict[str, type[Pass]] = {cls.name: cls for cls in (
    ConstantFold,
    FoldBatchNorm,
    RemoveIdentity,
    DeadCodeElimination,
    DeconvZeroInsertion,
    DeconvToPixelwise,
    MixedPrecision,
    LowerToXbar,
    PackCrossbars,
    PruneCrossbars,
    Replicate,
    PlaceAttention,
    FaultAware,
    FuseQdq,
    LowerQuantized,
)}



def register_pass(cls: type[Pass]) -> type[Pass]:
    """Add a pass class to the table under its `name` (usable as a decorator); RccError on a clash."""
    if not cls.name or PASSES.get(cls.name, cls) is not cls:
        raise RccError(f"cannot register pass {cls.__name__}: name {cls.name!r} is empty or taken")
    PASSES[cls.name] = cls
    return cls


__all__ = ["PASSES", "Pass", "register_pass"]
