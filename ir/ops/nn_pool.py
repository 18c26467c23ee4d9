"""Graph-level pooling and local normalisation: max/average pooling, global pooling, LRN."""

from __future__ import annotations

import functools
import math

import numpy as np

from rcc.ir.ops.nn_linear import conv_windows
from rcc.ir.optable import Attr, define
from rcc.ir.types import TensorType

_POOL_ATTRS = {
    "kernel": Attr("ints"),
    "strides": Attr("ints", (1, 1)),
    "pads": Attr("ints", (0, 0, 0, 0)),
    "dilations": Attr("ints", (1, 1)),
    "ceil_mode": Attr("bool", False),
}


def pool_output_size(size: int, kernel: int, stride: int, pad_begin: int, pad_end: int, dilation: int,
                     ceil_mode: bool) -> int:
    """ONNX pooling output length; in ceil mode a last window that starts in the end padding is dropped."""
    span = size + pad_begin + pad_end - dilation * (kernel - 1) - 1
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad_begin:
        out -= 1
    return out


def _pool_shape(shape: tuple[int, ...], attrs: dict) -> tuple[int, int]:
    (kh, kw), (sh, sw), (dh, dw), p = attrs["kernel"], attrs["strides"], attrs["dilations"], attrs["pads"]
    return (pool_output_size(shape[2], kh, sh, p[0], p[2], dh, attrs["ceil_mode"]),
            pool_output_size(shape[3], kw, sw, p[1], p[3], dw, attrs["ceil_mode"]))


def _pool_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    x = types[0]
    if x.rank != 4:
        raise ValueError(f"expects a 4-D input, got {x}")
    if len(attrs["kernel"]) != 2 or len(attrs["strides"]) != 2 or len(attrs["dilations"]) != 2 \
            or len(attrs["pads"]) != 4:
        raise ValueError("kernel, strides and dilations need 2 values, pads 4")
    if min(attrs["kernel"] + attrs["strides"] + attrs["dilations"]) < 1 or min(attrs["pads"]) < 0:
        raise ValueError("kernel, strides and dilations must be positive, pads non-negative")
    oh, ow = _pool_shape(x.shape, attrs)
    if oh < 1 or ow < 1:
        raise ValueError(f"kernel larger than padded input ({oh}x{ow} output)")
    return [TensorType((x.shape[0], x.shape[1], oh, ow), x.dtype)]


