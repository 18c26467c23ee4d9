"""Graph-level normalisation over statistics computed at run time: instance, group, layer and RMS
normalisation (`nn.rms_norm`: LLaMA's, ONNX's RMSNormalization of opset 23).

Both normalise x [N, C, ...] by the mean and (biased) variance of each sample's channel group, then
scale and shift every channel: y = scale[c] · (x − mean) / sqrt(var + epsilon) + bias[c]. Instance
normalisation is group normalisation with one channel per group. Arithmetic follows onnxruntime's.
"""

from __future__ import annotations

import math

import numpy as np

from rcc.ir.optable import Attr, define
from rcc.ir.types import TensorType


def _check_channel_params(types: list[TensorType], groups: int) -> list[TensorType]:
    x, scale, bias = types
    if x.rank < 2 or x.np_dtype.kind != "f":
        raise ValueError(f"operand must be a float tensor [N, C, ...], got {x}")
    channels = x.shape[1]
    for what, t in (("scale", scale), ("bias", bias)):
        if t.shape != (channels,) or t.dtype != x.dtype:
            raise ValueError(f"{what} must be {TensorType((channels,), x.dtype)}, got {t}")
    if groups < 1 or channels % groups:
        raise ValueError(f"num_groups {groups} does not divide {channels} channels")
    return [x]


def _instance_norm_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    if types[0].rank < 3:
        raise ValueError(f"operand must be [N, C, D1, ...] with at least one spatial axis, got {types[0]}")
    return _check_channel_params(types, types[0].shape[1])


def _group_norm_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    return _check_channel_params(types, attrs["num_groups"])


def normalized_groups(x: np.ndarray, groups: int, epsilon: float, scale: np.ndarray | None = None,
                      bias: np.ndarray | None = None) -> np.ndarray:
    """x with each (sample, channel group) normalised, times a per-group scale plus a per-group bias.

    Computed in onnxruntime's order, so that a group whose variance is far below epsilon (where
    mean · scale / std dwarfs the result) rounds alike: in float32 (float64 for f64), mean = Σx / n,
    var = Σ(x − mean)² / n, s = scale / sqrt(var + epsilon), y = x · s + (bias − mean · s). Overflow,
    a zero var + epsilon and a negative one give ±inf and NaN, as in onnxruntime.
    """
    wide = np.float64 if x.dtype == np.float64 else np.float32
    grouped = x.astype(wide).reshape(x.shape[0], groups, -1)
    count = wide(grouped.shape[2])
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        mean = grouped.sum(axis=2, keepdims=True, dtype=wide) / count
        variance = np.square(grouped - mean).sum(axis=2, keepdims=True, dtype=wide) / count
        factor = wide(1) / np.sqrt(variance + wide(epsilon))
        if scale is not None:
            factor = factor * scale.astype(wide).reshape(1, groups, 1)
        shift = np.zeros((), wide) if bias is None else bias.astype(wide).reshape(1, groups, 1)
        return (grouped * factor + (shift - mean * factor)).reshape(x.shape)


def _per_channel(x: np.ndarray, values: np.ndarray) -> np.ndarray:
    return values.reshape((1, x.shape[1]) + (1,) * (x.ndim - 2))


@define("nn.instance_norm", operands=("x", "scale", "bias"), infer=_instance_norm_infer,
        attrs={"epsilon": Attr("float", 1e-5)})
def instance_norm(x: np.ndarray, scale: np.ndarray, bias: np.ndarray, *, epsilon: float) -> np.ndarray:
    """Each sample's channel normalised over its spatial positions, then scale[c]·x̂ + bias[c]."""
    return normalized_groups(x, x.shape[1], epsilon, scale, bias).astype(x.dtype)


@define("nn.group_norm", operands=("x", "scale", "bias"), infer=_group_norm_infer,
        attrs={"num_groups": Attr("int"), "epsilon": Attr("float", 1e-5)})
def group_norm(x: np.ndarray, scale: np.ndarray, bias: np.ndarray, *, num_groups: int,
               epsilon: float) -> np.ndarray:
    """Each sample's group of C / num_groups channels normalised together, then scale[c]·x̂ + bias[c]
    (onnxruntime's GroupNormalization-21: instance normalisation of the groups, then the channels' affine map)."""
    normalized = normalized_groups(x, num_groups, epsilon).astype(x.dtype)
    with np.errstate(over="ignore", invalid="ignore"):   # inf · 0 is NaN, as in onnxruntime
        return (normalized * _per_channel(x, scale) + _per_channel(x, bias)).astype(x.dtype)


