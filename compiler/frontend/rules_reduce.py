"""Lowering of ONNX's reductions (ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceProd, ReduceL1,
ReduceL2, ReduceSumSquare, ReduceLogSum, ReduceLogSumExp), ArgMax / ArgMin, in every opset, and CumSum.

Axes are an attribute before opset 18 (13 for ReduceSum) and an optional constant input from then on;
no axes means all of them, unless noop_with_empty_axes (opset 13/18 on) makes the node an identity.
"""

from __future__ import annotations

from rcc.compiler.frontend.context import LowerContext
from rcc.compiler.frontend.registry import rule

_REDUCTIONS = {"ReduceSum": "nn.reduce_sum", "ReduceMean": "nn.reduce_mean", "ReduceMax": "nn.reduce_max",
               "ReduceMin": "nn.reduce_min", "ReduceProd": "nn.reduce_prod", "ReduceL1": "nn.reduce_l1",
               "ReduceL2": "nn.reduce_l2", "ReduceSumSquare": "nn.reduce_sum_square",
               "ReduceLogSum": "nn.reduce_log_sum", "ReduceLogSumExp": "nn.reduce_log_sum_exp"}


def _axes_as_input(ctx: LowerContext) -> bool:
    return ctx.opset >= (13 if ctx.node.op_type == "ReduceSum" else 18)


def normalized_axes(ctx: LowerContext, axes: list[int], rank: int) -> tuple[int, ...]:
    """`axes` made non-negative and sorted; an error naming the node when one is out of range or repeated."""
    resolved = [a + rank if a < 0 else a for a in axes]
    if any(not 0 <= a < max(rank, 1) for a in resolved) or len(set(resolved)) != len(resolved):
        raise ctx.error(f"axes {list(axes)} are out of range or repeated for rank {rank}")
    return tuple(sorted(a for a in resolved if a < rank))


@rule(*_REDUCTIONS)
def lower_reduction(ctx: LowerContext) -> None:
    x = ctx.input(0)
    if _axes_as_input(ctx):
        if ctx.attr("axes") is not None:
            raise ctx.error(f"attribute axes is not part of {ctx.node.op_type}-{ctx.opset}; axes are its input")
        data = ctx.optional_constant(1, "axes")
        axes = [] if data is None else [int(a) for a in data.reshape(-1)]
        noop = bool(ctx.attr("noop_with_empty_axes", 0))
    else:
        axes, noop = [int(a) for a in ctx.attr("axes", [])], False
    keepdims = ctx.flag("keepdims", 1)
    if not axes and noop:
        ctx.bind(0, ctx.op("nn.identity", [x]))
        return
    rank = x.type.rank
    resolved = normalized_axes(ctx, axes, rank) if axes else tuple(range(rank))
    ctx.bind(0, ctx.op(_REDUCTIONS[ctx.node.op_type], [x], {"axes": resolved, "keepdims": keepdims}))


@rule("ArgMax", "ArgMin")
def lower_arg_reduction(ctx: LowerContext) -> None:
    x = ctx.input(0)
    axis = ctx.axis(ctx.attr("axis", 0), x.type.rank)
    flags = {key: ctx.flag(key, default) for key, default in (("keepdims", 1), ("select_last_index", 0))}
    opname = "nn.argmax" if ctx.node.op_type == "ArgMax" else "nn.argmin"
    ctx.bind(0, ctx.op(opname, [x], {"axis": axis, **flags}))


@rule("CumSum")
def lower_cumsum(ctx: LowerContext) -> None:
    """CumSum (opset 11, 14): its axis a constant scalar or one-element tensor."""
    x = ctx.input(0)
    axis = ctx.axis(ctx.one_number(1, "axis"), x.type.rank)
    flags = {key: ctx.flag(key, 0) for key in ("exclusive", "reverse")}
    ctx.bind(0, ctx.op("nn.cumsum", [x], {"axis": axis, **flags}))
