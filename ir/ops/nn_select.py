"""Graph-level selection ops with static result shapes: the indices of the k largest or smallest values along
an axis (`nn.top_k_indices`; ONNX TopK is it and a gather of the values), one-hot encoding (`nn.one_hot`)
and the triangular part of matrices (`nn.trilu`, causal masks).

They run on the vector unit. TopK's order is onnxruntime's for sorted=1: by value, equal values by lower
index first.
"""

from __future__ import annotations

import numpy as np

from rcc.ir.optable import Attr, define
from rcc.ir.types import TensorType

_SORTABLE = ("f16", "f32", "f64", "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64")


def _top_k_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    x, axis, k = types[0], attrs["axis"], attrs["k"]
    if x.dtype not in _SORTABLE or not 0 <= axis < x.rank or not 0 <= k <= x.shape[axis]:
        raise ValueError(f"k={k} along axis {axis} does not select from {x}")
    return [TensorType(x.shape[:axis] + (k,) + x.shape[axis + 1:], "i64")]


@define("nn.top_k_indices", operands=("x",), infer=_top_k_infer,
        attrs={"k": Attr("int"), "axis": Attr("int"), "largest": Attr("bool", True)})
def top_k_indices(x: np.ndarray, *, k: int, axis: int, largest: bool) -> np.ndarray:
    """The positions along `axis` of x's k largest (or smallest) values, in order of value, equal values by
    lower position first (i64)."""
    if largest:   # a stable ascending sort of the reversed axis, reversed: descending, ties by lower position
        size = x.shape[axis]
        order = size - 1 - np.flip(np.argsort(np.flip(x, axis), axis=axis, kind="stable"), axis)
    else:
        order = np.argsort(x, axis=axis, kind="stable")
    return np.take(order, np.arange(k), axis=axis).astype(np.int64)


# (indices, depth, values) dtypes onnxruntime 1.32 has OneHot kernels for (probed over i32, i64, f32, f64): the
# frontend refuses other models as onnxruntime does, and the ONNX export gives depth a dtype of one of them
ONE_HOT_KERNELS = frozenset({("i32", "i32", "f32"), ("i32", "f32", "f32"), ("i64", "i32", "f32"), ("i64", "i64", "i64"),
                             ("i64", "i64", "f32"), ("i64", "f32", "i32"), ("i64", "f32", "f32"), ("f32", "i64", "i64"),
                             ("f32", "f32", "f32")})


def _one_hot_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    indices, values = types
    axis, depth = attrs["axis"], attrs["depth"]
    if values.shape != (2,) or depth < 1 or not 0 <= axis <= indices.rank:
        raise ValueError(f"indices {indices} with values {values} (off, on) and depth {depth} along axis {axis}")
    return [TensorType(indices.shape[:axis] + (depth,) + indices.shape[axis:], values.dtype)]


@define("nn.one_hot", operands=("indices", "values"), infer=_one_hot_infer,
        attrs={"depth": Attr("int"), "axis": Attr("int")})
def one_hot(indices: np.ndarray, values: np.ndarray, *, depth: int, axis: int) -> np.ndarray:
    """values[1] where the new axis `axis` (of `depth`) equals the index, values[0] elsewhere; negative indices
    count from the end, and an index outside [-depth, depth) is all values[0]."""
    index = np.trunc(indices).astype(np.int64) if indices.dtype.kind == "f" else indices.astype(np.int64)
    index = np.where(index < 0, index + depth, index)
    positions = np.arange(depth).reshape((depth,) + (1,) * (indices.ndim - axis))
    return np.where(np.expand_dims(index, axis) == positions, values[1], values[0]).astype(values.dtype)


def _trilu_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    if types[0].rank < 2:
        raise ValueError(f"operand must have at least 2 axes, got {types[0]}")
    return [types[0]]


@define("nn.trilu", operands=("x",), infer=_trilu_infer, attrs={"k": Attr("int", 0), "upper": Attr("bool", True)})
def trilu(x: np.ndarray, *, k: int, upper: bool) -> np.ndarray:
    """The upper (or lower) triangle of the last two axes from diagonal `k` on (below: up to), zeros elsewhere."""
    return np.triu(x, k) if upper else np.tril(x, k)
