"""Graph-level sampling at computed positions: `nn.grid_sample`, ONNX's GridSample (RAFT's correlation
look-up and warping, spatial transformers, deformable sampling).

x is N×C×H×W (or N×C×D×H×W) and the grid N×H_out×W_out×2 (or ×3): per output position, the sampling
point in normalised coordinates, x first (the last spatial axis), each in [-1, 1] across the axis (its
outer pixel centres with `align_corners`, its outer pixel edges without). `mode` linear, nearest or cubic
(cubic on 2-D only, as ONNX), `padding_mode` zeros, border or reflection for points and taps outside.

The arithmetic is onnxruntime's (1.32), step for step in x's dtype: denormalising, rounding half to even
for nearest, reading every tap through the padding mode (a point itself is never moved), and the
interpolation's order of products and sums: linear `dy2·(dx2·p11 + dx1·p12) + dy1·(dx2·p21 + dx1·p22)`,
nested outward for 3-D, except on 2-D with zeros padding and without align_corners, where onnxruntime
sums weighted taps `w11·p11 + w12·p12 + w21·p21 + w22·p22` (w11 = dy2·dx2, ...); cubic, Keys'
coefficients with a = -0.75 along x, then along y.
"""

from __future__ import annotations

import numpy as np

from rcc.ir.optable import Attr, define
from rcc.ir.types import TensorType

GRID_SAMPLE_MODES = ("linear", "nearest", "cubic")
GRID_PADDING_MODES = ("zeros", "border", "reflection")
_CUBIC_A = -0.75


def _grid_sample_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    x, grid = types
    if x.dtype not in ("f32", "f64") or grid.dtype != x.dtype:
        raise ValueError(f"x and grid must be f32 or f64 of one type, got {x} and {grid}")
    if x.rank not in (4, 5) or grid.rank != x.rank or grid.shape[0] != x.shape[0] or grid.shape[-1] != x.rank - 2:
        raise ValueError(f"grid {grid} does not sample {x} (N×C×H×W with N×H_out×W_out×2, or 3-D)")
    if attrs["mode"] not in GRID_SAMPLE_MODES or attrs["padding_mode"] not in GRID_PADDING_MODES:
        raise ValueError(f"mode {attrs['mode']!r} or padding mode {attrs['padding_mode']!r} is unknown")
    if 0 in x.shape[2:]:
        raise ValueError(f"input spatial dimensions must be non-empty, got {x}")
    if attrs["mode"] == "cubic" and x.rank != 4:
        raise ValueError(f"cubic sampling is 2-D only, got {x}")
    return [TensorType(x.shape[:2] + grid.shape[1:-1], x.dtype)]


def _borders(size: int, align_corners: bool, t: type) -> tuple:
    """The sampling range along an axis of `size`: pixel centres with align_corners, pixel edges without."""
    return (t(0), t(size - 1)) if align_corners else (t(-0.5), t(size) - t(0.5))


def _denormalized(n: np.ndarray, size: int, align_corners: bool) -> np.ndarray:
    t = n.dtype.type
    if align_corners:
        return (n + t(1)) / t(2) * t(size - 1)
    return ((n + t(1)) * t(size) - t(1)) / t(2)


def _reflected(c: np.ndarray, low, high) -> np.ndarray:
    """`c` reflected by the nearer border until it lies within [low, high] (onnxruntime's GsReflect)."""
    t = c.dtype.type
    span = t(high - low)
    below, above = c < low, c > high
    distance = np.where(below, low - c, np.where(above, c - high, t(0)))
    with np.errstate(invalid="ignore", divide="ignore"):
        folds = np.trunc(distance / span) if span else np.zeros_like(distance)
    rest = distance - folds * span
    even = np.fmod(folds, 2) == 0
    from_low, from_high = low + rest, high - rest
    return np.where(below, np.where(even, from_low, from_high), np.where(above, np.where(even, from_high, from_low), c))


def _taps(x: np.ndarray, indices: list[np.ndarray], padding_mode: str, align_corners: bool) -> np.ndarray:
    """x's values at the integer positions `indices` (per spatial axis, x's order; each N×out), through the
    padding mode; N×C×out."""
    spatial = x.shape[2:]
    t = x.dtype.type
    if padding_mode == "border":
        indices = [np.clip(i, 0, size - 1) for i, size in zip(indices, spatial)]
    elif padding_mode == "reflection":
        indices = [_reflected(i.astype(x.dtype), *_borders(size, align_corners, t)).astype(np.int64)
                   for i, size in zip(indices, spatial)]
    inside = np.ones(indices[0].shape, dtype=bool)
    for i, size in zip(indices, spatial):
        inside &= (i >= 0) & (i < size)
    safe = [np.clip(i, 0, size - 1) for i, size in zip(indices, spatial)]
    batch = np.arange(x.shape[0]).reshape((-1,) + (1,) * (indices[0].ndim - 1))
    values = np.moveaxis(x, 1, -1)[(batch, *safe)]          # N×out×C
    values = np.where(inside[..., None], values, t(0))
    return np.moveaxis(values, -1, 1)


