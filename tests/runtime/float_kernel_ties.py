"""Why a quantized model's integers can differ from onnxruntime's where onnxruntime runs a QDQ group's Conv or
ConvTranspose as a float32 kernel: its result carries float32 rounding, so where the exact value lies
within that rounding of a tie of y_scale it may quantize to the neighbouring integer. `tie_margins` gives,
for every element of such a boundary, the exact value (in units of y_scale) and the worst-case float32
error of both computations there (Higham's bound for a float32 dot product of n terms, γ_n · Σ|terms|, with
the dequantizations, the bias and the division by y_scale); a differing element the float kernel explains
lies within that margin of a tie.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from rcc.ir.ops.nn_linear import conv2d, conv_transpose2d
from rcc.ir.ops.nn_quant import dequantize_linear

UNIT_ROUNDOFF = 2.0 ** -24  # float32


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    arrays = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            arrays[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return arrays


def _dequantized(name: str, producers: dict, constants: dict, values: dict[str, np.ndarray]) -> np.ndarray:
    """The float32 tensor a DequantizeLinear produces (its integer input a constant or in `values`)."""
    node = producers[name]
    assert node.op_type == "DequantizeLinear", node
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    integers = constants.get(node.input[0], values.get(node.input[0]))
    scale = constants[node.input[1]]
    zero = constants[node.input[2]] if len(node.input) > 2 and node.input[2] else np.zeros_like(scale, np.int32)
    axis = attrs.get("axis", 1) % max(integers.ndim, 1)
    return dequantize_linear(integers.astype(np.int32), scale, zero.astype(np.int32), axis=axis)


def float_kernel_node(model: onnx.ModelProto, boundary: str) -> onnx.NodeProto:
    """The Conv or ConvTranspose whose float result (through a Relu, which onnxruntime fuses) the
    QuantizeLinear producing `boundary` reads."""
    producers = {out: node for node in model.graph.node for out in node.output}
    node = producers[producers[boundary].input[0]]
    if node.op_type == "Relu":
        node = producers[node.input[0]]
    assert node.op_type in ("Conv", "ConvTranspose"), node.op_type
    return node


def tie_margins(model: onnx.ModelProto, boundary: str, values: dict[str, np.ndarray]
                ) -> tuple[np.ndarray, np.ndarray]:
    """(exact value / y_scale, worst-case float32 error / y_scale) of every element of `boundary`;
    `values`: the integer tensors the kernel's DequantizeLinear inputs read (onnxruntime's)."""
    producers = {out: node for node in model.graph.node for out in node.output}
    constants = _constants(model)
    node = float_kernel_node(model, boundary)
    y_scale = float(constants[producers[boundary].input[1]].reshape(-1)[0])
    x = _dequantized(node.input[0], producers, constants, values).astype(np.float64)
    w = _dequantized(node.input[1], producers, constants, values).astype(np.float64)
    bias = _dequantized(node.input[2], producers, constants, values).astype(np.float64) \
        if len(node.input) > 2 and node.input[2] in producers else np.zeros(1)
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    conv = {"strides": tuple(attrs.get("strides", (1, 1))), "dilations": tuple(attrs.get("dilations", (1, 1))),
            "pads": tuple(attrs.get("pads", (0, 0, 0, 0))), "group": attrs.get("group", 1)}
    if node.op_type == "Conv":
        exact, magnitude = conv2d(x, w, **conv), conv2d(np.abs(x), np.abs(w), **conv)
        terms = w.shape[1] * w.shape[2] * w.shape[3]
    else:
        conv["output_padding"] = tuple(attrs.get("output_padding", (0, 0)))
        exact = conv_transpose2d(x, w, **conv)
        magnitude = conv_transpose2d(np.abs(x), np.abs(w), **conv)
        terms = x.shape[1] // conv["group"] * w.shape[2] * w.shape[3]
    per_channel = bias.reshape(1, -1, 1, 1) if bias.size > 1 else bias.reshape(())
    exact = exact + per_channel
    magnitude = magnitude + np.abs(per_channel)
    # n terms and the bias summed, each x·w product of two dequantized (rounded) values, then the division;
    # rcc's single rescale (a product, a sum and a division) adds its own three roundings
    margin = (terms + 3 + 3) * UNIT_ROUNDOFF * magnitude / y_scale + 2 * UNIT_ROUNDOFF * np.abs(exact / y_scale)
    return exact / y_scale, margin


def within_float32_of_a_tie(value: float, margin: float) -> bool:
    return abs(value - np.floor(value) - 0.5) <= margin