def _layer_norm_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    x, params = types[0], types[1:]
    axis = attrs["axis"]
    if x.np_dtype.kind != "f" or not 0 <= axis < max(x.rank, 1):
        raise ValueError(f"operand must be a float tensor with axis {axis}, got {x}")
    normalized = x.shape[axis:]
    for what, t in zip(("scale", "bias"), params):
        if t.dtype != x.dtype or len(t.shape) > len(normalized) or \
                any(d not in (1, n) for d, n in zip(t.shape[::-1], normalized[::-1])):
            raise ValueError(f"{what} {t} does not broadcast to the normalised shape {list(normalized)}")
    if attrs["stash_type"] not in ("f32", "f64"):
        raise ValueError(f"stash_type {attrs['stash_type']} is not f32 or f64")
    return [x]


@define("nn.layer_norm", operands=("x", "scale", "bias?"), infer=_layer_norm_infer,
        attrs={"axis": Attr("int"), "epsilon": Attr("float", 1e-5), "stash_type": Attr("str", "f32")})
def layer_norm(x: np.ndarray, scale: np.ndarray, bias: np.ndarray | None = None, *, axis: int, epsilon: float,
               stash_type: str) -> np.ndarray:
    """x normalised over its axes from `axis` on (mean and biased variance in `stash_type`), then
    scale·x̂ + bias (both broadcast to those axes; float16 in float32, rounded once). Overflow, a zero variance
    + epsilon and a negative one give ±inf and NaN, as in onnxruntime. Each mean sums its row of float64 values
    by numpy's pairwise summation over the contiguous row (summing float32 with dtype=float64 instead would
    split rows longer than numpy's 8192-element cast buffer), so a compiled kernel can repeat the same sums
    (`runtime/step_kernels.py` pairwise_sum)."""
    wide = np.float64 if stash_type == "f64" else np.float32
    count = math.prod(x.shape[axis:])
    stashed = x.reshape(math.prod(x.shape[:axis]), count).astype(wide, copy=False)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        mean = (np.add.reduce(stashed.astype(np.float64), axis=1, keepdims=True) / count).astype(wide)
        centered = stashed - mean
        variance = (np.add.reduce(np.square(centered).astype(np.float64), axis=1, keepdims=True) / count
                    ).astype(wide)
        centered /= np.sqrt(variance + wide(epsilon))
        centered = centered.reshape(x.shape)
        if x.dtype == np.float16:   # scaled and shifted in float32, rounded once, as onnxruntime does
            return (centered.astype(np.float32) * scale.astype(np.float32) +
                    (0 if bias is None else bias.astype(np.float32))).astype(x.dtype)
        y = centered.astype(x.dtype, copy=False) * scale
        return (y if bias is None else y + bias).astype(x.dtype, copy=False)


@define("nn.rms_norm", operands=("x", "scale"), infer=_layer_norm_infer,
        attrs={"axis": Attr("int"), "epsilon": Attr("float", 1e-5), "stash_type": Attr("str", "f32")})
def rms_norm(x: np.ndarray, scale: np.ndarray, *, axis: int, epsilon: float, stash_type: str) -> np.ndarray:
    """x divided by its root mean square over the axes from `axis` on (epsilon added to the mean square), times
    scale (broadcast to those axes). Computed as onnxruntime 1.32 computes it whatever `stash_type` says: in
    float64 for float64 x, else in float32 (float16 rounded once at the end); the squares are summed in that
    type (bit for bit with onnxruntime up to 8 values per row; beyond, its vectorised sum rounds differently,
    within an ulp or two of the result)."""
    wide = np.float64 if x.dtype == np.float64 else np.float32
    stashed = x.astype(wide, copy=False)
    axes = tuple(range(axis, x.ndim))
    count = wide(math.prod(x.shape[axis:]))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        mean_square = np.add.reduce(np.square(stashed), axis=axes, dtype=wide, keepdims=True) / count
        normalized = stashed / np.sqrt(mean_square + wide(epsilon))
        if x.dtype == np.float16:
            return (normalized * scale.astype(np.float32)).astype(x.dtype)
        return (normalized * scale).astype(x.dtype, copy=False)
