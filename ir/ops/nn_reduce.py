"""Graph-level reductions over axes (`nn.reduce_sum`, `_mean`, `_max`, `_min`, `_prod`, `_l1`, `_l2`,
`_sum_square`, `_log_sum`, `_log_sum_exp`), the index reductions `nn.argmax` / `nn.argmin` and the running
sum `nn.cumsum`.

`axes` are non-negative, sorted and distinct (the frontend resolves ONNX's negative axes, the "all axes"
default and noop_with_empty_axes); `keepdims` keeps each reduced axis with length 1. Semantics follow
onnxruntime: an empty reduction gives the reduction's identity (0 for sums, 1 for products, −inf for
max and log-sums, +inf for min; an integer dtype's lowest/highest value); integer results of a mean
divide truncating, of L2 and the logarithms compute in float and truncate toward zero.
"""

from __future__ import annotations

import math

import numpy as np

from rcc.ir.optable import Attr, define
from rcc.ir.types import TensorType

_REDUCE_ATTRS = {"axes": Attr("ints"), "keepdims": Attr("bool", True)}


def _reduced_shape(shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool) -> tuple[int, ...]:
    if any(not 0 <= a < len(shape) for a in axes) or list(axes) != sorted(set(axes)):
        raise ValueError(f"axes {list(axes)} must be distinct, sorted and within rank {len(shape)}")
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _reduce_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    x = types[0]
    if x.np_dtype.kind not in "fiub":
        raise ValueError(f"operand must be a numeric tensor, got {x}")
    return [TensorType(_reduced_shape(x.shape, attrs["axes"], attrs["keepdims"]), x.dtype)]


def _lowest(dtype: np.dtype):
    if dtype.kind == "f":
        return -np.inf
    return False if dtype.kind == "b" else np.iinfo(dtype).min


def _highest(dtype: np.dtype):
    if dtype.kind == "f":
        return np.inf
    return True if dtype.kind == "b" else np.iinfo(dtype).max


def _in_dtype(values, dtype: np.dtype) -> np.ndarray:
    """`values` (computed wider) in `dtype`; integers truncate toward zero as a C cast does."""
    with np.errstate(invalid="ignore", over="ignore"):
        return np.asarray(values).astype(dtype)


def _wide(x: np.ndarray) -> np.ndarray:
    """Where a reduction computes: integers in float64, float16 in float32 (as onnxruntime accumulates it: the
    sum or the squares of representable values can overflow float16), other floats as they are."""
    if x.dtype == np.float16:
        return x.astype(np.float32)
    return x if x.dtype.kind == "f" else x.astype(np.float64)


def _reduction(name: str):
    return define(name, operands=("x",), infer=_reduce_infer, attrs=dict(_REDUCE_ATTRS))


