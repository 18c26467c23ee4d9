"""Crossbar ops whose weights are written at run time: a matmul of two activations (attention's Q·Kᵀ and
softmax·V) with one operand programmed into spare arrays for every inference.

    %b3    = nn.reshape(%k_t) {shape = [G, K, N]}                 : f32[G,K,N]   the operand to write
    %scale = vec.weight_scale(%b3) {bits = 8}                     : f32[G·N]     per output column
    %bq    = vec.quantize_weights(%b3, %scale) {bits = 8}         : i8[G,K,N]
    %acc   = xbar.write_mvm(%xq, %bq) {mapping...}                : i64[P,G·N]   write, then read
    %y     = vec.dequantize(%acc, %scale) {input_scale = ...}     : f32[P,G·N]

The quantisation is `compiler/lowering.py`'s weight scheme (symmetric per output column) applied at run
time by the vector unit. `xbar.write_mvm` states the same mapping attributes as `xbar.mvm` (a dense
tiling; no packing, no copies); its semantics here are the ideal product, which the machine reproduces
bit for bit with a lossless ADC after programming the cells.
"""

from __future__ import annotations

import numpy as np

from rcc.ir.ops.xbar import _MVM_ATTRS, _mvm_derive, _mvm_infer, mvm, quantize_limits
from rcc.ir.optable import Attr, define
from rcc.ir.types import TensorType

_PACKING = ("packing", "dense_arrays", "block_outputs", "max_block_outputs", "covered_outputs",
            "copies", "copy_arrays", "copy_rows")
WRITE_MVM_ATTRS = {key: attr for key, attr in _MVM_ATTRS.items() if key not in _PACKING}


def weight_dtype(weight_bits: int) -> np.dtype:
    """The integer type quantised weights are held in."""
    return np.dtype(np.int8 if weight_bits <= 8 else np.int16)


def weight_scales(weights: np.ndarray, weight_bits: int) -> np.ndarray:
    """float64 scales [G, M] of weights [G, K, M]: max|w[g, :, m]| / (2^(b−1)−1), 1 for an all-zero column."""
    _, limit = quantize_limits(weight_bits, signed=True)
    peak = np.abs(weights.astype(np.float64)).max(axis=1, initial=0.0)
    return np.where(peak > 0, peak / limit, 1.0)


def quantize_by_scale(weights: np.ndarray, scales: np.ndarray, weight_bits: int) -> np.ndarray:
    """round(w / s[g, m]) saturated to ±(2^(b−1)−1), as int8 (int16 above 8 bits). A NaN ratio (a NaN weight,
    or an infinite one over its infinite scale) becomes what the CPU's conversion gives, as in `nn.cast`."""
    _, limit = quantize_limits(weight_bits, signed=True)
    with np.errstate(invalid="ignore"):
        quantized = np.clip(np.rint(weights / scales.astype(np.float64)[:, None, :]), -limit, limit)
        return quantized.astype(weight_dtype(weight_bits))


def _check_bits(types: list[TensorType], attrs: dict) -> tuple[int, int, int]:
    w = types[0]
    if w.rank != 3 or w.dtype != "f32" or not 2 <= attrs["bits"] <= 16:
        raise ValueError(f"expects f32 weights [G, K, M] and 2..16 bits, got {w} and {attrs['bits']} bits")
    return w.shape


def _scale_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    groups, _, outputs = _check_bits(types, attrs)
    return [TensorType((groups * outputs,), "f32")]


@define("vec.weight_scale", operands=("weights",), infer=_scale_infer, attrs={"bits": Attr("int")})
def weight_scale(weights: np.ndarray, *, bits: int) -> np.ndarray:
    """Per output column of weights [G, K, M], the symmetric scale of `bits`-bit integers, flattened [G·M]."""
    return weight_scales(weights, bits).reshape(-1).astype(np.float32)


def _quantize_weights_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    groups, _, outputs = _check_bits(types, attrs)
    if types[1].shape != (groups * outputs,) or types[1].dtype != "f32":
        raise ValueError(f"expects scales f32[{groups * outputs}], got {types[1]}")
    return [TensorType(types[0].shape, "i8" if attrs["bits"] <= 8 else "i16")]


@define("vec.quantize_weights", operands=("weights", "scale"), infer=_quantize_weights_infer,
        attrs={"bits": Attr("int")})
def quantize_weights(weights: np.ndarray, scale: np.ndarray, *, bits: int) -> np.ndarray:
    """Weights [G, K, M] as `bits`-bit integers of the per-column scales [G·M]."""
    return quantize_by_scale(weights, scale.reshape(weights.shape[0], weights.shape[2]), bits)


def _write_mvm_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    if len(types) != 2:
        raise ValueError("a run-time written crossbar takes activations and weights only (no block maps)")
    return _mvm_infer(types, attrs)


@define("xbar.write_mvm", operands=("x", "weights"), infer=_write_mvm_infer, attrs=WRITE_MVM_ATTRS,
        derive=_mvm_derive)
def write_mvm(x: np.ndarray, weights: np.ndarray, **mapping) -> np.ndarray:
    """Program `weights` (an activation) into the arrays, then the ideal grouped product x · W."""
    return mvm(x, weights)
