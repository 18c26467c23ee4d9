"""Lowering of ONNX's remaining element-wise activations and math: the ELU family, Softplus, Softsign,
Shrink, ThresholdedRelu, Sign, Neg, Abs, Exp, Sqrt, Erf, HardSigmoid, HardSwish, Mish, Reciprocal, Log, the
trigonometric and hyperbolic functions and their inverses, Floor, Ceil, Round, Gelu, Pow, and the variadic
Min, Max and Mean."""

from __future__ import annotations

import numpy as np

from rcc.compiler.frontend.context import LowerContext
from rcc.compiler.frontend.registry import rule
from rcc.compiler.frontend.rules_math import lower_variadic
from rcc.ir.ops.nn_activation import SELU_ALPHA, SELU_GAMMA

# ONNX op type → (IR op, {ONNX attribute: default}) of the one-operand ops
_UNARY = {
    "Elu": ("nn.elu", {"alpha": 1.0}),
    "Selu": ("nn.selu", {"alpha": SELU_ALPHA, "gamma": SELU_GAMMA}),
    "Celu": ("nn.celu", {"alpha": 1.0}),
    "Softplus": ("nn.softplus", {}),
    "Softsign": ("nn.softsign", {}),
    "ThresholdedRelu": ("nn.thresholded_relu", {"alpha": 1.0}),
    "Shrink": ("nn.shrink", {"bias": 0.0, "lambd": 0.5}),
    "Sign": ("nn.sign", {}),
    "Neg": ("nn.neg", {}),
    "Abs": ("nn.abs", {}),
    "Exp": ("nn.exp", {}),
    "Sqrt": ("nn.sqrt", {}),
    "Erf": ("nn.erf", {}),
    "HardSigmoid": ("nn.hard_sigmoid", {"alpha": 0.2, "beta": 0.5}),
    "HardSwish": ("nn.hard_swish", {}),
    "Mish": ("nn.mish", {}),
    "Reciprocal": ("nn.reciprocal", {}),
    "Log": ("nn.log", {}),
    **{op_type: (f"nn.{op_type.lower()}", {}) for op_type in (
        "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Floor", "Ceil", "Round")},
}


@rule(*_UNARY)
def lower_activation(ctx: LowerContext) -> None:
    opname, defaults = _UNARY[ctx.node.op_type]
    attrs = {key: float(ctx.attr(key, default)) for key, default in defaults.items()}
    ctx.bind(0, ctx.op(opname, [ctx.input(0)], attrs))


@rule("Pow")
def lower_pow(ctx: LowerContext) -> None:
    ctx.bind(0, ctx.op("nn.pow", [ctx.input(0), ctx.input(1)]))


@rule("Min", "Max")
def lower_min_max(ctx: LowerContext) -> None:
    lower_variadic(ctx, "nn.minimum" if ctx.node.op_type == "Min" else "nn.maximum")


@rule("Gelu")
def lower_gelu(ctx: LowerContext) -> None:
    approximate = ctx.attr("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise ctx.error(f"attribute approximate={approximate!r} is not 'none' or 'tanh'")
    ctx.bind(0, ctx.op("nn.gelu", [ctx.input(0)], {"approximate": approximate}))


@rule("Mean")
def lower_mean(ctx: LowerContext) -> None:
    """The sum of the inputs (broadcast) divided by their count."""
    count = len(ctx.node.input)
    if count == 1:
        ctx.bind(0, ctx.op("nn.identity", [ctx.input(0)]))
        return
    total = ctx.input(0)
    for index in range(1, count):
        total = ctx.op("nn.add", [total, ctx.input(index)], name=f"{ctx.node.output[0]}.sum")
    divisor = ctx.builder.constant("count", np.array(count, dtype=total.type.np_dtype))
    ctx.bind(0, ctx.op("nn.div", [total, divisor]))