@_reduction("nn.reduce_sum")
def reduce_sum(x: np.ndarray, *, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
    """Σ x over `axes`."""
    return np.asarray(np.sum(x, axis=axes, keepdims=keepdims, dtype=x.dtype))


@_reduction("nn.reduce_mean")
def reduce_mean(x: np.ndarray, *, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
    """Σ x / n over `axes` (integers: the sum divided truncating toward zero; empty: 0, as onnxruntime gives it for
    floats too; float16 summed and divided in float32)."""
    count = math.prod(x.shape[a] for a in axes)
    if x.dtype.kind in "iu":
        total = np.sum(x, axis=axes, keepdims=keepdims, dtype=x.dtype)
        return _in_dtype(np.trunc(total / max(count, 1)) if count else total, x.dtype)
    wide = _wide(x)
    total = np.sum(wide, axis=axes, keepdims=keepdims, dtype=wide.dtype)
    if not count:   # the empty sums, 0, as onnxruntime gives them
        return np.asarray(total, dtype=x.dtype)
    return np.asarray(np.divide(total, wide.dtype.type(count)), dtype=x.dtype)


@_reduction("nn.reduce_max")
def reduce_max(x: np.ndarray, *, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
    """max x over `axes` (NaN wins; empty: the dtype's lowest value, −inf for floats)."""
    return np.asarray(np.max(x, axis=axes, keepdims=keepdims, initial=_lowest(x.dtype)), dtype=x.dtype)


@_reduction("nn.reduce_min")
def reduce_min(x: np.ndarray, *, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
    """min x over `axes` (NaN wins; empty: the dtype's highest value, +inf for floats)."""
    return np.asarray(np.min(x, axis=axes, keepdims=keepdims, initial=_highest(x.dtype)), dtype=x.dtype)


@_reduction("nn.reduce_prod")
def reduce_prod(x: np.ndarray, *, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
    """Π x over `axes`."""
    return np.asarray(np.prod(x, axis=axes, keepdims=keepdims, dtype=x.dtype))


@_reduction("nn.reduce_l1")
def reduce_l1(x: np.ndarray, *, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
    """Σ |x| over `axes`."""
    return np.asarray(np.sum(np.abs(x), axis=axes, keepdims=keepdims, dtype=x.dtype))


@_reduction("nn.reduce_sum_square")
def reduce_sum_square(x: np.ndarray, *, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
    """Σ x² over `axes`."""
    return np.asarray(np.sum(np.multiply(x, x, dtype=x.dtype), axis=axes, keepdims=keepdims, dtype=x.dtype))


@_reduction("nn.reduce_l2")
def reduce_l2(x: np.ndarray, *, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
    """sqrt(Σ x²) over `axes`."""
    wide = _wide(x)
    return _in_dtype(np.sqrt(np.sum(wide * wide, axis=axes, keepdims=keepdims, dtype=wide.dtype)), x.dtype)


@_reduction("nn.reduce_log_sum")
def reduce_log_sum(x: np.ndarray, *, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
    """log(Σ x) over `axes` (−inf when empty)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return _in_dtype(np.log(np.sum(_wide(x), axis=axes, keepdims=keepdims)), x.dtype)


@_reduction("nn.reduce_log_sum_exp")
def reduce_log_sum_exp(x: np.ndarray, *, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
    """log(Σ exp(x)) over `axes`, shifted by the maximum so that it does not overflow (−inf when empty)."""
    wide = _wide(x)
    peak = np.max(wide, axis=axes, keepdims=True, initial=-np.inf)
    shift = np.where(np.isfinite(peak), peak, 0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        total = np.log(np.sum(np.exp(wide - shift), axis=axes, keepdims=True)) + shift
    return _in_dtype(total if keepdims else np.squeeze(total, axis=axes), x.dtype)


def _arg_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    x, axis = types[0], attrs["axis"]
    if not 0 <= axis < x.rank or x.shape[axis] == 0:
        raise ValueError(f"axis {axis} must be a non-empty axis of {x}")
    return [TensorType(_reduced_shape(x.shape, (axis,), attrs["keepdims"]), "i64")]


_ARG_ATTRS = {"axis": Attr("int"), "keepdims": Attr("bool", True), "select_last_index": Attr("bool", False)}


def _arg_reduce(find, x: np.ndarray, axis: int, keepdims: bool, select_last_index: bool) -> np.ndarray:
    if select_last_index:
        flipped = np.flip(x, axis=axis)
        index = x.shape[axis] - 1 - find(flipped, axis=axis, keepdims=True)
    else:
        index = find(x, axis=axis, keepdims=True)
    index = index.astype(np.int64)
    return index if keepdims else np.squeeze(index, axis=axis)


@define("nn.argmax", operands=("x",), infer=_arg_infer, attrs=dict(_ARG_ATTRS))
def argmax(x: np.ndarray, *, axis: int, keepdims: bool, select_last_index: bool) -> np.ndarray:
    """Index (i64) of the largest value along `axis`: its first occurrence, or its last one."""
    return _arg_reduce(np.argmax, x, axis, keepdims, select_last_index)


@define("nn.argmin", operands=("x",), infer=_arg_infer, attrs=dict(_ARG_ATTRS))
def argmin(x: np.ndarray, *, axis: int, keepdims: bool, select_last_index: bool) -> np.ndarray:
    """Index (i64) of the smallest value along `axis`: its first occurrence, or its last one."""
    return _arg_reduce(np.argmin, x, axis, keepdims, select_last_index)


_CUMSUM_DTYPES = frozenset({"f32", "f64", "i32", "i64"})  # onnxruntime's CumSum kernels (float16 runs in float32)


def _cumsum_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    x, axis = types[0], attrs["axis"]
    if x.dtype not in _CUMSUM_DTYPES:
        raise ValueError(f"operand must be one of {sorted(_CUMSUM_DTYPES)}, got {x}")
    if not 0 <= axis < x.rank:
        raise ValueError(f"axis {axis} is not an axis of {x}")
    return [x]


@define("nn.cumsum", operands=("x",), infer=_cumsum_infer,
        attrs={"axis": Attr("int"), "exclusive": Attr("bool", False), "reverse": Attr("bool", False)})
def cumsum(x: np.ndarray, *, axis: int, exclusive: bool, reverse: bool) -> np.ndarray:
    """Running sum along `axis`, in `x`'s dtype, added one element after the other from the first (from the
    last when `reverse`), as onnxruntime adds; `exclusive` leaves each element out of its own sum (the first
    is 0). Integers wrap around."""
    ordered = np.flip(x, axis) if reverse else x
    if exclusive:
        widths = [(0, 0)] * x.ndim
        widths[axis] = (1, 0)
        ordered = np.pad(ordered, widths)[tuple(slice(0, -1) if a == axis else slice(None) for a in range(x.ndim))]
    total = np.cumsum(ordered, axis=axis, dtype=x.dtype)
    return np.flip(total, axis) if reverse else total
