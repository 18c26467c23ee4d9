"""Graph-level indexing ops: strided slices, gathers and scatters (by index tuple, by element), broadcasting
expansion and tiling.

Shapes are static: the frontend resolves ONNX's starts/ends/steps, split sizes, target shapes and repeats
into attributes. Index operands (`nn.gather*`) are integer tensors that may be activations (token ids,
index selects) and so may the scatters' data and updates (BART's shifted token ids); negative indices
count from the end of the axis, as in ONNX, and an index outside the
axis is an RccError naming the op and the index (onnxruntime refuses it too).

Embedding look-ups (`nn.gather` of a constant table by activation indices) run on the vector unit: the
table is a constant held in the vector unit's memory (a preloaded buffer of the program, its bytes are the
table's), and each look-up copies the indexed rows. rcc does not map tables onto crossbars as one-hot MVMs:
a one-hot MVM programs the whole table into arrays to read one row per index, which costs a crossbar read
and an ADC conversion per table column where a memory read of the row is exact and cheaper.
"""

from __future__ import annotations

import math

import numpy as np

from rcc.ir.errors import RccError
from rcc.ir.optable import Attr, broadcast_shapes, define
from rcc.ir.types import TensorType

INDEX_DTYPES = ("i32", "i64")


def _slice_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    x = types[0]
    starts, steps, sizes = attrs["starts"], attrs["steps"], attrs["sizes"]
    if not len(starts) == len(steps) == len(sizes) == x.rank:
        raise ValueError(f"starts, steps and sizes need {x.rank} values each")
    for axis, (start, step, size) in enumerate(zip(starts, steps, sizes)):
        last = start + (size - 1) * step
        if step == 0 or size < 0 or size and not (0 <= start < x.shape[axis] and 0 <= last < x.shape[axis]):
            raise ValueError(f"axis {axis}: {size} elements from {start} by {step} do not fit {x.shape[axis]}")
    return [TensorType(tuple(sizes), x.dtype)]


@define("nn.slice", operands=("x",), infer=_slice_infer,
        attrs={"starts": Attr("ints"), "steps": Attr("ints"), "sizes": Attr("ints")})
def slice_(x: np.ndarray, *, starts: tuple[int, ...], steps: tuple[int, ...], sizes: tuple[int, ...]) -> np.ndarray:
    """On every axis, `sizes[i]` elements from index `starts[i]` on by `steps[i]` (a step may be negative)."""
    return slicer(starts, steps, sizes)(x)


def slicer(starts: tuple[int, ...], steps: tuple[int, ...], sizes: tuple[int, ...]):
    """`slice_` with its attributes fixed (the machine prepares it once per step): x → a C-ordered copy."""
    index = tuple(slice(start, start + size * step if start + size * step >= 0 else None, step) if size else
                  slice(0, 0) for start, step, size in zip(starts, steps, sizes))
    return lambda x: np.array(x[index], order="C") if x.ndim else x.copy()


def _axis_in_range(axis: int, rank: int) -> None:
    if not 0 <= axis < rank:
        raise ValueError(f"axis {axis} out of range for rank {rank}")


def _check_indices(indices: TensorType) -> None:
    if indices.dtype not in INDEX_DTYPES:
        raise ValueError(f"indices must be i32 or i64, got {indices}")


def normalized_indices(indices: np.ndarray, size: int, opname: str) -> np.ndarray:
    """Indices into an axis of `size` with negative ones counted from its end; RccError when one is outside."""
    if indices.size and (indices.min() < -size or indices.max() >= size):
        bad = indices[(indices < -size) | (indices >= size)].reshape(-1)[0]
        raise RccError(f"{opname}: index {int(bad)} is out of range for an axis of {size}")
    return np.where(indices < 0, indices + size, indices).astype(np.int64)


def _gather_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    x, indices = types
    _check_indices(indices)
    _axis_in_range(attrs["axis"], x.rank)
    axis = attrs["axis"]
    return [TensorType(x.shape[:axis] + indices.shape + x.shape[axis + 1:], x.dtype)]


@define("nn.gather", operands=("x", "indices"), infer=_gather_infer, attrs={"axis": Attr("int", 0)})
def gather(x: np.ndarray, indices: np.ndarray, *, axis: int) -> np.ndarray:
    """ONNX Gather: x's slices along `axis` picked by `indices` (the result's axes: x's before `axis`,
    the indices', x's after it). With a constant x and activation indices, an embedding look-up."""
    try:   # np.take counts negative indices from the end, as ONNX does, and refuses the others outside
        return np.take(x, indices, axis=axis)
    except IndexError:
        normalized_indices(indices, x.shape[axis], "nn.gather")   # names the index
        raise


