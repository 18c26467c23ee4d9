"""3-D convolution and pooling, rewritten at graph level into their 2-D forms (called by rules_spatial.py).

Conv with three spatial axes becomes one `nn.conv2d`, so a constant weight maps onto crossbars like any
2-D convolution's and the machine needs nothing new. The depth axis moves into channels and batch:

    x [N, C, D, H, W] ─pad depth─▶ for each depth tap t: the depth slices t·dd, t·dd + sd, ... (`nn.slice`)
      ─concat on channels─▶ [N, kd·C, OD, H, W] ─group-major channel order, depth into batch─▶
      [N·OD, G·kd·C/G, H, W] ─nn.conv2d with W [M, C/G, kd, kh, kw] as [M, kd·C/G, kh, kw]─▶
      [N·OD, M, OH, OW] ─▶ [N, M, OD, OH, OW]

The 2-D weight's rows are the 3-D weight's (c, t, i, j) taps in (t, c, i, j) order, so each output is the
same sum of products: the im2col matrix of the 2-D convolution is the 3-D one with columns permuted.

ConvTranspose with three spatial axes is one `nn.conv_transpose2d` per depth tap t (so the deconvolution rewrite
still sees every 2-D transposed convolution), depth folded into batch: y_t = convT2d(x[:, :, i], W[:, :, t]) for
every input depth i; input depth i and tap t land on output depth i·sd + t·dd − pad, so each output depth is the
sum of the y_t slices that land on it (zeros where none does: the output padding), stacked on depth.

3-D pooling is separable: a box window's maximum is the maximum over depth of each depth slice's 2-D
maximum, and its mean (with or without counting pads, in ceil mode or not) the mean over depth of 2-D
means, since a box's count of counted cells is the product of its per-axis counts. So max and average
pooling are a 2-D pooling over (H, W) with depth folded into channels, then one over (D, 1) with H·W
folded into the last axis.
"""

from __future__ import annotations

import numpy as np

from rcc.compiler.frontend.context import LowerContext
from rcc.ir.core import Value


def _reshape(ctx: LowerContext, x: Value, shape: tuple[int, ...]) -> Value:
    return ctx.op("nn.reshape", [x], {"shape": tuple(shape)})


def _transpose(ctx: LowerContext, x: Value, perm: tuple[int, ...]) -> Value:
    return ctx.op("nn.transpose", [x], {"perm": perm})


def _depth_taps(ctx: LowerContext, x: Value, kernel_depth: int, stride: int, dilation: int, pads: tuple[int, int],
                out_depth: int) -> Value:
    """[N, kd·C, OD, H, W]: for each depth tap, the input depth slices the OD outputs read (after padding)."""
    rank = 5
    if any(pads):
        full = [0] * 2 * rank
        full[2], full[2 + rank] = pads
        x = ctx.op("nn.pad", [x], {"pads": tuple(full)})
    n, c, _, h, w = x.type.shape
    taps = [ctx.op("nn.slice", [x], {"starts": (0, 0, t * dilation, 0, 0), "steps": (1, 1, stride, 1, 1),
                                     "sizes": (n, c, out_depth, h, w)}) for t in range(kernel_depth)]
    return taps[0] if len(taps) == 1 else ctx.op("nn.concat", taps, {"axis": 1})


def conv3d(ctx: LowerContext, x: Value, weight_index: int, bias: Value | None, strides: list[int], pads: list[int],
           dilations: list[int], group: int) -> Value:
    """The Conv of x [N, C, D, H, W] with the node's weight input [M, C/G, kd, kh, kw] as one nn.conv2d."""
    n, c, depth, h, w = x.type.shape
    weight_shape = ctx.input_type(weight_index).shape
    m, c_per_group, kd, kh, kw = weight_shape
    if c != c_per_group * group or m % group:
        raise ctx.error(f"input channels {c} do not match weight {list(weight_shape)} with group {group}")
    out_depth = (depth + pads[0] + pads[3] - dilations[0] * (kd - 1) - 1) // strides[0] + 1
    if out_depth < 1:
        raise ctx.error(f"kernel depth {kd} is larger than the padded input depth {depth + pads[0] + pads[3]}")
    taps = _depth_taps(ctx, x, kd, strides[0], dilations[0], (pads[0], pads[3]), out_depth)
    # [N, kd, G, C/G, OD, H, W] → [N, OD, G, kd, C/G, H, W]: channels group-major, depth into batch
    grouped = _reshape(ctx, taps, (n, kd, group, c_per_group, out_depth, h, w))
    moved = _transpose(ctx, grouped, (0, 4, 2, 1, 3, 5, 6))
    planes = _reshape(ctx, moved, (n * out_depth, group * kd * c_per_group, h, w))
    planar_shape = (m, kd * c_per_group, kh, kw)
    if ctx.is_constant(weight_index):
        planar = np.ascontiguousarray(ctx.constant(weight_index, "W").transpose(0, 2, 1, 3, 4).reshape(planar_shape))
        weight = ctx.builder.constant(ctx.node.input[weight_index] + ".planar", planar)
    else:
        weight = _reshape(ctx, _transpose(ctx, ctx.input(weight_index), (0, 2, 1, 3, 4)), planar_shape)
    attrs = {"strides": strides[1:], "dilations": dilations[1:], "pads": [pads[1], pads[2], pads[4], pads[5]],
             "group": group}
    out = ctx.op("nn.conv2d", [planes, weight] + ([bias] if bias is not None else []), attrs)
    _, _, oh, ow = out.type.shape
    return _transpose(ctx, _reshape(ctx, out, (n, out_depth, m, oh, ow)), (0, 2, 1, 3, 4))


