"""Lowering of ONNX's InstanceNormalization, GroupNormalization, LayerNormalization and RMSNormalization to
`nn.instance_norm`, `nn.group_norm`, `nn.layer_norm` and `nn.rms_norm`.

GroupNormalization-18 gives scale and bias per group, -21 per channel; the IR op takes them per channel,
so per-group constants are repeated over each group's channels here.
"""

from __future__ import annotations

import numpy as np

from rcc.compiler.frontend.context import LowerContext
from rcc.compiler.frontend.registry import rule
from rcc.ir.core import Value


@rule("InstanceNormalization")
def lower_instance_norm(ctx: LowerContext) -> None:
    operands = [ctx.input(i) for i in range(3)]
    ctx.bind(0, ctx.op("nn.instance_norm", operands, {"epsilon": float(ctx.attr("epsilon", 1e-5))}))


def _per_channel(ctx: LowerContext, index: int, what: str, groups: int, channels: int) -> Value:
    """Input `index` (scale or bias) per channel; GroupNormalization-18's per-group constants are repeated."""
    if ctx.opset >= 21 or groups == channels:
        return ctx.input(index)
    if not ctx.is_constant(index):
        raise ctx.unsupported(f"GroupNormalization-18 with a per-group {what} computed at run time")
    per_group = ctx.constant(index, what).reshape(-1)
    if per_group.size != groups:
        raise ctx.error(f"{what} has {per_group.size} values, expected one per group ({groups})")
    return ctx.builder.constant(ctx.node.input[index], np.repeat(per_group, channels // groups))


@rule("GroupNormalization")
def lower_group_norm(ctx: LowerContext) -> None:
    x = ctx.input(0)
    groups = int(ctx.attr("num_groups"))
    channels = x.type.shape[1] if x.type.rank >= 2 else 0
    if groups < 1 or channels % groups:
        raise ctx.error(f"num_groups {groups} does not divide the {channels} channels")
    operands = [x, _per_channel(ctx, 1, "scale", groups, channels), _per_channel(ctx, 2, "bias", groups, channels)]
    ctx.bind(0, ctx.op("nn.group_norm", operands, {"num_groups": groups, "epsilon": float(ctx.attr("epsilon", 1e-5))}))


_STASH_TYPES = {1: "f32", 11: "f64"}  # onnxruntime's LayerNormalization stashes in float or double


@rule("LayerNormalization", "RMSNormalization")
def lower_layer_norm(ctx: LowerContext) -> None:
    if ctx.node.op_type == "LayerNormalization":
        ctx.refuse_used_outputs(1, "LayerNormalization's Mean and InvStdDev outputs")
    x = ctx.input(0)
    rank = x.type.rank
    axis = int(ctx.attr("axis", -1))
    if not -rank <= axis < rank:
        raise ctx.error(f"axis {axis} is out of range for rank {rank}")
    stash_type = int(ctx.attr("stash_type", 1))
    if ctx.node.op_type == "RMSNormalization":
        stash_type = 1   # onnxruntime 1.32 computes RMSNormalization without looking at stash_type (nn.rms_norm)
    if stash_type not in _STASH_TYPES:
        raise ctx.unsupported(f"stash_type {stash_type} (rcc takes 1, float, and 11, double)")
    operands = [x, ctx.input(1)] + ([ctx.input(2)] if ctx.has_input(2) else [])
    # an absent epsilon is onnxruntime's float 1e-5f, not the double 1e-5
    attrs = {"axis": axis % rank, "epsilon": float(ctx.attr("epsilon", np.float32(1e-5))),
             "stash_type": _STASH_TYPES[stash_type]}
    opname = "nn.layer_norm" if ctx.node.op_type == "LayerNormalization" else "nn.rms_norm"
    ctx.bind(0, ctx.op(opname, operands, attrs))
