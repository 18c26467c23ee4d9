"""Lowering of ONNX's spatial ops: Conv, ConvTranspose, pooling, LRN. 1-D forms become 2-D with H = 1;
3-D Conv and pooling are rewritten into 2-D ones (`volume.py`).

`auto_pad` and `output_shape` are resolved here into explicit pads, so IR ops carry pads only.
"""

from __future__ import annotations

import math

from rcc.compiler.frontend.context import LowerContext
from rcc.compiler.frontend.registry import rule
from rcc.compiler.frontend.volume import conv3d, conv_transpose3d, pool3d
from rcc.ir.core import Value


def _spatial_rank(ctx: LowerContext, value: Value, volumes: bool = False) -> int:
    spatial = value.type.rank - 2
    handled = (1, 2, 3) if volumes else (1, 2)
    if spatial not in handled:
        names = ", ".join(f"{d}-D" for d in handled[:-1]) + f" and {handled[-1]}-D"
        raise ctx.unsupported(f"{spatial}-D {ctx.node.op_type} (rcc handles {names})")
    return spatial


def _ints(ctx: LowerContext, name: str, default: list[int]) -> list[int]:
    return [int(v) for v in ctx.attr(name, default)]


def same_pads(sizes: tuple[int, ...], kernel: list[int], strides: list[int], dilations: list[int],
              upper: bool) -> list[int]:
    """Explicit [begins..., ends...] pads of auto_pad SAME_UPPER / SAME_LOWER (output = ceil(in / stride))."""
    begins, ends = [], []
    for size, k, s, d in zip(sizes, kernel, strides, dilations):
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        begin = total // 2 if upper else total - total // 2
        begins.append(begin)
        ends.append(total - begin)
    return begins + ends


def explicit_pads(ctx: LowerContext, sizes: tuple[int, ...], kernel: list[int], strides: list[int],
                  dilations: list[int]) -> list[int]:
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    spatial = len(sizes)
    if auto_pad in ("NOTSET", ""):
        pads = _ints(ctx, "pads", [0] * 2 * spatial)
    elif auto_pad == "VALID":
        pads = [0] * 2 * spatial
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = same_pads(sizes, kernel, strides, dilations, auto_pad == "SAME_UPPER")
    else:
        raise ctx.error(f"auto_pad {auto_pad!r} is not NOTSET, VALID, SAME_UPPER or SAME_LOWER")
    if len(pads) != 2 * spatial:
        raise ctx.error(f"pads has {len(pads)} values, expected {2 * spatial}")
    return pads


def as_2d(spatial: int, values: list[int], fill: int) -> list[int]:
    """Per-axis attribute of a 1-D op as its 2-D form (H axis of size 1)."""
    return values if spatial == 2 else [fill] + values


def pads_2d(spatial: int, pads: list[int]) -> list[int]:
    return pads if spatial == 2 else [0, pads[0], 0, pads[1]]


def to_2d(ctx: LowerContext, value: Value, spatial: int) -> Value:
    if spatial == 2:
        return value
    n, c, length = value.type.shape
    return ctx.op("nn.reshape", [value], {"shape": (n, c, 1, length)}, name=value.name + ".2d")


def from_2d(ctx: LowerContext, value: Value, spatial: int) -> Value:
    if spatial == 2:
        return value
    n, c, _, length = value.type.shape
    return ctx.op("nn.reshape", [value], {"shape": (n, c, length)})


def weight_2d(ctx: LowerContext, index: int, spatial: int) -> Value:
    """Conv weight input as a 4-D value (a 1-D kernel gets kh = 1; constants are reshaped in place)."""
    if spatial == 2:
        return ctx.input(index)
    shape = ctx.input_type(index).shape
    new_shape = shape[:2] + (1,) + shape[2:]
    if ctx.is_constant(index):
        return ctx.builder.constant(ctx.node.input[index], ctx.constant(index, "W").reshape(new_shape))
    return ctx.op("nn.reshape", [ctx.input(index)], {"shape": new_shape}, name=ctx.node.input[index] + ".2d")