def _gather_elements_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    x, indices = types
    _check_indices(indices)
    _axis_in_range(attrs["axis"], x.rank)
    if indices.rank != x.rank:
        raise ValueError(f"indices {indices} and data {x} differ in rank")
    return [TensorType(indices.shape, x.dtype)]


@define("nn.gather_elements", operands=("x", "indices"), infer=_gather_elements_infer, attrs={"axis": Attr("int", 0)})
def gather_elements(x: np.ndarray, indices: np.ndarray, *, axis: int) -> np.ndarray:
    """ONNX GatherElements: out[i, j, k] = x[i, indices[i, j, k], k] (for axis 1), indices shaped like out."""
    index = normalized_indices(indices, x.shape[axis], "nn.gather_elements")
    # ONNX lets indices be smaller than x on the other axes: take the leading part of x there.
    region = tuple(slice(0, d) if a != axis else slice(None) for a, d in enumerate(indices.shape))
    return np.take_along_axis(x[region], index, axis=axis)


def _gather_nd_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    x, indices = types
    _check_indices(indices)
    batch = attrs["batch_dims"]
    depth = indices.shape[-1] if indices.rank else 0
    if indices.rank < 1 or not 0 <= batch < min(x.rank, indices.rank) or batch + depth > x.rank \
            or x.shape[:batch] != indices.shape[:batch]:
        raise ValueError(f"indices {indices} do not index {x} with batch_dims {batch}")
    return [TensorType(indices.shape[:-1] + x.shape[batch + depth:], x.dtype)]


@define("nn.gather_nd", operands=("x", "indices"), infer=_gather_nd_infer, attrs={"batch_dims": Attr("int", 0)})
def gather_nd(x: np.ndarray, indices: np.ndarray, *, batch_dims: int) -> np.ndarray:
    """ONNX GatherND: each index tuple (the last axis of `indices`) picks a slice of x after the first
    `batch_dims` axes, which x and the indices share."""
    batch_shape = x.shape[:batch_dims]
    depth = indices.shape[-1]
    flat_x = x.reshape((math.prod(batch_shape),) + x.shape[batch_dims:])
    flat_index = indices.reshape((math.prod(batch_shape), -1, depth))
    picked = []
    for b in range(flat_x.shape[0]):
        columns = [normalized_indices(flat_index[b, :, d], x.shape[batch_dims + d], "nn.gather_nd")
                   for d in range(depth)]
        picked.append(flat_x[b][tuple(columns)])
    return np.stack(picked).reshape(indices.shape[:-1] + x.shape[batch_dims + depth:])


def _expand_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    shape = broadcast_shapes(types[0].shape, tuple(attrs["shape"]))
    if shape != tuple(attrs["shape"]):
        raise ValueError(f"{types[0]} broadcast to {list(attrs['shape'])} gives {list(shape)}")
    return [TensorType(shape, types[0].dtype)]


@define("nn.expand", operands=("x",), infer=_expand_infer, attrs={"shape": Attr("ints")})
def expand(x: np.ndarray, *, shape: tuple[int, ...]) -> np.ndarray:
    """x broadcast (numpy rules) to the static `shape`; the frontend resolves ONNX's two-way broadcasting."""
    return np.asarray(np.broadcast_to(x, shape), order="C")


def _tile_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    x, repeats = types[0], attrs["repeats"]
    if len(repeats) != x.rank or min(repeats, default=0) < 0:
        raise ValueError(f"repeats {list(repeats)} need {x.rank} non-negative values")
    return [TensorType(tuple(d * r for d, r in zip(x.shape, repeats)), x.dtype)]


@define("nn.tile", operands=("x",), infer=_tile_infer, attrs={"repeats": Attr("ints")})
def tile(x: np.ndarray, *, repeats: tuple[int, ...]) -> np.ndarray:
    """x repeated `repeats[i]` times along axis i."""
    return np.tile(x, repeats)


# A scatter's reduction: how an update combines with the value already there, applied one index after the
# other in the indices' order (onnxruntime's order; with "none" a repeated index keeps its last update).
SCATTER_REDUCTIONS = ("none", "add", "mul", "max", "min")
_ARITHMETIC = {"add": np.add, "mul": np.multiply}   # applied in index order by ufunc.at


# (dtype, reduction) pairs onnxruntime 1.32 has no kernel for, per scatter (it refuses them at run time)
_SCATTER_GAPS = {"nn.scatter_nd": {("bool", "max"), ("bool", "min"), ("f16", "add"), ("f16", "mul"), ("f16", "max"),
                                   ("f16", "min")},
                 "nn.scatter_elements": {("bool", "max"), ("bool", "min"), ("f16", "add"), ("f16", "mul")}}


def _check_reduction(opname: str, data: TensorType, reduction: str) -> None:
    if reduction not in SCATTER_REDUCTIONS:
        raise ValueError(f"reduction {reduction!r} is not one of {', '.join(SCATTER_REDUCTIONS)}")
    if (data.dtype, reduction) in _SCATTER_GAPS[opname]:
        raise ValueError(f"reduction {reduction!r} of {data.dtype} data (onnxruntime has no such kernel either)")


