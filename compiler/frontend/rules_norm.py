"""Lowering of ONNX's InstanceNormalization, GroupNormalization, LayerNormalization and RMSNormalization to
`nn.instance_norm`, `nn.group_norm`, `nn.layer_norm` and `nn.rms_norm`; LayerNormalization's optional Mean and
InvStdDev outputs, where read, as ONNX's function body computes them (reductions and elementwise vector ops).

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


def _bind_moments(ctx: LowerContext, x: Value, axis: int, stash_type: str, epsilon: float) -> None:
    """LayerNormalization's Mean and InvStdDev outputs (those read) as ONNX's function body defines them, in the
    stash type U: Mean = ReduceMean(Cast<U>(X)) and InvStdDev = Reciprocal(Sqrt(ReduceMean(D·D) + epsilon)) with
    D = Cast<U>(X) − Mean, both over the axes from `axis` on, kept. Vector ops beside the nn.layer_norm of Y."""
    used = [index for index in (1, 2) if len(ctx.node.output) > index and ctx.node.output[index] in ctx.used]
    if not used:
        return
    base = ctx.node.output[0] or ctx.node.name
    wide = x if x.type.dtype == stash_type else ctx.op("nn.cast", [x], {"to": stash_type}, name=f"{base}.stashed")
    reduced = {"axes": tuple(range(axis, x.type.rank)), "keepdims": True}
    mean = ctx.op("nn.reduce_mean", [wide], reduced, name=f"{base}.mean")
    if 1 in used:
        ctx.bind(1, mean)
    if 2 in used:
        centered = ctx.op("nn.sub", [wide, mean], name=f"{base}.centered")
        variance = ctx.op("nn.reduce_mean", [ctx.op("nn.mul", [centered, centered], name=f"{base}.squares")],
                          reduced, name=f"{base}.variance")
        eps = ctx.builder.constant(f"{base}.epsilon", np.array(epsilon, np.float64 if stash_type == "f64" else
                                                                np.float32))
        deviation = ctx.op("nn.sqrt", [ctx.op("nn.add", [variance, eps], name=f"{base}.variance_eps")],
                           name=f"{base}.deviation")
        ctx.bind(2, ctx.op("nn.reciprocal", [deviation], name=f"{base}.inv_std_dev"))


@rule("LayerNormalization", "RMSNormalization")
def lower_layer_norm(ctx: LowerContext) -> None:
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
    if ctx.node.output[0]:
        ctx.bind(0, ctx.op(opname, operands, attrs))
    if ctx.node.op_type == "LayerNormalization":
        _bind_moments(ctx, x, attrs["axis"], attrs["stash_type"], attrs["epsilon"])