def _conv_geometry(ctx: LowerContext, volumes: bool = False) -> tuple[Value, int, list[int], list[int], list[int]]:
    """(input, spatial rank, kernel, strides, dilations) of the current Conv or ConvTranspose."""
    x = ctx.input(0)
    spatial = _spatial_rank(ctx, x, volumes)
    return (x, spatial, list(ctx.input_type(1).shape[2:]), _ints(ctx, "strides", [1] * spatial),
            _ints(ctx, "dilations", [1] * spatial))


def _emit_conv(ctx: LowerContext, opname: str, x: Value, spatial: int, attrs: dict) -> None:
    """The 2-D op over (x, W[, B]) in 2-D form, its result brought back to the input's rank."""
    operands = [to_2d(ctx, x, spatial), weight_2d(ctx, 1, spatial)] + ([ctx.input(2)] if ctx.has_input(2) else [])
    attrs = {**attrs, "strides": as_2d(spatial, attrs["strides"], 1), "pads": pads_2d(spatial, attrs["pads"]),
             "dilations": as_2d(spatial, attrs["dilations"], 1), "group": int(ctx.attr("group", 1))}
    ctx.bind(0, from_2d(ctx, ctx.op(opname, operands, attrs), spatial))


@rule("Conv")
def lower_conv(ctx: LowerContext) -> None:
    x, spatial, kernel, strides, dilations = _conv_geometry(ctx, volumes=True)
    pads = explicit_pads(ctx, x.type.shape[2:], kernel, strides, dilations)
    if spatial == 3:
        bias = ctx.input(2) if ctx.has_input(2) else None
        ctx.bind(0, conv3d(ctx, x, 1, bias, strides, pads, dilations, int(ctx.attr("group", 1))))
        return
    _emit_conv(ctx, "nn.conv2d", x, spatial, {"strides": strides, "dilations": dilations, "pads": pads})


def conv_transpose_pads(ctx: LowerContext, sizes: tuple[int, ...], kernel: list[int], strides: list[int],
                        dilations: list[int], output_padding: list[int]) -> tuple[list[int], list[int]]:
    """Pads and output padding of a ConvTranspose, with `output_shape` and auto_pad resolved."""
    spatial = len(sizes)
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    output_shape = ctx.attr("output_shape")
    implied = output_shape is None and auto_pad in ("SAME_UPPER", "SAME_LOWER")
    if output_shape is not None:
        output_shape = list(output_shape)[-spatial:]
    elif implied:
        output_shape = [size * s for size, s in zip(sizes, strides)]
    if output_shape is None:
        if auto_pad == "VALID":
            return [0] * 2 * spatial, output_padding
        pads = _ints(ctx, "pads", [0] * 2 * spatial)
        if len(pads) != 2 * spatial:
            raise ctx.error(f"pads has {len(pads)} values, expected {2 * spatial}")
        return pads, output_padding
    begins, ends, extra = [], [], list(output_padding)
    for axis, (size, k, s, d, out) in enumerate(zip(sizes, kernel, strides, dilations, output_shape)):
        total = s * (size - 1) + output_padding[axis] + (k - 1) * d + 1 - out
        if total < 0:
            # An explicit output_shape larger than the full result grows the output padding; the one
            # SAME implies (in · stride) is clamped to the full result, as onnxruntime does.
            if not implied:
                extra[axis] -= total
            total = 0
        small, large = total // 2, total - total // 2
        begin, end = (small, large) if auto_pad == "SAME_UPPER" else (large, small)
        begins.append(begin)
        ends.append(end)
    return begins + ends, extra


