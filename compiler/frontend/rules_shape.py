"""Lowering of ONNX's data-movement ops. Every shape, axis and pad input must be known at compile time
and is resolved here into the static attributes of `nn.reshape`, `nn.transpose`, `nn.pad`, ..."""

from __future__ import annotations

import math

from rcc.compiler.frontend.context import LowerContext
from rcc.compiler.frontend.registry import rule
from rcc.ir.ops.nn_shape import PAD_MODES


def axes_input(ctx: LowerContext, rank: int, input_index: int, what: str = "axes") -> list[int] | None:
    """Axes from the attribute (old opsets) or the input (new ones), made non-negative."""
    raw = ctx.attr("axes")
    if raw is None and ctx.has_input(input_index):
        raw = ctx.constant(input_index, what).reshape(-1).tolist()
    if raw is None:
        return None
    axes = [int(a) + rank if int(a) < 0 else int(a) for a in raw]
    if any(not 0 <= a < rank for a in axes) or len(set(axes)) != len(axes):
        raise ctx.error(f"{what} {list(raw)} out of range or repeated for rank {rank}")
    return axes


def reshape_to(ctx: LowerContext, shape: tuple[int, ...]) -> None:
    ctx.bind(0, ctx.op("nn.reshape", [ctx.input(0)], {"shape": tuple(int(d) for d in shape)}))


@rule("Reshape")
def lower_reshape(ctx: LowerContext) -> None:
    source = ctx.input_type(0).shape
    requested = ctx.attr("shape") if ctx.opset < 5 else ctx.constant(1, "shape").reshape(-1).tolist()
    allow_zero = ctx.attr("allowzero", 0)
    shape = [source[i] if d == 0 and not allow_zero and i < len(source) else int(d) for i, d in enumerate(requested)]
    if shape.count(-1) > 1:
        raise ctx.error(f"shape {list(requested)} has more than one -1")
    if -1 in shape:
        known = math.prod(d for d in shape if d != -1)
        total = math.prod(source)
        if known == 0 or total % known:
            raise ctx.error(f"cannot reshape {list(source)} to {list(requested)}")
        shape[shape.index(-1)] = total // known
    reshape_to(ctx, tuple(shape))


@rule("Flatten")
def lower_flatten(ctx: LowerContext) -> None:
    shape = ctx.input_type(0).shape
    axis = int(ctx.attr("axis", 1))
    axis = axis + len(shape) if axis < 0 else axis
    reshape_to(ctx, (math.prod(shape[:axis]), math.prod(shape[axis:])))


@rule("Squeeze")
def lower_squeeze(ctx: LowerContext) -> None:
    shape = ctx.input_type(0).shape
    axes = axes_input(ctx, len(shape), 1)
    if axes is None:
        axes = [i for i, d in enumerate(shape) if d == 1]
    if any(shape[a] != 1 for a in axes):
        raise ctx.error(f"cannot squeeze axes {axes} of shape {list(shape)}")
    reshape_to(ctx, tuple(d for i, d in enumerate(shape) if i not in axes))


@rule("Unsqueeze")
def lower_unsqueeze(ctx: LowerContext) -> None:
    shape = list(ctx.input_type(0).shape)
    raw = ctx.attr("axes")
    if raw is None:
        raw = ctx.constant(1, "axes").reshape(-1).tolist()
    rank = len(shape) + len(raw)
    axes = sorted(int(a) + rank if int(a) < 0 else int(a) for a in raw)
    for axis in axes:
        shape.insert(axis, 1)
    reshape_to(ctx, tuple(shape))


@rule("Transpose")
def lower_transpose(ctx: LowerContext) -> None:
    rank = ctx.input_type(0).rank
    perm = ctx.attr("perm", list(range(rank))[::-1])
    ctx.bind(0, ctx.op("nn.transpose", [ctx.input(0)], {"perm": tuple(int(p) for p in perm)}))


@rule("Concat")
def lower_concat(ctx: LowerContext) -> None:
    operands = [ctx.input(i) for i in range(len(ctx.node.input)) if ctx.has_input(i)]
    axis = int(ctx.attr("axis", 1))
    axis = axis + operands[0].type.rank if axis < 0 else axis
    ctx.bind(0, ctx.op("nn.concat", operands, {"axis": axis}))


@rule("Pad")
def lower_pad(ctx: LowerContext) -> None:
    mode = ctx.attr("mode", "constant")
    if mode not in PAD_MODES:
        raise ctx.unsupported(f"Pad mode {mode!r} (rcc handles {', '.join(map(repr, PAD_MODES))})")
    rank = ctx.input_type(0).rank
    if ctx.opset < 11:
        pads, value = list(ctx.attr("pads")), float(ctx.attr("value", 0.0))
    else:
        pads = ctx.constant(1, "pads").reshape(-1).tolist()
        fill = ctx.optional_constant(2, "constant_value")
        value = 0.0 if fill is None or fill.size == 0 else float(fill.reshape(-1)[0])
        axes = axes_input(ctx, rank, 3)
        if axes is not None:
            full = [0] * 2 * rank
            for i, axis in enumerate(axes):
                full[axis], full[axis + rank] = pads[i], pads[i + len(axes)]
            pads = full
    if len(pads) != 2 * rank:
        raise ctx.error(f"pads has {len(pads)} values, expected {2 * rank}")
    ctx.bind(0, ctx.op("nn.pad", [ctx.input(0)], {"pads": tuple(int(p) for p in pads), "value": value, "mode": mode}))


@rule("DepthToSpace")
def lower_depth_to_space(ctx: LowerContext) -> None:
    attrs = {"blocksize": int(ctx.attr("blocksize")), "mode": ctx.attr("mode", "DCR")}
    ctx.bind(0, ctx.op("nn.depth_to_space", [ctx.input(0)], attrs))


@rule("SpaceToDepth")
def lower_space_to_depth(ctx: LowerContext) -> None:
    attrs = {"blocksize": int(ctx.attr("blocksize")), "mode": ctx.attr("mode", "DCR")}
    ctx.bind(0, ctx.op("nn.space_to_depth", [ctx.input(0)], attrs))

