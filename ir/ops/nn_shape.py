"""Graph-level data-movement ops: reshape, transpose, concat, pad, zero insertion, phase interleaving,
depth/space rearrangement, resize.

Shapes here are static: the frontend resolves ONNX's shape inputs (-1, 0, axes) into attributes.
"""

from __future__ import annotations

import math

import numpy as np

from rcc.ir.optable import Attr, define
from rcc.ir.types import TensorType


def _reshape_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    shape = attrs["shape"]
    if min(shape, default=0) < 0 or math.prod(shape) != types[0].size:
        raise ValueError(f"cannot reshape {types[0]} to {list(shape)}")
    return [TensorType(shape, types[0].dtype)]


@define("nn.reshape", operands=("x",), infer=_reshape_infer, attrs={"shape": Attr("ints")})
def reshape(x: np.ndarray, *, shape: tuple[int, ...]) -> np.ndarray:
    """The same elements in row-major order under a new static shape."""
    return x.reshape(shape)


def _transpose_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    perm, x = attrs["perm"], types[0]
    if sorted(perm) != list(range(x.rank)):
        raise ValueError(f"perm {list(perm)} is not a permutation of {x.rank} axes")
    return [TensorType(tuple(x.shape[p] for p in perm), x.dtype)]


@define("nn.transpose", operands=("x",), infer=_transpose_infer, attrs={"perm": Attr("ints")})
def transpose(x: np.ndarray, *, perm: tuple[int, ...]) -> np.ndarray:
    """Axes permuted: result axis i is operand axis perm[i]."""
    return np.asarray(np.transpose(x, perm), order="C")


def _concat_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    axis, first = attrs["axis"], types[0]
    if not 0 <= axis < first.rank:
        raise ValueError(f"axis {axis} out of range for rank {first.rank}")
    for t in types[1:]:
        if t.dtype != first.dtype or t.rank != first.rank or \
                any(a != b for i, (a, b) in enumerate(zip(t.shape, first.shape)) if i != axis):
            raise ValueError(f"cannot concatenate {t} with {first} on axis {axis}")
    shape = list(first.shape)
    shape[axis] = sum(t.shape[axis] for t in types)
    return [TensorType(tuple(shape), first.dtype)]


@define("nn.concat", operands=("inputs*",), infer=_concat_infer, attrs={"axis": Attr("int")})
def concat(*inputs: np.ndarray, axis: int) -> np.ndarray:
    """Operands joined along `axis` (non-negative)."""
    return np.concatenate(inputs, axis=axis)


PAD_MODES = ("constant", "reflect", "edge", "wrap")


def _pad_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    x, pads, mode = types[0], attrs["pads"], attrs["mode"]
    if mode not in PAD_MODES:
        raise ValueError(f"mode {mode!r} is not one of {', '.join(PAD_MODES)}")
    if len(pads) != 2 * x.rank:
        raise ValueError(f"pads needs {2 * x.rank} values for rank {x.rank}, got {len(pads)}")
    shape = tuple(d + pads[i] + pads[i + x.rank] for i, d in enumerate(x.shape))
    cropped = tuple(d - max(-pads[i], 0) - max(-pads[i + x.rank], 0) for i, d in enumerate(x.shape))
    if min(shape if mode == "constant" else cropped, default=1) < 0:
        raise ValueError(f"pads {list(pads)} crop more than {x} holds")
    for axis, size in enumerate(cropped if mode != "constant" else ()):
        grow = max(pads[axis], 0), max(pads[axis + x.rank], 0)
        if mode == "reflect" and max(grow) >= max(size, 1) or max(grow) and not size:
            raise ValueError(f"{mode} padding of {list(grow)} does not fit axis {axis} of size {size} after cropping")
    return [TensorType(shape, x.dtype)]


@define("nn.pad", operands=("x",), infer=_pad_infer,
        attrs={"pads": Attr("ints"), "value": Attr("float", 0.0), "mode": Attr("str", "constant")})
def pad(x: np.ndarray, *, pads: tuple[int, ...], value: float, mode: str = "constant") -> np.ndarray:
    """Padding with `value` (constant mode) or a mirror (reflect), the border (edge) or the opposite side
    (wrap) of the operand; `pads` = [begin_0, ..., begin_r, end_0, ..., end_r], negative values crop.

    Constant padding crops the padded tensor (so a crop may reach into the padding); the other modes crop
    the operand first, as onnxruntime does, and pad what is left.
    """
    rank = x.ndim
    widths = [(max(pads[i], 0), max(pads[i + rank], 0)) for i in range(rank)]
    if mode == "constant":
        grown = np.pad(x, widths, constant_values=x.dtype.type(value))
        crop = tuple(slice(max(-pads[i], 0), grown.shape[i] - max(-pads[i + rank], 0)) for i in range(rank))
        return np.ascontiguousarray(grown[crop])
    crop = tuple(slice(max(-pads[i], 0), x.shape[i] - max(-pads[i + rank], 0)) for i in range(rank))
    return np.pad(x[crop], widths, mode=mode)


