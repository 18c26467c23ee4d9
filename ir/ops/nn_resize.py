"""Graph-level interpolating resize: `nn.resize` in linear and cubic modes (nearest is `nn.resize_nearest`,
in nn_shape.py), with onnxruntime's coordinate transformations, cubic coefficient, exclude_outside,
tf_crop_and_resize's region of interest and extrapolation value, and antialiasing (opset 18).

Both modes are separable: along each axis whose size or scale changes, every output element is a weighted
sum of input elements, so the op is a sequence of one matrix product per axis with a [out, in] weight
matrix (`axis_weights`). Coordinates are float32 in onnxruntime's order of operations
(`source_coordinates`); weights and sums are float64, the result the input's dtype. The commonest case,
bilinear resizing of the two spatial axes of a float32 NCHW tensor, is onnxruntime's UpsampleBilinear
float32 formula step for step instead (`onnxruntime_bilinear`), so a quantized model's float Resize
gives onnxruntime's integers.
"""

from __future__ import annotations

import functools

import numpy as np

from rcc.ir.ops.nn_shape import COORDINATE_MODES, source_coordinates
from rcc.ir.optable import Attr, define
from rcc.ir.types import TensorType

RESIZE_MODES = ("linear", "cubic")
RESIZE_COORDINATE_MODES = tuple(m for m in COORDINATE_MODES if m != "tf_half_pixel_for_nn") + ("tf_crop_and_resize",)


def crop_coordinates(in_size: int, out_size: int, roi_start: float, roi_end: float) -> np.ndarray:
    """tf_crop_and_resize: input coordinates spanning the region of interest [roi_start, roi_end] (fractions of
    the axis), in onnxruntime's float32 order of operations."""
    f32 = np.float32
    start, end, last = f32(roi_start), f32(roi_end), f32(in_size - 1)
    if out_size == 1:
        return np.array([f32(0.5) * (start + end) * last], dtype=f32)
    out = np.arange(out_size, dtype=f32)
    return start * last + out * (end - start) * last / f32(out_size - 1)


def _linear_filter(distance: np.ndarray, cubic_coeff_a: float) -> np.ndarray:
    return np.clip(1.0 - np.abs(distance), 0.0, 1.0)


def _cubic_filter(distance: np.ndarray, a: float) -> np.ndarray:
    x = np.abs(distance)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((x - 5) * x + 8) * x * a - 4 * a
    return np.where(x < 1, near, np.where(x < 2, far, 0.0))


_FILTERS = {"linear": (_linear_filter, 2), "cubic": (_cubic_filter, 4)}


def _antialias_weights(src: np.ndarray, in_size: int, scale: float, mode: str, a: float,
                       exclude_outside: bool) -> np.ndarray:
    """onnxruntime's antialiasing (as ONNX's reference defines it): when shrinking by `scale`, the filter is
    stretched by 1/scale and reads correspondingly more taps around each coordinate (indices clamped to the
    edge); the weights are normalised to sum to 1."""
    kernel, support_size = _FILTERS[mode]
    shrink = min(float(np.float32(scale)), 1.0)
    first = int(np.floor(-support_size / 2 / shrink) + 1)
    offsets = np.arange(first, 2 - first)
    coordinate = src.astype(np.float64)
    base = np.ceil(coordinate).astype(np.int64) - 1  # a whole coordinate reads from its left neighbour
    taps = base[:, None] + offsets[None, :]
    tap_weights = kernel((offsets[None, :] - (coordinate - base)[:, None]) * shrink, a)
    tap_weights /= tap_weights.sum(axis=1, keepdims=True)
    return _scatter_taps(taps, tap_weights, in_size, exclude_outside)