def _combine(reduction: str, current: np.ndarray, update: np.ndarray) -> np.ndarray:
    """One update combined with the value there, as onnxruntime does: max and min keep the update unless it
    compares strictly worse (so a NaN on either side gives the update)."""
    if reduction == "max":
        return np.where(update < current, current, update)
    if reduction == "min":
        return np.where(update > current, current, update)
    return _ARITHMETIC[reduction](current, update)


def _scatter(data: np.ndarray, where: tuple[np.ndarray, ...], updates: np.ndarray, reduction: str) -> np.ndarray:
    """`data` with `updates` written to (or combined with) the elements at the index arrays `where`, one update
    after the other in index order."""
    out = data.copy()
    if reduction == "none":
        out[where] = updates
    elif reduction in _ARITHMETIC:
        _ARITHMETIC[reduction].at(out, where, updates)
    else:   # rounds: each element's first update, then its second, ... (repeated indices apply in order)
        where = tuple(np.broadcast_to(w, updates.shape[:np.broadcast(*where).ndim]) for w in where)
        flat = np.ravel_multi_index(where, data.shape[:len(where)]).reshape(-1)
        values = updates.reshape((flat.size,) + data.shape[len(where):])
        order = np.argsort(flat, kind="stable")
        starts = np.r_[0, np.flatnonzero(np.diff(flat[order])) + 1]
        rank = np.empty(flat.size, np.int64)
        rank[order] = np.arange(flat.size) - np.repeat(starts, np.diff(np.r_[starts, flat.size]))
        view = out.reshape((-1,) + data.shape[len(where):])
        for r in range(int(rank.max(initial=-1)) + 1):
            chosen = rank == r
            view[flat[chosen]] = _combine(reduction, view[flat[chosen]], values[chosen])
    return out


def _scatter_nd_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    data, indices, updates = types
    _check_indices(indices)
    _check_reduction("nn.scatter_nd", data, attrs["reduction"])
    depth = indices.shape[-1] if indices.rank else 0
    if data.rank < 1 or indices.rank < 1 or depth > data.rank or updates.shape != indices.shape[:-1] + data.shape[depth:] \
            or updates.dtype != data.dtype:
        raise ValueError(f"indices {indices} and updates {updates} do not scatter into {data}")
    return [data]


@define("nn.scatter_nd", operands=("data", "indices", "updates"), infer=_scatter_nd_infer,
        attrs={"reduction": Attr("str", "none")})
def scatter_nd(data: np.ndarray, indices: np.ndarray, updates: np.ndarray, *, reduction: str) -> np.ndarray:
    """ONNX ScatterND: data with each slice named by an index tuple (the last axis of `indices`) replaced by,
    or combined by `reduction` with, the matching slice of `updates`."""
    depth = indices.shape[-1]
    if depth == 0:   # every index tuple names the whole tensor: the updates replace (or combine with) it in turn
        out = data.copy()
        for update in updates.reshape((-1,) + data.shape):
            out = update.copy() if reduction == "none" else np.asarray(_combine(reduction, out, update))
        return out
    tuples = indices.reshape(math.prod(indices.shape[:-1]), depth)
    where = tuple(normalized_indices(tuples[:, d], data.shape[d], "nn.scatter_nd") for d in range(depth))
    return _scatter(data, where, updates.reshape((len(tuples),) + data.shape[depth:]), reduction)


def _scatter_elements_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    data, indices, updates = types
    _check_indices(indices)
    _check_reduction("nn.scatter_elements", data, attrs["reduction"])
    _axis_in_range(attrs["axis"], data.rank)
    if indices.shape != updates.shape or indices.rank != data.rank or updates.dtype != data.dtype or \
            any(i > d for a, (i, d) in enumerate(zip(indices.shape, data.shape)) if a != attrs["axis"]):
        raise ValueError(f"indices {indices} and updates {updates} do not scatter into {data}")
    return [data]


@define("nn.scatter_elements", operands=("data", "indices", "updates"), infer=_scatter_elements_infer,
        attrs={"axis": Attr("int", 0), "reduction": Attr("str", "none")})
def scatter_elements(data: np.ndarray, indices: np.ndarray, updates: np.ndarray, *, axis: int,
                     reduction: str) -> np.ndarray:
    """ONNX ScatterElements: out[i][indices[i][j]][k] = updates[i][j][k] (for axis 1), or combined with it by
    `reduction`; indices and updates share a shape, no larger than data's off the axis."""
    where = list(np.indices(indices.shape, sparse=True))
    where[axis] = normalized_indices(indices, data.shape[axis], "nn.scatter_elements")
    return _scatter(data, tuple(where), updates, reduction)