@rule("ConvTranspose")
def lower_conv_transpose(ctx: LowerContext) -> None:
    x, spatial, kernel, strides, dilations = _conv_geometry(ctx, volumes=True)
    output_padding = _ints(ctx, "output_padding", [0] * spatial)
    pads, output_padding = conv_transpose_pads(ctx, x.type.shape[2:], kernel, strides, dilations, output_padding)
    if spatial == 3:
        bias = ctx.input(2) if ctx.has_input(2) else None
        ctx.bind(0, conv_transpose3d(ctx, x, bias, strides, pads, dilations, output_padding, int(ctx.attr("group", 1))))
        return
    _emit_conv(ctx, "nn.conv_transpose2d", x, spatial, {"strides": strides, "dilations": dilations, "pads": pads,
                                                       "output_padding": as_2d(spatial, output_padding, 0)})


@rule("MaxPool", "AveragePool")
def lower_pool(ctx: LowerContext) -> None:
    x = ctx.input(0)
    spatial = _spatial_rank(ctx, x, volumes=True)
    indices = ctx.node.op_type == "MaxPool" and len(ctx.node.output) > 1 and ctx.node.output[1] in ctx.used
    if indices and spatial == 3:
        raise ctx.unsupported("the Indices output of a 3-D MaxPool")
    kernel = _ints(ctx, "kernel_shape", [])
    if len(kernel) != spatial:
        raise ctx.error(f"kernel_shape has {len(kernel)} values, expected {spatial}")
    strides = _ints(ctx, "strides", [1] * spatial)
    dilations = _ints(ctx, "dilations", [1] * spatial)
    pads = explicit_pads(ctx, x.type.shape[2:], kernel, strides, dilations)
    opname = "nn.avg_pool2d" if ctx.node.op_type == "AveragePool" else "nn.max_pool2d"
    extra = {"ceil_mode": bool(ctx.attr("ceil_mode", 0))}
    if ctx.node.op_type == "AveragePool":
        extra["count_include_pad"] = bool(ctx.attr("count_include_pad", 0))
    select = {"select": "first_greater"} if indices else {}   # onnxruntime's other kernel picks Y then
    if spatial == 3:
        attrs = {"kernel": kernel, "strides": strides, "dilations": dilations, "pads": pads, **extra}
        ctx.bind(0, pool3d(ctx, opname, x, attrs))
        return
    attrs = {"kernel": as_2d(spatial, kernel, 1), "strides": as_2d(spatial, strides, 1),
             "dilations": as_2d(spatial, dilations, 1), "pads": pads_2d(spatial, pads), **extra}
    planar = to_2d(ctx, x, spatial)
    ctx.bind(0, from_2d(ctx, ctx.op(opname, [planar], {**attrs, **select}), spatial))
    if indices:   # a 1-D input is one row: its flat indices are the 2-D ones
        storage_order = int(ctx.attr("storage_order", 0))
        if storage_order not in (0, 1):
            raise ctx.error(f"storage_order {storage_order} is not 0 or 1")
        found = ctx.op("nn.max_pool2d_indices", [planar], {**attrs, "storage_order": storage_order},
                       name=f"{ctx.node.output[1]}.2d" if spatial == 1 else ctx.node.output[1])
        ctx.bind(1, from_2d(ctx, found, spatial))


@rule("GlobalAveragePool", "GlobalMaxPool")
def lower_global_pool(ctx: LowerContext) -> None:
    opname = "nn.global_avg_pool" if ctx.node.op_type == "GlobalAveragePool" else "nn.global_max_pool"
    ctx.bind(0, ctx.op(opname, [ctx.input(0)]))


@rule("LRN")
def lower_lrn(ctx: LowerContext) -> None:
    attrs = {"size": int(ctx.attr("size")), "alpha": ctx.attr("alpha", 1e-4), "beta": ctx.attr("beta", 0.75),
             "bias": ctx.attr("bias", 1.0)}
    ctx.bind(0, ctx.op("nn.lrn", [ctx.input(0)], attrs))