def _scatter_taps(taps: np.ndarray, tap_weights: np.ndarray, in_size: int, exclude_outside: bool) -> np.ndarray:
    """The [out, in] matrix of per-output taps [out, T] and their weights; taps outside the input read the
    edge, or with exclude_outside weigh 0 (the others renormalised)."""
    if exclude_outside:
        tap_weights = np.where((taps >= 0) & (taps < in_size), tap_weights, 0.0)
        totals = tap_weights.sum(axis=1, keepdims=True)  # 0 where every tap is outside (an extrapolated output)
        tap_weights = np.divide(tap_weights, totals, out=np.zeros_like(tap_weights), where=totals != 0)
    weights = np.zeros((taps.shape[0], in_size))
    np.add.at(weights, (np.repeat(np.arange(taps.shape[0]), taps.shape[1]), np.clip(taps, 0, in_size - 1).reshape(-1)),
              tap_weights.reshape(-1))
    return weights


def _tap_weights(src: np.ndarray, in_size: int, mode: str, a: float, exclude_outside: bool) -> np.ndarray:
    """Plain interpolation: linear reads the two neighbours of the clamped coordinate, cubic the four
    around it (indices clamped to the edge; with exclude_outside, outside taps weigh 0, the rest renormalised)."""
    weights = np.zeros((len(src), in_size))
    rows = np.arange(len(src))
    if mode == "linear":
        clamped = np.clip(src, np.float32(0), np.float32(in_size - 1)).astype(np.float64)
        below = np.minimum(np.floor(clamped).astype(np.int64), in_size - 1)
        above = np.minimum(below + 1, in_size - 1)
        to_above = np.where(below == above, 0.5, clamped - below)
        to_below = np.where(below == above, 0.5, above - clamped)
        np.add.at(weights, (rows, below), to_below)
        np.add.at(weights, (rows, above), to_above)
        return weights
    coordinate = src.astype(np.float64)
    base = np.floor(coordinate).astype(np.int64)
    offsets = np.arange(-1, 3)
    tap_weights = _cubic_filter(offsets[None, :] - (coordinate - base)[:, None], a)
    return _scatter_taps(base[:, None] + offsets[None, :], tap_weights, in_size, exclude_outside)


def axis_source(in_size: int, out_size: int, scale: float, coordinate_mode: str,
                roi: tuple[float, float]) -> np.ndarray:
    """float32 input coordinate of each output index along one axis."""
    if coordinate_mode == "tf_crop_and_resize":
        return crop_coordinates(in_size, out_size, *roi)
    return source_coordinates(in_size, out_size, scale, coordinate_mode)