def _zero_insert_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    x, strides = types[0], attrs["strides"]
    if x.rank != 4 or len(strides) != 2 or min(strides) < 1:
        raise ValueError(f"zero insertion needs a 4-D operand and 2 strides ≥ 1, got {x} and {list(strides)}")
    n, c, h, w = x.shape
    if h < 1 or w < 1:
        raise ValueError(f"cannot insert zeros into the empty spatial axes of {x}")
    return [TensorType((n, c, (h - 1) * strides[0] + 1, (w - 1) * strides[1] + 1), x.dtype)]


@define("nn.zero_insert", operands=("x",), infer=_zero_insert_infer, attrs={"strides": Attr("ints")})
def zero_insert(x: np.ndarray, *, strides: tuple[int, ...]) -> np.ndarray:
    """strides[i] − 1 zeros between neighbouring pixels of each spatial axis: x lands at [::sh, ::sw]."""
    n, c, h, w = x.shape
    sh, sw = strides
    out = np.zeros((n, c, (h - 1) * sh + 1, (w - 1) * sw + 1), dtype=x.dtype)
    out[:, :, ::sh, ::sw] = x
    return out


def phase_size(size: int, stride: int, phase: int) -> int:
    """How many of the indices 0..size−1 are ≡ phase (mod stride): the length of range(phase, size, stride)."""
    return len(range(phase, size, stride))


