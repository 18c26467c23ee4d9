"""Lowering of the transformer ops onnxruntime's transformer optimizer (`onnxruntime.transformers.optimizer`, and
Hugging Face Optimum's optimization levels built on it) writes into the models it saves: com.microsoft's
SkipLayerNormalization, SkipSimplifiedLayerNormalization, BiasGelu, FastGelu, Gelu, QuickGelu and FusedMatMul, and
SimplifiedLayerNormalization (registered by onnxruntime in the default domain). Each becomes the IR ops it fuses,
so a MatMul with constant weights still maps onto crossbars and the rest runs on the vector unit:
- SkipLayerNormalization: LayerNormalization over the last axis of input + skip (+ bias), its optional output 3
  the sum itself; SkipSimplifiedLayerNormalization and SimplifiedLayerNormalization the same with RMS
  normalization (no mean, no beta);
- BiasGelu: Gelu(A + B) (erf); FastGelu: Gelu's tanh approximation of X (+ bias); Gelu: erf; QuickGelu:
  x · sigmoid(alpha · x) (alpha 1.702 by default);
- FusedMatMul: alpha · op(A) · op(B) with transA and transB on the last two axes (transBatchA/transBatchB are
  refused in one line).
The normalizations' mean and inverse standard deviation outputs are refused when the model reads them.
"""

from __future__ import annotations

import numpy as np

from rcc.compiler.frontend.context import LowerContext
from rcc.compiler.frontend.registry import MS_DOMAIN, rule
from rcc.ir.core import Value


def _add(ctx: LowerContext, x: Value, y: Value, suffix: str) -> Value:
    return ctx.op("nn.add", [x, y], name=f"{ctx.node.output[0]}.{suffix}")


def _last_axis_norm(ctx: LowerContext, x: Value, opname: str, operands: list[Value]) -> Value:
    epsilon = float(ctx.attr("epsilon", np.float32(1e-5)))   # onnxruntime's float 1e-5f when absent
    return ctx.op(opname, [x, *operands], {"axis": x.type.rank - 1, "epsilon": epsilon, "stash_type": "f32"})


@rule("SkipLayerNormalization", "SkipSimplifiedLayerNormalization", domain=MS_DOMAIN)
def lower_skip_layer_norm(ctx: LowerContext) -> None:
    if any(name in ctx.used for name in ctx.node.output[1:3] if name):
        raise ctx.unsupported(f"{ctx.node.op_type}'s mean and inverse standard deviation outputs")
    simplified = ctx.node.op_type == "SkipSimplifiedLayerNormalization"
    x = ctx.input(0)
    if x.type.rank < 2 or x.type.dtype != "f32":
        raise ctx.unsupported(f"{ctx.node.op_type} of {x.type}: rcc takes float32 [..., hidden]")
    total = _add(ctx, x, ctx.input(1), "skip")
    bias_index = 3 if simplified else 4
    if ctx.has_input(bias_index):
        total = _add(ctx, total, ctx.input(bias_index), "bias")
    if simplified:
        normalized = _last_axis_norm(ctx, total, "nn.rms_norm", [ctx.input(2)])
    else:
        normalized = _last_axis_norm(ctx, total, "nn.layer_norm",
                                     [ctx.input(2)] + ([ctx.input(3)] if ctx.has_input(3) else []))
    ctx.bind(0, normalized)
    if len(ctx.node.output) > 3 and ctx.node.output[3]:
        ctx.bind(3, total)


@rule("SimplifiedLayerNormalization")
def lower_simplified_layer_norm(ctx: LowerContext) -> None:
    ctx.refuse_used_outputs(1, "SimplifiedLayerNormalization's inverse standard deviation output")
    x = ctx.input(0)
    axis = int(ctx.attr("axis", -1))
    if axis % max(x.type.rank, 1) != x.type.rank - 1:
        raise ctx.unsupported(f"SimplifiedLayerNormalization over axis {axis} (rcc normalizes the last axis)")
    ctx.bind(0, _last_axis_norm(ctx, x, "nn.rms_norm", [ctx.input(1)]))


@rule("BiasGelu", "FastGelu", "Gelu", domain=MS_DOMAIN)
def lower_gelu_family(ctx: LowerContext) -> None:
    x = ctx.input(0)
    if ctx.has_input(1):
        x = _add(ctx, x, ctx.input(1), "bias")
    approximate = "tanh" if ctx.node.op_type == "FastGelu" else "none"
    ctx.bind(0, ctx.op("nn.gelu", [x], {"approximate": approximate}))


@rule("QuickGelu", domain=MS_DOMAIN)
def lower_quick_gelu(ctx: LowerContext) -> None:
    x = ctx.input(0)
    alpha = ctx.builder.constant(f"{ctx.node.output[0]}.alpha", np.array(float(ctx.attr("alpha", 1.702)), np.float32))
    gate = ctx.op("nn.sigmoid", [ctx.op("nn.mul", [x, alpha], name=f"{ctx.node.output[0]}.scaled")],
                  name=f"{ctx.node.output[0]}.gate")
    ctx.bind(0, ctx.op("nn.mul", [x, gate]))


@rule("FusedMatMul", domain=MS_DOMAIN)
def lower_fused_matmul(ctx: LowerContext) -> None:
    for name in ("transBatchA", "transBatchB"):
        if ctx.attr(name, 0):
            raise ctx.unsupported(f"FusedMatMul with {name}=1 (rcc transposes the last two axes only)")
    operands = []
    for index, flag in ((0, "transA"), (1, "transB")):
        value = ctx.input(index)
        if ctx.flag(flag, 0):
            if value.type.rank < 2:
                raise ctx.error(f"{flag}=1 on a rank-{value.type.rank} operand")
            perm = (*range(value.type.rank - 2), value.type.rank - 1, value.type.rank - 2)
            value = ctx.op("nn.transpose", [value], {"perm": perm}, name=f"{ctx.node.output[0]}.{flag}")
        operands.append(value)
    product = ctx.op("nn.matmul", operands, name=f"{ctx.node.output[0]}.matmul")
    alpha = float(ctx.attr("alpha", 1.0))
    if alpha != 1.0:
        scale = ctx.builder.constant(f"{ctx.node.output[0]}.alpha", np.array(alpha, np.float32))
        product = ctx.op("nn.mul", [product, scale])
    ctx.bind(0, product)