def _weighted_corners(x: np.ndarray, points: list[np.ndarray], floors: list[np.ndarray]) -> np.ndarray:
    """2-D linear sampling with zeros padding as onnxruntime's fast path sums it: four weights, then the
    weighted taps in the order top-left, top-right, bottom-left, bottom-right."""
    (y, x_), (y1, x1) = points, floors
    dy2, dy1 = ((y1 + 1).astype(x.dtype) - y)[:, None], (y - y1.astype(x.dtype))[:, None]
    dx2, dx1 = ((x1 + 1).astype(x.dtype) - x_)[:, None], (x_ - x1.astype(x.dtype))[:, None]
    corners = [_taps(x, [y1 + r, x1 + c], "zeros", False) for r in (0, 1) for c in (0, 1)]
    return (dy2 * dx2) * corners[0] + (dy2 * dx1) * corners[1] + (dy1 * dx2) * corners[2] + (dy1 * dx1) * corners[3]


def _cubic_coefficients(d: np.ndarray) -> list[np.ndarray]:
    t = d.dtype.type
    a, d = t(_CUBIC_A), np.abs(d)
    one, two, three, four, five, eight = (t(v) for v in (1, 2, 3, 4, 5, 8))
    near, far = d + one, two - d
    return [((a * near - five * a) * near + eight * a) * near - four * a,
            ((a + two) * d - (a + three)) * d * d + one,
            ((a + two) * (one - d) - (a + three)) * (one - d) * (one - d) + one,
            ((a * far - five * a) * far + eight * a) * far - four * a]


@define("nn.grid_sample", operands=("x", "grid"), infer=_grid_sample_infer,
        attrs={"mode": Attr("str", "linear"), "padding_mode": Attr("str", "zeros"),
               "align_corners": Attr("bool", False)})
def grid_sample(x: np.ndarray, grid: np.ndarray, *, mode: str, padding_mode: str, align_corners: bool) -> np.ndarray:
    """ONNX GridSample (opset 16 and 20): x sampled at the grid's points (see the module docstring)."""
    t = x.dtype.type
    spatial = x.shape[2:]
    # the grid's last axis holds x (the last spatial axis) first: per spatial axis of x, its coordinate
    points = [_denormalized(grid[..., len(spatial) - 1 - axis], size, align_corners)
              for axis, size in enumerate(spatial)]
    with np.errstate(invalid="ignore"):  # NaN points read index 0's value, as onnxruntime's cast gives no NaN
        if mode == "nearest":
            return _taps(x, [np.rint(p).astype(np.int64) for p in points], padding_mode, align_corners)
        floors = [np.floor(p).astype(np.int64) for p in points]
    if mode == "linear" and len(points) == 2 and padding_mode == "zeros" and not align_corners:
        return _weighted_corners(x, points, floors)
    if mode == "linear":
        def blend(axis: int, chosen: list[np.ndarray]) -> np.ndarray:
            if axis == len(points):
                return _taps(x, chosen, padding_mode, align_corners)
            low = floors[axis]
            upper = (low + 1).astype(x.dtype)[:, None] - points[axis][:, None]
            lower = points[axis][:, None] - low.astype(x.dtype)[:, None]
            return upper * blend(axis + 1, chosen + [low]) + lower * blend(axis + 1, chosen + [low + 1])
        return blend(0, [])
    rows, columns = floors[0] - 1, floors[1] - 1
    dy = (points[0] - rows.astype(x.dtype) - t(1))[:, None]
    dx = (points[1] - columns.astype(x.dtype) - t(1))[:, None]
    across, down = _cubic_coefficients(dx), _cubic_coefficients(dy)
    lines = []
    for r in range(4):
        taps = [_taps(x, [rows + r, columns + c], padding_mode, align_corners) for c in range(4)]
        lines.append(across[0] * taps[0] + across[1] * taps[1] + across[2] * taps[2] + across[3] * taps[3])
    return down[0] * lines[0] + down[1] * lines[1] + down[2] * lines[2] + down[3] * lines[3]