def _interleave_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    strides, size = attrs["strides"], attrs["size"]
    if len(strides) != 2 or min(strides) < 1 or len(size) != 2 or min(size) < 1:
        raise ValueError(f"interleave needs 2 strides ≥ 1 and 2 sizes ≥ 1, got {list(strides)} and {list(size)}")
    sh, sw = strides
    if len(types) != sh * sw:
        raise ValueError(f"strides {list(strides)} need {sh * sw} phases, got {len(types)}")
    first = types[0]
    if first.rank != 4:
        raise ValueError(f"phases must be 4-D, got {first}")
    for index, t in enumerate(types):
        wanted = (*first.shape[:2], phase_size(size[0], sh, index // sw), phase_size(size[1], sw, index % sw))
        if t.dtype != first.dtype or t.shape != wanted:
            raise ValueError(f"phase {index // sw},{index % sw} is {t}, expected {TensorType(wanted, first.dtype)}")
    return [TensorType((*first.shape[:2], *size), first.dtype)]


@define("nn.interleave", operands=("phases*",), infer=_interleave_infer,
        attrs={"strides": Attr("ints"), "size": Attr("ints")})
def interleave(*phases: np.ndarray, strides: tuple[int, ...], size: tuple[int, ...]) -> np.ndarray:
    """Output phases scattered onto a strided grid: operand ρh·sw + ρw fills y[:, :, ρh::sh, ρw::sw].

    The inverse of taking every phase of y = [N, M, size_h, size_w]; a phase is empty when its offset is
    past the size. With output sizes that are not multiples of the strides the phases differ in shape, so
    this is a strided scatter rather than depth_to_space.
    """
    sh, sw = strides
    n, m = phases[0].shape[:2]
    out = np.empty((n, m, *size), dtype=phases[0].dtype)
    for index, phase in enumerate(phases):
        out[:, :, index // sw::sh, index % sw::sw] = phase
    return out


def _depth_to_space_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    x, block = types[0], attrs["blocksize"]
    if x.rank != 4 or block < 1 or x.shape[1] % (block * block):
        raise ValueError(f"cannot move depth of {x} to space with blocksize {block}")
    if attrs["mode"] not in ("DCR", "CRD"):
        raise ValueError(f"mode must be DCR or CRD, got {attrs['mode']!r}")
    n, c, h, w = x.shape
    return [TensorType((n, c // (block * block), h * block, w * block), x.dtype)]


@define("nn.depth_to_space", operands=("x",), infer=_depth_to_space_infer,
        attrs={"blocksize": Attr("int"), "mode": Attr("str", "DCR")})
def depth_to_space(x: np.ndarray, *, blocksize: int, mode: str) -> np.ndarray:
    """Channel blocks spread over blocksize×blocksize pixels (DCR: depth-column-row order, CRD: column-row-depth)."""
    n, c, h, w = x.shape
    b = blocksize
    if mode == "DCR":
        moved = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    else:
        moved = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    return np.ascontiguousarray(moved.reshape(n, c // (b * b), h * b, w * b))


def _space_to_depth_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    x, block = types[0], attrs["blocksize"]
    if x.rank != 4 or block < 1 or x.shape[2] % block or x.shape[3] % block:
        raise ValueError(f"cannot move space of {x} to depth with blocksize {block}")
    if attrs["mode"] not in ("DCR", "CRD"):
        raise ValueError(f"mode must be DCR or CRD, got {attrs['mode']!r}")
    n, c, h, w = x.shape
    return [TensorType((n, c * block * block, h // block, w // block), x.dtype)]


@define("nn.space_to_depth", operands=("x",), infer=_space_to_depth_infer,
        attrs={"blocksize": Attr("int"), "mode": Attr("str", "DCR")})
def space_to_depth(x: np.ndarray, *, blocksize: int, mode: str) -> np.ndarray:
    """blocksize×blocksize pixel blocks folded into channels; the inverse of depth_to_space in `mode`."""
    n, c, h, w = x.shape
    b = blocksize
    blocks = x.reshape(n, c, h // b, b, w // b, b)
    moved = blocks.transpose(0, 3, 5, 1, 2, 4) if mode == "DCR" else blocks.transpose(0, 1, 3, 5, 2, 4)
    return np.ascontiguousarray(moved.reshape(n, c * b * b, h // b, w // b))


COORDINATE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                    "tf_half_pixel_for_nn")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def _resize_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    x, sizes, scales = types[0], attrs["sizes"], attrs["scales"]
    if len(sizes) != x.rank or len(scales) != x.rank or min(sizes, default=1) < 1 or min(scales, default=1) <= 0:
        raise ValueError(f"sizes and scales need {x.rank} positive values")
    if attrs["coordinate_transformation_mode"] not in COORDINATE_MODES:
        raise ValueError(f"coordinate_transformation_mode {attrs['coordinate_transformation_mode']!r} is not "
                         f"one of {', '.join(COORDINATE_MODES)}")
    if attrs["nearest_mode"] not in NEAREST_MODES:
        raise ValueError(f"nearest_mode {attrs['nearest_mode']!r} is not one of {', '.join(NEAREST_MODES)}")
    return [TensorType(tuple(sizes), x.dtype)]


def source_coordinates(in_size: int, out_size: int, scale: float, coordinate_mode: str) -> np.ndarray:
    """Input coordinate of each output index along one axis.

    Computed in float32 in onnxruntime's order of operations, because near whole numbers the rounding
    decides the neighbour: resizing 14 → 4 (asymmetric), output 2 maps to 2 / float32(4/14) = 6.9999995,
    so `floor` reads input 6 where exact arithmetic would read 7.
    """
    f32 = np.float32
    out, scale, half = np.arange(out_size, dtype=f32), f32(scale), f32(0.5)
    if coordinate_mode == "half_pixel" or (coordinate_mode == "pytorch_half_pixel" and out_size > 1):
        return (out + half) / scale - half
    if coordinate_mode == "half_pixel_symmetric":
        offset = f32(in_size) / f32(2) * (f32(1) - f32(out_size) / (scale * f32(in_size)))
        return (np.float64(offset) + (out.astype(np.float64) + 0.5) / np.float64(scale) - 0.5).astype(f32)
    if coordinate_mode == "align_corners" and out_size > 1:
        return out * f32(in_size - 1) / f32(out_size - 1)
    if coordinate_mode == "asymmetric":
        return out / scale
    if coordinate_mode == "tf_half_pixel_for_nn":
        return (out + half) / scale
    return np.zeros_like(out)  # pytorch_half_pixel and align_corners with one output element


# onnxruntime (probed with 1.32) rounds a coordinate within 1e-6 of a half-way point as if it were exactly
# half-way: 7 → 2 (asymmetric) maps output 1 to 3.4999998, and round_prefer_ceil reads input 4 there.
HALF_WAY_TOLERANCE = np.float32(1e-6)


def nearest_source_indices(in_size: int, out_size: int, scale: float, coordinate_mode: str,
                           nearest_mode: str) -> np.ndarray:
    """For each output index along one axis, the input index nearest-neighbour resizing reads."""
    src = source_coordinates(in_size, out_size, scale, coordinate_mode)
    below = np.floor(src)
    fraction = src - below  # exact in float32
    half_way = np.abs(fraction - np.float32(0.5)) < HALF_WAY_TOLERANCE
    if nearest_mode == "round_prefer_floor":
        index = np.where(half_way | (fraction < 0.5), below, below + 1)
    elif nearest_mode == "round_prefer_ceil":
        index = np.where(half_way | (fraction >= 0.5), below + 1, below)
    elif nearest_mode == "floor":
        index = below
    else:
        index = np.ceil(src)
    return np.clip(index, 0, in_size - 1).astype(np.int64)


@define("nn.resize_nearest", operands=("x",), infer=_resize_infer,
        attrs={"sizes": Attr("ints"), "scales": Attr("floats"),
               "coordinate_transformation_mode": Attr("str", "half_pixel"),
               "nearest_mode": Attr("str", "round_prefer_floor")})
def resize_nearest(x: np.ndarray, *, sizes: tuple[int, ...], scales: tuple[float, ...],
                   coordinate_transformation_mode: str, nearest_mode: str) -> np.ndarray:
    """Nearest-neighbour resize to `sizes`; `scales` (output/input per axis, used as float32) map coordinates.

    As in onnxruntime, a result the shape of the input is the input, whatever `scales` says (ONNX would
    still map 3 → 3 elements through a scale of 1.25), and an axis with scale 1 is copied.
    """
    if tuple(sizes) == x.shape:
        return x.copy()
    out = x
    for axis, (size, scale) in enumerate(zip(sizes, scales)):
        if size != x.shape[axis] or np.float32(scale) != 1:
            index = nearest_source_indices(x.shape[axis], size, scale, coordinate_transformation_mode, nearest_mode)
            out = np.take(out, index, axis=axis)
    return np.ascontiguousarray(out)
