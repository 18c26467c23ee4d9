"""`fuse-qdq`'s transposed-convolution group (`ir/ops/nn_quant_deconv.py`): onnxruntime runs it in float
(no integer ConvTranspose kernel); rcc computes the exact integer product on crossbars and rescales once.

    %x = nn.dequantize_linear(%xq, %sx, %zx)                %acc = nn.conv_transpose_integer(%xq, %wq, %zx, %zw)
    %w = nn.dequantize_linear(%wq, %sw, %zw) {axis = 1}  →  %yq  = nn.rescale_quantize(%acc, %s, %sy, %zy, %b)
    %y = nn.conv_transpose2d(%x, %w, %b)                    (%s = float32(sx · sw), %b the float32 bias)
    %yq = nn.quantize_linear(%y, %sy, %zy)

Per-tensor activations, per-tensor or per-output-channel (axis 1) constant weights, a bias that is a
float constant or the dequantization of one. `deconv-to-pixelwise` then splits the integer product into
stride-1 `nn.conv_integer` phases, which `lower-quantized` maps.
"""

from __future__ import annotations

import numpy as np

from rcc.compiler.passes.qdq_group import QdqGroup, dequantized, float_bias, float_kernel_ops
from rcc.ir.builder import make_op
from rcc.ir.core import Op


def fuse_conv_transpose(group: QdqGroup) -> list[Op] | None:
    y = group.quantize.operands[0]
    deconv = y.producer
    if deconv is None or deconv.opname != "nn.conv_transpose2d" or not group.only_read_by_quantize(y) \
            or group.scale.type.size != 1:
        return None
    x, w = dequantized(deconv.operands[0]), dequantized(deconv.operands[1])
    bias = float_bias(deconv.operands[2] if len(deconv.operands) > 2 else None)
    if x is None or w is None or bias is False or not x.per_tensor or not w.x.is_constant \
            or not (w.per_tensor or w.per_axis and w.axis == 1) or w.x.type.dtype not in ("u8", "i8"):
        return None
    w_zero = w.zero.data.reshape(-1) if w.zero.type.size > 1 else w.zero.data.reshape(())
    acc = make_op("nn.conv_transpose_integer", [x.x, w.x, x.zero, group.constant("w_zero", w_zero)], deconv.attrs,
                  [group.module.fresh_name(f"{group.name}.acc")])
    return float_kernel_ops(group, acc, x, w, bias, 1, deconv.attrs["group"])
