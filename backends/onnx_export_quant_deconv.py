"""ONNX forms of the quantized transposed convolution (`ir/ops/nn_quant_deconv.py`), in standard ONNX ops.

`nn.conv_transpose_integer` → float32 ConvTranspose of x − x_zero by the constant w − w_zero, cast to int32
(exact while every partial sum stays below 2^24 in magnitude, as for 8-bit operands and up to 256 taps per
output; a larger product is refused); `nn.rescale_quantize` → Cast, Mul(scale), Add(bias), QuantizeLinear.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from onnx import TensorProto

from rcc.backends.onnx_export_quant import Emitter, refuse_wide_product, require_wide_opset
from rcc.ir.core import Op
from rcc.ir.errors import UnsupportedError
from rcc.ir.ops.nn_quant import shifted

_EXACT_FLOAT = 2 ** 24


def _conv_transpose_integer(emitter: Emitter, op: Op) -> None:
    refuse_wide_product(op)
    x, weight = op.operands[:2]
    base = op.result.name
    x_zero = int(op.operands[2].data.reshape(-1)[0]) if len(op.operands) > 2 else 0
    w_zero = op.operands[3].data if len(op.operands) > 3 else None
    if weight.data is None:
        raise UnsupportedError(f"ONNX export: {op.opname} (result {base}) needs a constant weight")
    centred = shifted(weight.data, w_zero, 1)
    taps = centred.shape[0] // op.attrs["group"] * int(np.prod(centred.shape[2:]))
    if taps * 255 * 255 >= _EXACT_FLOAT:
        raise UnsupportedError(f"ONNX export: {op.opname} (result {base}) sums {taps} products, too many for an "
                               f"exact float32 ConvTranspose")
    wide = emitter.node("Cast", [x.name], base + "/", to=TensorProto.INT32)
    values = emitter.node("Cast", [emitter.node("Sub", [wide, emitter.constant(base + ".x_zero", np.array(
        x_zero, np.int32))], base + "/")], base + "/", to=TensorProto.FLOAT)
    attrs = {"kernel_shape": list(weight.type.shape[2:]), "strides": list(op.attrs["strides"]),
             "pads": list(op.attrs["pads"]), "dilations": list(op.attrs["dilations"]), "group": op.attrs["group"],
             "output_padding": list(op.attrs["output_padding"])}
    product = emitter.node("ConvTranspose", [values, emitter.constant(base + ".weight", centred.astype(np.float32))],
                           base + "/", **attrs)
    emitter.node("Cast", [product], base, to=TensorProto.INT32)


def _rescale_quantize(emitter: Emitter, op: Op) -> None:
    acc, scale, y_scale, y_zero = op.operands[:4]
    require_wide_opset(emitter, y_zero)
    base, rank = op.result.name, acc.type.rank
    shape = [1] * rank
    shape[op.attrs["axis"] % rank] = -1

    def along_axis(suffix: str, data: np.ndarray) -> str:
        return emitter.constant(f"{base}.{suffix}", data.reshape(shape) if data.size > 1 else data.reshape(()))

    value = emitter.node("Mul", [emitter.node("Cast", [acc.name], base + "/", to=TensorProto.FLOAT),
                                 along_axis("scale", scale.data)], base + "/")
    if len(op.operands) > 4:
        value = emitter.node("Add", [value, along_axis("bias", op.operands[4].data)], base + "/")
    emitter.node("QuantizeLinear", [value, along_axis("y_scale", y_scale.data), along_axis("y_zero", y_zero.data)],
                 base)


DECONV_EXPORTERS: dict[str, Callable[[Emitter, Op], None]] = {
    "nn.conv_transpose_integer": _conv_transpose_integer,
    "nn.rescale_quantize": _rescale_quantize,
}
