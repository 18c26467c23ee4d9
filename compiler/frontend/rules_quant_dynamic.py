"""Lowering of ONNX's DynamicQuantizeLinear, the activation quantizer of onnxruntime's `quantize_dynamic` models
(DynamicQuantizeLinear → ConvInteger / MatMulInteger with the run-time zero point → Cast → Mul by the scales), and
of the com.microsoft ops onnxruntime fuses them into in the models it saves: DynamicQuantizeMatMul (the quantizer
and the scaled product in one) and MatMulIntegerToFloat (the scaled product: float32(acc) · (a_scale · b_scale) +
bias, bit for bit as its kernels compute it).

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
from rcc.compiler.frontend.registry import MS_DOMAIN, rule
from rcc.ir.core import Value

_LEVELS = 255.0   # uint8: qmax − qmin


def dynamically_quantized(ctx: LowerContext, x: Value, range_of: Value | None = None) -> tuple[Value, Value, Value]:
    """x's uint8 codes, scale and zero point as onnxruntime's DynamicQuantizeLinear computes them (module docstring),
    the range taken from `range_of` (x itself by default)."""
    if x.type.dtype != "f32":
        raise ctx.unsupported(f"{ctx.node.op_type} of {x.type.dtype}: onnxruntime quantizes float32 tensors")
    if x.type.size == 0:
        raise ctx.unsupported(f"{ctx.node.op_type} of an empty tensor")
    everything = {"axes": tuple(range(x.type.rank if range_of is None else range_of.type.rank)), "keepdims": False}

    def scalar(name: str, number: float) -> Value:
        return ctx.builder.constant(f"{ctx.node.output[0]}.{name}", np.array(number, np.float32))

    def op(opname: str, operands: list[Value], attrs: dict | None = None, suffix: str = "") -> Value:
        return ctx.op(opname, operands, attrs, name=f"{ctx.node.output[0]}.{suffix or opname[3:]}")

    zero = scalar("zero", 0.0)
    # MLAS's min/max skip NaN; the range includes 0 anyway, so a NaN counts as 0
    ranged = x if range_of is None else range_of
    finite = op("nn.where", [op("nn.isnan", [ranged]), zero, ranged], suffix="nan_free")
    low = op("nn.minimum", [op("nn.reduce_min", [finite], everything), zero], suffix="low")
    high = op("nn.maximum", [op("nn.reduce_max", [finite], everything), zero], suffix="high")
    spread = op("nn.div", [op("nn.sub", [high, low]), scalar("levels", _LEVELS)], suffix="spread")
    scale = op("nn.where", [op("nn.equal", [high, low]), scalar("one", 1.0), spread], suffix="scale")
    offset = op("nn.neg", [op("nn.div", [low, scale])], suffix="offset")
    # std::max(0, std::min(255, offset)) takes 255 for a NaN offset (a −inf minimum: −inf / inf)
    clamped = op("nn.where", [op("nn.isnan", [offset]), scalar("top", _LEVELS),
                              op("nn.clip", [offset], {"min": 0.0, "max": _LEVELS})], suffix="clamped")
    zero_point = op("nn.cast", [op("nn.round", [clamped])], {"to": "u8"}, suffix="zero_point")
    return op("nn.quantize_linear", [x, scale, zero_point], {"axis": 0, "bits": 8}, suffix="y"), scale, zero_point


@rule("DynamicQuantizeLinear")
def lower_dynamic_quantize_linear(ctx: LowerContext) -> None:
    for index, value in enumerate(dynamically_quantized(ctx, ctx.input(0))):
        if index < len(ctx.node.output) and ctx.node.output[index]:
            ctx.bind(index, value)


def _scaled_product(ctx: LowerContext, a: Value, a_scale: Value, a_zero: Value, weights: int, scale: int,
                    zero: int | None, bias: int | None) -> Value:
    """float32(MatMulInteger(a, B)) · (a_scale · b_scale) (+ bias), as onnxruntime's kernels scale their integer
    accumulators; B, its scale, zero point and the bias are constants (input indices)."""
    b = ctx.input(weights)
    if not b.is_constant or b.type.dtype not in ("i8", "u8") or b.type.rank != 2:
        raise ctx.unsupported(f"{ctx.node.op_type} with B {b.type}{'' if b.is_constant else ' computed at run time'} "
                              f"(rcc maps a constant 2-D int8/uint8 B)")
    name = ctx.node.output[0]
    w_zero = ctx.input(zero) if zero is not None and ctx.has_input(zero) else \
        ctx.builder.constant(f"{name}.b_zero", np.zeros((), b.type.np_dtype))
    if w_zero.type.dtype != b.type.dtype or w_zero.type.size not in (1, b.type.shape[1]):
        raise ctx.error(f"B's zero point must be one {b.type.dtype} or one per column, got {w_zero.type}")
    acc = ctx.op("nn.matmul_integer", [a, b, a_zero, w_zero], name=f"{name}.acc")
    product = ctx.op("nn.mul", [a_scale, ctx.input(scale)], name=f"{name}.scales")
    result = ctx.op("nn.mul", [ctx.op("nn.cast", [acc], {"to": "f32"}, name=f"{name}.f32"), product],
                    name=f"{name}.scaled")
    if bias is not None and ctx.has_input(bias):
        result = ctx.op("nn.add", [result, ctx.input(bias)])
    return result


@rule("DynamicQuantizeMatMul", domain=MS_DOMAIN)
def lower_dynamic_quantize_matmul(ctx: LowerContext) -> None:
    """A (float) quantized as DynamicQuantizeLinear does, times B: inputs A, B, b_scale, b_zero_point?, bias?."""
    codes, scale, zero_point = dynamically_quantized(ctx, ctx.input(0))
    ctx.bind(0, _scaled_product(ctx, codes, scale, zero_point, 1, 2, 3, 4))


@rule("MatMulIntegerToFloat", domain=MS_DOMAIN)
def lower_matmul_integer_to_float(ctx: LowerContext) -> None:
    """Inputs A (uint8/int8), B, a_scale, b_scale, a_zero_point?, b_zero_point?, bias?."""
    a = ctx.input(0)
    if a.type.dtype not in ("u8", "i8"):
        raise ctx.unsupported(f"MatMulIntegerToFloat of {a.type.dtype} A: rcc handles uint8 and int8")
    a_zero = ctx.input(4) if ctx.has_input(4) else ctx.builder.constant(f"{ctx.node.output[0]}.a_zero",
                                                                       np.zeros((), a.type.np_dtype))
    if a_zero.type.dtype != a.type.dtype or a_zero.type.size != 1:
        raise ctx.error(f"A's zero point must be one {a.type.dtype}, got {a_zero.type}")
    ctx.bind(0, _scaled_product(ctx, a, ctx.input(2), a_zero, 1, 3, 5, 6))
