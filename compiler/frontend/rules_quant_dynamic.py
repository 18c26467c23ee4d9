"""Lowering of ONNX's DynamicQuantizeLinear, the activation quantizer of onnxruntime's `quantize_dynamic` models
(DynamicQuantizeLinear → ConvInteger / MatMulInteger with the run-time zero point → Cast → Mul by the scales).

The scale and zero point come from the tensor's own range at run time, as onnxruntime's CPU kernel computes them:
lo = min(min(x), 0), hi = max(max(x), 0) (NaN elements skipped); scale = 1 if hi = lo, else float32((hi − lo) / 255); zero point =
round_half_even(clamp(−lo / scale, 0, 255)) as uint8 (255 when −lo / scale is NaN, as std::min/std::max give); y = saturate(rint(x / scale) + zero point). They are ops on
the vector unit (two reductions over the tensor, a few scalar ops and the quantisation), so the quantized product
that follows maps onto crossbars with a zero point known only at run time (`lower-quantized`: the arrays read
x − zero point, 9 bits wide).
"""

from __future__ import annotations

import numpy as np

from rcc.compiler.frontend.context import LowerContext
from rcc.compiler.frontend.registry import rule
from rcc.ir.core import Value

_LEVELS = 255.0   # uint8: qmax − qmin


@rule("DynamicQuantizeLinear")
def lower_dynamic_quantize_linear(ctx: LowerContext) -> None:
    x = ctx.input(0)
    if x.type.dtype != "f32":
        raise ctx.unsupported(f"DynamicQuantizeLinear of {x.type.dtype}: onnxruntime quantizes float32 tensors")
    if x.type.size == 0:
        raise ctx.unsupported("DynamicQuantizeLinear of an empty tensor")
    everything = {"axes": tuple(range(x.type.rank)), "keepdims": False}

    def scalar(name: str, number: float) -> Value:
        return ctx.builder.constant(f"{ctx.node.output[0]}.{name}", np.array(number, np.float32))

    def op(opname: str, operands: list[Value], attrs: dict | None = None, suffix: str = "") -> Value:
        return ctx.op(opname, operands, attrs, name=f"{ctx.node.output[0]}.{suffix or opname[3:]}")

    zero = scalar("zero", 0.0)
    # MLAS's min/max skip NaN; the range includes 0 anyway, so a NaN counts as 0
    finite = op("nn.where", [op("nn.isnan", [x]), zero, x], suffix="nan_free")
    low = op("nn.minimum", [op("nn.reduce_min", [finite], everything), zero], suffix="low")
    high = op("nn.maximum", [op("nn.reduce_max", [finite], everything), zero], suffix="high")
    spread = op("nn.div", [op("nn.sub", [high, low]), scalar("levels", _LEVELS)], suffix="spread")
    scale = op("nn.where", [op("nn.equal", [high, low]), scalar("one", 1.0), spread], suffix="scale")
    offset = op("nn.neg", [op("nn.div", [low, scale])], suffix="offset")
    # std::max(0, std::min(255, offset)) takes 255 for a NaN offset (a −inf minimum: −inf / inf)
    clamped = op("nn.where", [op("nn.isnan", [offset]), scalar("top", _LEVELS),
                              op("nn.clip", [offset], {"min": 0.0, "max": _LEVELS})], suffix="clamped")
    zero_point = op("nn.cast", [op("nn.round", [clamped])], {"to": "u8"}, suffix="zero_point")
    quantized = op("nn.quantize_linear", [x, scale, zero_point], {"axis": 0, "bits": 8}, suffix="y")
    for index, value in enumerate((quantized, scale, zero_point)):
        if index < len(ctx.node.output) and ctx.node.output[index]:
            ctx.bind(index, value)
