"""What lowering onto crossbars decides, shared by the passes that need it (lower-to-xbar, prune-crossbars):
which ops map onto arrays, and how weights and activations are quantised.

Quantisation scheme (integer mode):
- weights: symmetric per output channel, w_q = round(w / s_w[m]) in [−(2^(b−1)−1), 2^(b−1)−1] with
  s_w[m] = max|w[:, m]| / (2^(b−1)−1), b = `weight_bits`;
- activations feeding a crossbar: per tensor, unsigned with s_x = max / (2^B − 1) when the tensor is
  never negative (after ReLU), otherwise symmetric signed with s_x = max|x| / (2^(B−1) − 1),
  B = `input_bits`; values saturate.
"""

from __future__ import annotations

import numpy as np

from rcc.ir.core import Op
from rcc.ir.ops.xbar import quantize_limits
from rcc.ir.ops.xbar_write import quantize_by_scale, weight_scales


def is_mappable(op: Op) -> bool:
    """Whether `op` maps onto crossbars: a conv or a float matmul whose weights are constants."""
    if op.opname == "nn.conv2d":
        return all(v.is_constant for v in op.operands[1:])
    if op.opname == "nn.matmul":
        lhs, rhs = op.operands
        return rhs.is_constant and rhs.type.rank == 2 and lhs.type.rank >= 1 and lhs.type.dtype == "f32"
    return False


def quantize_weights(weights: np.ndarray, weight_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel integers [G, K, M] and their scales [G·M]."""
    scale = weight_scales(weights, weight_bits)
    return quantize_by_scale(weights, scale, weight_bits), scale.reshape(-1).astype(np.float32)


def input_quantization(low: float, high: float, input_bits: int) -> tuple[float, bool]:
    """(scale, signed) of an activation tensor with calibrated range [low, high]."""
    signed = low < 0
    _, limit = quantize_limits(input_bits, signed)
    peak = max(abs(low), abs(high))
    return (peak / limit if peak > 0 else 1.0), signed
