"""Graph-level normalisation over statistics computed at run time: instance and group normalisation.

Both normalise x [N, C, ...] by the mean and (biased) variance of each sample's channel group, then
scale and shift every channel: y = scale[c] · (x − mean) / sqrt(var + epsilon) + bias[c]. Instance
normalisation is group normalisation with one channel per group. Statistics are computed in float64.
"""

from __future__ import annotations

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
    return _check_channel_params(types, types[0].shape[1] if types[0].rank >= 2 else 1)


def _group_norm_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    return _check_channel_params(types, attrs["num_groups"])


def normalized_groups(x: np.ndarray, groups: int, epsilon: float) -> np.ndarray:
    """x with each (sample, channel group) brought to zero mean and unit variance, in float64."""
    grouped = x.astype(np.float64).reshape(x.shape[0], groups, -1)
    mean = grouped.mean(axis=2, keepdims=True)
    variance = np.square(grouped - mean).mean(axis=2, keepdims=True)
    return ((grouped - mean) / np.sqrt(variance + epsilon)).reshape(x.shape)


def _scaled(x: np.ndarray, normalized: np.ndarray, scale: np.ndarray, bias: np.ndarray) -> np.ndarray:
    per_channel = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    return (normalized * scale.reshape(per_channel) + bias.reshape(per_channel)).astype(x.dtype)


@define("nn.instance_norm", operands=("x", "scale", "bias"), infer=_instance_norm_infer,
        attrs={"epsilon": Attr("float", 1e-5)})
def instance_norm(x: np.ndarray, scale: np.ndarray, bias: np.ndarray, *, epsilon: float) -> np.ndarray:
    """Each sample's channel normalised over its spatial positions, then scale[c]·x̂ + bias[c]."""
    return _scaled(x, normalized_groups(x, x.shape[1], epsilon), scale, bias)


@define("nn.group_norm", operands=("x", "scale", "bias"), infer=_group_norm_infer,
        attrs={"num_groups": Attr("int"), "epsilon": Attr("float", 1e-5)})
def group_norm(x: np.ndarray, scale: np.ndarray, bias: np.ndarray, *, num_groups: int,
               epsilon: float) -> np.ndarray:
    """Each sample's group of C / num_groups channels normalised together, then scale[c]·x̂ + bias[c]."""
    return _scaled(x, normalized_groups(x, num_groups, epsilon), scale, bias)
