"""Lowering of ONNX's Resize (opsets 10 to 19), Upsample (opsets 7 to 9) and GridSample (16, 20).

Scales, sizes, axes, keep_aspect_ratio_policy and the region of interest are resolved here into the static
`sizes` and `scales` (output/input, per axis) of `nn.resize_nearest` (mode nearest) or `nn.resize` (modes
linear and cubic, rcc.ir.ops.nn_resize). Upsample and opset-10 Resize map coordinates asymmetrically, as
onnxruntime does; from opset 11 on the node's coordinate_transformation_mode says how. GridSample's
modes are named as from opset 20 on (linear, nearest, cubic) in `nn.grid_sample`; like onnxruntime, 3-D
sampling is taken in opset 16 models too.
"""

from __future__ import annotations

import math

import numpy as np

from rcc.compiler.frontend.context import LowerContext
from rcc.compiler.frontend.registry import rule
from rcc.compiler.frontend.rules_shape import axes_input
from rcc.ir.ops.nn_grid_sample import GRID_PADDING_MODES
from rcc.ir.ops.nn_resize import RESIZE_COORDINATE_MODES
from rcc.ir.ops.nn_shape import COORDINATE_MODES, NEAREST_MODES

_POLICIES = ("stretch", "not_larger", "not_smaller")


def _resize_axes(ctx: LowerContext, rank: int) -> list[int]:
    return axes_input(ctx, rank, -1) if ctx.attr("axes") is not None else list(range(rank))


def _resize_scales_and_sizes(ctx: LowerContext, shape: tuple[int, ...], scales_index: int,
                             sizes_index: int) -> tuple[list[float], list[int]]:
    rank = len(shape)
    axes = _resize_axes(ctx, rank)
    scales_data = ctx.optional_constant(scales_index, "scales") if scales_index >= 0 else None
    sizes_data = ctx.optional_constant(sizes_index, "sizes") if sizes_index >= 0 else None
    if scales_data is None and ctx.attr("scales") is not None:
        scales_data = np.array(ctx.attr("scales"), dtype=np.float32)
    scales, sizes = [1.0] * rank, list(shape)
    if sizes_data is not None and sizes_data.size:
        given = [int(s) for s in sizes_data.reshape(-1)]
        if len(given) != len(axes):
            raise ctx.error(f"sizes has {len(given)} values for {len(axes)} axes")
        policy = ctx.attr("keep_aspect_ratio_policy", "stretch")
        if policy not in _POLICIES:
            raise ctx.error(f"keep_aspect_ratio_policy {policy!r} is not one of {', '.join(_POLICIES)}")
        if policy != "stretch":
            ratios = [given[i] / shape[a] for i, a in enumerate(axes)]
            ratio = min(ratios) if policy == "not_larger" else max(ratios)
            given = [int(math.floor(ratio * shape[a] + 0.5)) for a in axes]
            for a in axes:
                scales[a] = ratio
        for i, axis in enumerate(axes):
            sizes[axis] = given[i]
            if policy == "stretch":
                scales[axis] = given[i] / shape[axis]
    elif scales_data is not None and scales_data.size:
        if scales_data.size != len(axes):
            raise ctx.error(f"scales has {scales_data.size} values for {len(axes)} axes")
        for i, axis in enumerate(axes):
            scales[axis] = float(scales_data.reshape(-1)[i])
            # onnxruntime multiplies in float32 and truncates (10 × 0.7 gives 7, not 6)
            sizes[axis] = int(np.float32(shape[axis]) * np.float32(scales[axis]))
    else:
        raise ctx.error("needs scales or sizes")
    if min(scales) <= 0 or min(sizes) < 1:
        raise ctx.error(f"scales {scales} and sizes {sizes} must be positive")
    return scales, sizes


def _roi(ctx: LowerContext, rank: int) -> tuple[float, ...]:
    """tf_crop_and_resize's region of interest for every axis, [starts..., ends...] (axes not listed whole)."""
    data = ctx.optional_constant(1, "roi")
    if data is None or not data.size:
        raise ctx.error("coordinate_transformation_mode tf_crop_and_resize needs the roi input")
    axes = _resize_axes(ctx, rank)
    values = [float(v) for v in data.reshape(-1)]
    if len(values) != 2 * len(axes):
        raise ctx.error(f"roi has {len(values)} values, expected {2 * len(axes)}")
    starts, ends = [0.0] * rank, [1.0] * rank
    for i, axis in enumerate(axes):
        starts[axis], ends[axis] = values[i], values[i + len(axes)]
    return tuple(starts + ends)


def _legacy_nearest_mode(ctx: LowerContext, scales: list[float]) -> str:
    """Upsample and Resize-10 read floor(x / scale); onnxruntime rounds up when shrinking instead."""
    resized = [s for s in scales if s != 1.0]
    if all(s > 1.0 for s in resized):
        return "floor"
    if all(s < 1.0 for s in resized):
        return "ceil"
    raise ctx.unsupported("opset-10 nearest resizing that grows some axes and shrinks others")