def axis_weights(in_size: int, out_size: int, scale: float, attrs: dict, roi: tuple[float, float]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The [out, in] interpolation matrix of one axis, and which outputs fall outside the input (only
    tf_crop_and_resize extrapolates: those take `extrapolation_value`)."""
    src = axis_source(in_size, out_size, scale, attrs["coordinate_transformation_mode"], roi)
    outside = (src < 0) | (src > np.float32(in_size - 1))
    if attrs["coordinate_transformation_mode"] != "tf_crop_and_resize":
        outside[:] = False
    if attrs["antialias"]:
        weights = _antialias_weights(src, in_size, scale, attrs["mode"], attrs["cubic_coeff_a"],
                                     attrs["exclude_outside"])
    else:
        weights = _tap_weights(src, in_size, attrs["mode"], attrs["cubic_coeff_a"], attrs["exclude_outside"])
    return weights, outside


def roi_of_axis(roi: tuple[float, ...], axis: int, rank: int) -> tuple[float, float]:
    """(start, end) of the region of interest on `axis` (the whole axis without a roi)."""
    return (roi[axis], roi[axis + rank]) if roi else (0.0, 1.0)


def resize_axis_changes(x_shape: tuple[int, ...], attrs: dict, axis: int) -> bool:
    """Whether the resize interpolates along `axis`. As in onnxruntime, an axis whose scale is 1 keeps its
    values whatever the coordinate mode (even tf_crop_and_resize's region of interest), and so, with
    antialias, does an axis whose size is unchanged whatever its scale."""
    if np.float32(attrs["scales"][axis]) == 1:
        return False
    return not (attrs["antialias"] and attrs["sizes"][axis] == x_shape[axis])


def interpolation_matrices(x_shape: tuple[int, ...], attrs: dict) -> tuple[list[tuple[int, np.ndarray]], np.ndarray]:
    """(axis, [out, in] interpolation matrix) of every axis the resize changes, in order, and the mask
    (broadcastable to the result) of outputs that take `extrapolation_value`."""
    rank = len(x_shape)
    matrices, outside = [], np.zeros((1,) * rank, dtype=bool)
    if tuple(attrs["sizes"]) == tuple(x_shape):
        return matrices, outside  # as in onnxruntime: a result the shape of the input is the input
    for axis in range(rank):
        roi = roi_of_axis(attrs["roi"], axis, rank)
        if resize_axis_changes(x_shape, attrs, axis):
            weights, axis_outside = axis_weights(x_shape[axis], attrs["sizes"][axis], attrs["scales"][axis], attrs,
                                                 roi)
            matrices.append((axis, weights))
        elif (np.float32(attrs["scales"][axis]) != 1
              and attrs["coordinate_transformation_mode"] == "tf_crop_and_resize"):
            # an antialiased axis of unchanged size keeps its values, but onnxruntime still extrapolates the
            # outputs whose region-of-interest coordinate falls outside the input (found by the property test)
            src = crop_coordinates(x_shape[axis], attrs["sizes"][axis], *roi)
            axis_outside = (src < 0) | (src > np.float32(x_shape[axis] - 1))
        else:
            continue
        outside = outside | axis_outside.reshape([-1 if a == axis else 1 for a in range(rank)])
    return matrices, outside


def _resize_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    x, sizes, scales, roi = types[0], attrs["sizes"], attrs["scales"], attrs["roi"]
    if x.dtype not in ("f16", "f32", "f64"):
        raise ValueError(f"linear and cubic resizing take float tensors, got {x}")
    if len(sizes) != x.rank or len(scales) != x.rank or min(sizes, default=1) < 1 or min(scales, default=1) <= 0:
        raise ValueError(f"sizes and scales need {x.rank} positive values")
    if attrs["mode"] not in RESIZE_MODES:
        raise ValueError(f"mode {attrs['mode']!r} is not one of {', '.join(RESIZE_MODES)}")
    if attrs["coordinate_transformation_mode"] not in RESIZE_COORDINATE_MODES:
        raise ValueError(f"coordinate_transformation_mode {attrs['coordinate_transformation_mode']!r} is not one of "
                         f"{', '.join(RESIZE_COORDINATE_MODES)}")
    if roi and len(roi) != 2 * x.rank:
        raise ValueError(f"roi needs {2 * x.rank} values, got {len(roi)}")
    if min(x.shape, default=1) < 1:
        raise ValueError(f"cannot interpolate the empty {x}")
    return [TensorType(tuple(sizes), x.dtype)]


def _bilinear_taps(in_size: int, out_size: int, scale: float, coordinate_mode: str
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """onnxruntime's bilinear setup along one axis: the two neighbours of each clamped float32 coordinate and
    the float32 distances to them (|c − low|, |c − high|; both 0.5 where the neighbours coincide)."""
    coordinate = np.clip(source_coordinates(in_size, out_size, scale, coordinate_mode), np.float32(0),
                         np.float32(in_size - 1))
    low = np.minimum(coordinate.astype(np.int64), in_size - 1)
    high = np.minimum(low + 1, in_size - 1)
    to_low = np.abs(coordinate - low.astype(np.float32)).astype(np.float32)
    to_high = np.abs(coordinate - high.astype(np.float32)).astype(np.float32)
    same = low == high
    to_low[same], to_high[same] = np.float32(0.5), np.float32(0.5)
    return low, high, to_low, to_high


def onnxruntime_bilinear(x: np.ndarray, attrs: dict) -> np.ndarray | None:
    """onnxruntime's UpsampleBilinear for a float32 NCHW tensor whose last two axes (or one) are resized linearly (no
    antialias, no region of interest): dx2·dy2·X11 + dx1·dy2·X21 + dx2·dy1·X12 + dx1·dy1·X22, each product
    and sum rounded to float32 left to right. None when the resize is not that case."""
    taps = ort_bilinear_taps(x.shape, x.dtype, attrs)
    if taps is None:
        return None
    n, c, h, w = x.shape
    out_h, out_w = attrs["sizes"][2:]
    pixels = x.reshape(n * c, h * w)
    (first, first_weight), *rest = taps
    total = np.take(pixels, first, axis=1)
    total *= first_weight
    for index, weight in rest:   # float32 throughout, in onnxruntime's order
        term = np.take(pixels, index, axis=1)
        term *= weight
        total += term
    return total.reshape(n, c, out_h, out_w)


def ort_bilinear_taps(shape: tuple[int, ...], dtype: np.dtype,
                      attrs: dict) -> tuple[tuple[np.ndarray, np.ndarray], ...] | None:
    """`onnxruntime_bilinear`'s taps for an input of `shape` and `dtype` (`_bilinear_plan`), or None when the
    resize is not its case (the result the shape of the input included)."""
    changed = [axis for axis in range(len(shape)) if resize_axis_changes(shape, attrs, axis)]
    if dtype != np.float32 or len(shape) != 4 or tuple(attrs["sizes"]) == tuple(shape) or not changed \
            or not set(changed) <= {2, 3} or attrs["mode"] != "linear" or attrs["antialias"] \
            or attrs["coordinate_transformation_mode"] == "tf_crop_and_resize":
        return None
    h, w = shape[2:]
    out_h, out_w = attrs["sizes"][2:]
    return _bilinear_plan(h, w, out_h, out_w, attrs["scales"][2], attrs["scales"][3],
                          attrs["coordinate_transformation_mode"])


@functools.lru_cache(maxsize=64)
def _bilinear_plan(h: int, w: int, out_h: int, out_w: int, scale_h: float, scale_w: float, mode: str
                   ) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """`onnxruntime_bilinear`'s four taps X11, X21, X12, X22 as (flat pixel index, float32 weight) per output
    pixel: dx2·dy2, dx1·dy2, dx2·dy1, dx1·dy1 (computed once per geometry; callers only read them)."""
    y1, y2, dy1, dy2 = _bilinear_taps(h, out_h, scale_h, mode)
    x1, x2, dx1, dx2 = _bilinear_taps(w, out_w, scale_w, mode)
    dy1, dy2, y1, y2 = dy1[:, None], dy2[:, None], y1[:, None], y2[:, None]
    taps = tuple(((row * w + column).reshape(-1), (row_weight * column_weight).reshape(-1))
                 for row, column, row_weight, column_weight in
                 ((y1, x1, dy2, dx2), (y1, x2, dy2, dx1), (y2, x1, dy1, dx2), (y2, x2, dy1, dx1)))
    for index, weight in taps:
        index.flags.writeable = weight.flags.writeable = False
    return taps


@define("nn.resize", operands=("x",), infer=_resize_infer,
        attrs={"mode": Attr("str"), "sizes": Attr("ints"), "scales": Attr("floats"),
               "coordinate_transformation_mode": Attr("str", "half_pixel"), "cubic_coeff_a": Attr("float", -0.75),
               "exclude_outside": Attr("bool", False), "extrapolation_value": Attr("float", 0.0),
               "roi": Attr("floats", ()), "antialias": Attr("bool", False)})
def resize(x: np.ndarray, **attrs) -> np.ndarray:
    """ONNX Resize in linear or cubic mode to `sizes`; `scales` (output/input per axis, used as float32) map
    coordinates, `roi` ([starts..., ends...] as fractions, tf_crop_and_resize only) crops first. As in
    onnxruntime, a result the shape of the input is the input, whatever the scales say."""
    bilinear = onnxruntime_bilinear(x, attrs)
    if bilinear is not None:
        return bilinear
    matrices, outside = interpolation_matrices(x.shape, attrs)
    out = x.astype(np.float64)
    for axis, weights in matrices:
        out = np.moveaxis(np.tensordot(weights, out, axes=([1], [axis])), 0, axis)
    out = np.where(outside, attrs["extrapolation_value"], out)
    return np.ascontiguousarray(out.astype(x.dtype))