def _pool_windows(x: np.ndarray, pad_value: float, kernel: tuple[int, ...], strides: tuple[int, ...],
                  pads: tuple[int, ...], dilations: tuple[int, ...], ceil_mode: bool) -> np.ndarray:
    """Receptive fields [N, C, oh, ow, kh, kw]; ceil mode's extra end area is filled with `pad_value`."""
    if windows_tile(x.shape, kernel, strides, pads, dilations):   # windows tile the input: a view of it
        n, c, h, w = x.shape
        return x.reshape(n, c, h // kernel[0], kernel[0], w // kernel[1], kernel[1]).transpose(0, 1, 2, 4, 3, 5)
    oh, ow = _pool_shape(x.shape, {"kernel": kernel, "strides": strides, "pads": pads,
                                   "dilations": dilations, "ceil_mode": ceil_mode})
    need_h = (oh - 1) * strides[0] + dilations[0] * (kernel[0] - 1) + 1
    need_w = (ow - 1) * strides[1] + dilations[1] * (kernel[1] - 1) + 1
    extra_h = max(0, need_h - (x.shape[2] + pads[0] + pads[2]))
    extra_w = max(0, need_w - (x.shape[3] + pads[1] + pads[3]))
    padded_pads = (pads[0], pads[1], pads[2] + extra_h, pads[3] + extra_w)
    return conv_windows(x, tuple(kernel), strides, padded_pads, dilations, pad_value)[:, :, :oh, :ow]


def windows_tile(shape: tuple[int, ...], kernel, strides, pads, dilations) -> bool:
    """Whether the windows tile the input exactly: no pads, no dilation, strides equal to a kernel that divides
    the input (in ceil mode too, which then adds nothing)."""
    return not any(pads) and tuple(dilations) == (1, 1) and tuple(strides) == tuple(kernel) and \
        shape[2] % kernel[0] == 0 and shape[3] % kernel[1] == 0


def _over_taps(windows: np.ndarray, combine: np.ufunc, dtype: np.dtype) -> np.ndarray:
    """`combine` of the windows [N, C, oh, ow, kh, kw] over their taps, one strided tap at a time in
    row-major tap order (a reduction over the two small strided axes is many times slower)."""
    kh, kw = windows.shape[4:]
    out = windows[..., 0, 0].astype(dtype)
    for tap in range(1, kh * kw):
        combine(out, windows[..., tap // kw, tap % kw], out=out)
    return out


_SELECTIONS = ("maximum", "first_greater")


def _max_pool_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    if attrs["select"] not in _SELECTIONS:
        raise ValueError(f"select {attrs['select']!r} is not one of {', '.join(_SELECTIONS)}")
    return _pool_infer(types, attrs)


@define("nn.max_pool2d", operands=("x",), infer=_max_pool_infer, attrs={**_POOL_ATTRS, "select": Attr("str", "maximum")})
def max_pool2d(x: np.ndarray, *, select: str, **attrs) -> np.ndarray:
    """Maximum over each (dilated) window, as onnxruntime's two MaxPool kernels select it. "maximum" (MaxPool
    without its Indices output): np.maximum over the taps, padding reading the dtype's lowest finite value
    (onnxruntime starts every window there, not at −inf), so a NaN wins. "first_greater" (MaxPool with Indices):
    `_first_greater`'s value."""
    if select == "first_greater":
        return _first_greater(x, attrs)[0]
    if windows_tile(x.shape, attrs["kernel"], attrs["strides"], attrs["pads"], attrs["dilations"]):
        return _max_over_tiles(x, attrs["kernel"])
    low = np.finfo(x.dtype).min if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    return _over_taps(_pool_windows(x, low, **attrs), np.maximum, x.dtype)


def _max_over_tiles(x: np.ndarray, kernel) -> np.ndarray:
    """np.maximum over windows that tile x [N, C, H, W]: first along each row's runs of kw cells, then over each
    window's kh row maxima. np.maximum keeps its first operand on a tie or a NaN, so either order keeps each
    window's first maximal (or NaN) cell in row-major tap order, as `_over_taps` does: the same bits, in two
    passes over simply strided data (measured, 2×2 tiles: 6×28×28 12.6 → 5.7 µs, 64×56×56 139 → 89)."""
    (kh, kw), (n, c, h, w) = kernel, x.shape
    cells = x.reshape(-1, kw)
    rows = cells[:, 0] if kw == 1 else np.maximum(cells[:, 0], cells[:, 1])
    for j in range(2, kw):
        np.maximum(rows, cells[:, j], out=rows)
    windows = rows.reshape(n * c * (h // kh), kh, w // kw)
    out = windows[:, 0].copy() if kh == 1 else np.maximum(windows[:, 0], windows[:, 1])
    for i in range(2, kh):
        np.maximum(out, windows[:, i], out=out)
    return out.reshape(n, c, h // kh, w // kw)


def _first_greater(x: np.ndarray, attrs: dict) -> tuple[np.ndarray, np.ndarray]:
    """Per window, as onnxruntime's MaxPool with Indices scans it: its first input cell (not padding) in row-major
    tap order, then each later one greater than the value so far (a NaN is never greater, but a first NaN stays).
    The values, and the cells as flat indices h·W + w into their channel plane."""
    height, width = x.shape[2:]
    cells = np.arange(height * width, dtype=np.float64).reshape(1, 1, height, width)
    value_windows = _pool_windows(x, 0, **attrs)
    cell_windows = _pool_windows(cells, -1.0, **attrs)
    kh, kw = value_windows.shape[4:]
    best = np.zeros(value_windows.shape[:4], x.dtype)
    where = np.full(cell_windows.shape[:4], -1, np.int64)
    for tap in range(kh * kw):
        value, cell = value_windows[..., tap // kw, tap % kw], cell_windows[..., tap // kw, tap % kw]
        with np.errstate(invalid="ignore"):
            take = (cell >= 0) & ((where < 0) | (value > best))
        best = np.where(take, value, best)
        where = np.where(take, cell.astype(np.int64), where)
    return best, where


def _pool_indices_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    if attrs["storage_order"] not in (0, 1):
        raise ValueError(f"storage_order {attrs['storage_order']} is not 0 or 1")
    return [TensorType(_pool_infer(types, attrs)[0].shape, "i64")]


@define("nn.max_pool2d_indices", operands=("x",), infer=_pool_indices_infer,
        attrs={**_POOL_ATTRS, "storage_order": Attr("int", 0)})
def max_pool2d_indices(x: np.ndarray, *, storage_order: int, **attrs) -> np.ndarray:
    """MaxPool's Indices output as onnxruntime 1.32 computes it: the cell `_first_greater` selects in each window, as
    a flat index into x, (n·C + c)·H·W + h·W + w, or (n·C + c)·H·W + h + w·H with storage_order 1."""
    n, c, height, width = x.shape
    cells = _first_greater(x, attrs)[1]
    if storage_order == 1:
        cells = cells // width + cells % width * height
    return np.arange(n * c, dtype=np.int64).reshape(n, c, 1, 1) * (height * width) + cells


@define("nn.avg_pool2d", operands=("x",), infer=_pool_infer,
        attrs={**_POOL_ATTRS, "count_include_pad": Attr("bool", False)})
def avg_pool2d(x: np.ndarray, *, count_include_pad: bool, **attrs) -> np.ndarray:
    """Mean over each window; the divisor counts input cells, plus explicit pads if count_include_pad.

    A dilated window can miss every input cell; without count_include_pad its mean is 0, as in onnxruntime.
    """
    sums = _over_taps(_pool_windows(x, 0.0, **attrs), np.add, np.dtype(np.float64))
    if windows_tile(x.shape, attrs["kernel"], attrs["strides"], attrs["pads"], attrs["dilations"]):
        return (sums / float(attrs["kernel"][0] * attrs["kernel"][1])).astype(x.dtype)   # every count is the kernel's
    counts = _window_counts(x.shape[2:], count_include_pad, **{k: tuple(v) if isinstance(v, list) else v
                                                               for k, v in attrs.items()})
    return (sums / counts).astype(x.dtype)


@functools.lru_cache(maxsize=256)
def _window_counts(size: tuple[int, ...], count_include_pad: bool, **attrs) -> np.ndarray:
    """The divisor of every window (at least 1): the window sum of a mask, 1 on input cells and on explicit
    pads when they count; ceil mode's extra end area never counts."""
    pads = attrs["pads"]
    mask = np.pad(np.ones((1, 1) + size), ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])),
                  constant_values=1.0 if count_include_pad else 0.0)
    oh, ow = _pool_shape((1, 1) + size, attrs)
    counts = _pool_windows(mask, 0.0, **{**attrs, "pads": (0, 0, 0, 0)}).sum(axis=(4, 5))[:, :, :oh, :ow]
    counts = np.maximum(counts, 1.0)
    counts.flags.writeable = False
    return counts


def _global_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    x = types[0]
    if x.rank < 3:
        raise ValueError(f"expects an input of rank ≥ 3, got {x}")
    return [TensorType(x.shape[:2] + (1,) * (x.rank - 2), x.dtype)]


@define("nn.global_avg_pool", operands=("x",), infer=_global_infer)
def global_avg_pool(x: np.ndarray) -> np.ndarray:
    """Mean over all spatial axes, kept as size-1 axes."""
    return x.mean(axis=tuple(range(2, x.ndim)), keepdims=True, dtype=np.float64).astype(x.dtype)


@define("nn.global_max_pool", operands=("x",), infer=_global_infer)
def global_max_pool(x: np.ndarray) -> np.ndarray:
    """Maximum over all spatial axes, kept as size-1 axes."""
    return x.max(axis=tuple(range(2, x.ndim)), keepdims=True)


def _lrn_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    # ONNX defines even sizes too, but onnxruntime (our reference) refuses them.
    if attrs["size"] < 1 or attrs["size"] % 2 == 0:
        raise ValueError(f"size must be odd and positive (onnxruntime's limit), got {attrs['size']}")
    return [types[0]]


@define("nn.lrn", operands=("x",), infer=_lrn_infer,
        attrs={"size": Attr("int"), "alpha": Attr("float", 1e-4), "beta": Attr("float", 0.75),
               "bias": Attr("float", 1.0)})
def lrn(x: np.ndarray, *, size: int, alpha: float, beta: float, bias: float) -> np.ndarray:
    """Local response normalisation across channels, as ONNX LRN defines it."""
    squares = np.square(x.astype(np.float64))
    before, after = (size - 1) // 2, math.ceil((size - 1) / 2)
    padded = np.pad(squares, [(0, 0), (before, after)] + [(0, 0)] * (x.ndim - 2))
    cumulative = np.concatenate([np.zeros_like(padded[:, :1]), np.cumsum(padded, axis=1)], axis=1)
    window_sums = cumulative[:, size:size + x.shape[1]] - cumulative[:, :x.shape[1]]
    return (x / (bias + alpha / size * window_sums) ** beta).astype(x.dtype)