def conv_transpose3d(ctx: LowerContext, x: Value, bias: Value | None, strides: list[int], pads: list[int],
                     dilations: list[int], output_padding: list[int], group: int) -> Value:
    """The ConvTranspose of x [N, C, D, H, W] with the node's weight input [C, M/G, kd, kh, kw]: one
    nn.conv_transpose2d per depth tap, their depth slices summed where they land."""
    n, c, depth, h, w = x.type.shape
    weight_shape = ctx.input_type(1).shape
    _, m_per_group, kd, kh, kw = weight_shape
    if weight_shape[0] != c or c % group:
        raise ctx.error(f"input channels {c} do not match weight {list(weight_shape)} with group {group}")
    out_depth = strides[0] * (depth - 1) + dilations[0] * (kd - 1) + 1 + output_padding[0] - pads[0] - pads[3]
    if out_depth < 1:
        raise ctx.error(f"the output depth {out_depth} is not positive")
    planes = _reshape(ctx, _transpose(ctx, x, (0, 2, 1, 3, 4)), (n * depth, c, h, w))
    attrs = {"strides": strides[1:], "dilations": dilations[1:], "pads": [pads[1], pads[2], pads[4], pads[5]],
             "output_padding": output_padding[1:], "group": group}
    per_tap = []
    for t in range(kd):
        if ctx.is_constant(1):
            tap = ctx.builder.constant(f"{ctx.node.input[1]}.tap{t}",
                                       np.ascontiguousarray(ctx.constant(1, "W")[:, :, t]))
        else:
            sliced = ctx.op("nn.slice", [ctx.input(1)], {"starts": (0, 0, t, 0, 0), "steps": (1,) * 5,
                                                          "sizes": (c, m_per_group, 1, kh, kw)})
            tap = _reshape(ctx, sliced, (c, m_per_group, kh, kw))
        product = ctx.op("nn.conv_transpose2d", [planes, tap], attrs)
        per_tap.append(_reshape(ctx, product, (n, depth) + tuple(product.type.shape[1:])))
    m, oh, ow = per_tap[0].type.shape[2:]
    zeros = None   # an output depth no tap lands on (output padding), built once
    slices = []
    for od in range(out_depth):
        total = None
        for t in range(kd):
            i, off_grid = divmod(od + pads[0] - t * dilations[0], strides[0])
            if off_grid or not 0 <= i < depth:
                continue
            part = ctx.op("nn.slice", [per_tap[t]], {"starts": (0, i, 0, 0, 0), "steps": (1,) * 5,
                                                     "sizes": (n, 1, m, oh, ow)})
            total = part if total is None else ctx.op("nn.add", [total, part])
        if total is None:
            if zeros is None:
                zeros = ctx.builder.constant(f"{ctx.node.output[0]}.zeros", np.zeros((n, 1, m, oh, ow), x.type.np_dtype))
            total = zeros
        slices.append(total)
    stacked = slices[0] if len(slices) == 1 else ctx.op("nn.concat", slices, {"axis": 1})
    out = _transpose(ctx, stacked, (0, 2, 1, 3, 4))
    if bias is not None:
        out = ctx.op("nn.add", [out, _reshape(ctx, bias, (m, 1, 1, 1))])
    return out


def pool3d(ctx: LowerContext, opname: str, x: Value, attrs: dict) -> Value:
    """`opname` (nn.max_pool2d or nn.avg_pool2d) over the three spatial axes of x, as two 2-D poolings;
    `attrs` holds the 3-D kernel, strides, dilations and pads ([d, h, w begins, d, h, w ends])."""
    n, c, depth, h, w = x.type.shape
    kernel, strides, dilations, pads = (list(attrs[k]) for k in ("kernel", "strides", "dilations", "pads"))
    extra = {k: v for k, v in attrs.items() if k not in ("kernel", "strides", "dilations", "pads")}
    planar = ctx.op(opname, [_reshape(ctx, x, (n, c * depth, h, w))],
                    {**extra, "kernel": kernel[1:], "strides": strides[1:], "dilations": dilations[1:],
                     "pads": [pads[1], pads[2], pads[4], pads[5]]})
    _, _, oh, ow = planar.type.shape
    columns = _reshape(ctx, planar, (n, c, depth, oh * ow))
    pooled = ctx.op(opname, [columns], {**extra, "kernel": [kernel[0], 1], "strides": [strides[0], 1],
                                        "dilations": [dilations[0], 1], "pads": [pads[0], 0, pads[3], 0]})
    return _reshape(ctx, pooled, (n, c, pooled.type.shape[2], oh, ow))