def _mode(ctx: LowerContext) -> str:
    mode = ctx.attr("mode", "nearest")
    mode = "linear" if mode == "bilinear" else mode  # Upsample-7's name for it
    if mode not in ("nearest", "linear", "cubic"):
        raise ctx.error(f"mode {mode!r} is not nearest, linear or cubic")
    return mode


def _nearest_attrs(ctx: LowerContext, coordinate_mode: str) -> dict:
    nearest_mode = ctx.attr("nearest_mode", "round_prefer_floor")
    if nearest_mode not in NEAREST_MODES:
        raise ctx.error(f"nearest_mode {nearest_mode!r} is not one of {', '.join(NEAREST_MODES)}")
    if coordinate_mode not in COORDINATE_MODES:
        raise ctx.unsupported(f"nearest resizing with coordinate_transformation_mode {coordinate_mode!r}")
    return {"coordinate_transformation_mode": coordinate_mode, "nearest_mode": nearest_mode}


def _interpolation_attrs(ctx: LowerContext, mode: str, coordinate_mode: str, rank: int) -> dict:
    if coordinate_mode not in RESIZE_COORDINATE_MODES:
        raise ctx.unsupported(f"{mode} resizing with coordinate_transformation_mode {coordinate_mode!r}")
    attrs = {"mode": mode, "coordinate_transformation_mode": coordinate_mode,
             "cubic_coeff_a": float(ctx.attr("cubic_coeff_a", -0.75)),
             "exclude_outside": bool(ctx.attr("exclude_outside", 0)),
             "extrapolation_value": float(ctx.attr("extrapolation_value", 0.0)),
             "antialias": bool(ctx.attr("antialias", 0))}
    if attrs["exclude_outside"] and mode == "linear" and not attrs["antialias"]:
        raise ctx.error("exclude_outside applies to cubic resizing, or to linear resizing with antialias")
    if coordinate_mode == "tf_crop_and_resize":
        attrs["roi"] = _roi(ctx, rank)
    return attrs


@rule("Resize", "Upsample")
def lower_resize(ctx: LowerContext) -> None:
    mode = _mode(ctx)
    shape = ctx.input_type(0).shape
    legacy = ctx.node.op_type == "Upsample" or ctx.opset < 11
    if legacy:
        scales, sizes = _resize_scales_and_sizes(ctx, shape, 1, -1)
        coordinate_mode = "asymmetric"
    else:
        scales, sizes = _resize_scales_and_sizes(ctx, shape, 2, 3)
        coordinate_mode = ctx.attr("coordinate_transformation_mode", "half_pixel")
    all_modes = set(COORDINATE_MODES) | set(RESIZE_COORDINATE_MODES)
    if coordinate_mode not in all_modes:
        raise ctx.error(f"coordinate_transformation_mode {coordinate_mode!r} is not one of "
                        f"{', '.join(sorted(all_modes))}")
    attrs = {"sizes": tuple(sizes), "scales": tuple(scales)}
    if mode == "nearest":
        attrs.update(_nearest_attrs(ctx, coordinate_mode))
        if legacy:
            attrs["nearest_mode"] = _legacy_nearest_mode(ctx, scales)
        ctx.bind(0, ctx.op("nn.resize_nearest", [ctx.input(0)], attrs))
        return
    attrs.update(_interpolation_attrs(ctx, mode, coordinate_mode, len(shape)))
    ctx.bind(0, ctx.op("nn.resize", [ctx.input(0)], attrs))


_GRID_MODES = {16: {"bilinear": "linear", "nearest": "nearest", "bicubic": "cubic"},
               20: {"linear": "linear", "nearest": "nearest", "cubic": "cubic"}}


@rule("GridSample")
def lower_grid_sample(ctx: LowerContext) -> None:
    names = _GRID_MODES[20 if ctx.opset >= 20 else 16]
    mode = ctx.attr("mode", "linear" if ctx.opset >= 20 else "bilinear")
    padding_mode = ctx.attr("padding_mode", "zeros")
    align_corners = ctx.flag("align_corners", 0)
    if mode not in names:
        raise ctx.error(f"attribute mode={mode!r} is not one of {', '.join(names)} in opset {ctx.opset}")
    if padding_mode not in GRID_PADDING_MODES:
        raise ctx.error(f"attribute padding_mode={padding_mode!r} is not one of {', '.join(GRID_PADDING_MODES)}")
    x, grid = ctx.input(0), ctx.input(1)
    if grid.type.dtype != x.type.dtype and grid.type.dtype == "f16" and x.type.dtype in ("f32", "f64"):
        grid = ctx.op("nn.cast", [grid], {"to": x.type.dtype})   # exact; onnxruntime takes the two types apart
    ctx.bind(0, ctx.op("nn.grid_sample", [x, grid],
                       {"mode": names[mode], "padding_mode": padding_mode, "align_corners": align_corners}))
