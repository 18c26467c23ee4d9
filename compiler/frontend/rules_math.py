"""Lowering of ONNX's arithmetic ops: Gemm, MatMul, BatchNormalization, activations, element-wise math,
softmax and hardmax, and the ops that are identities at inference (Identity, Dropout)."""

from __future__ import annotations

import math

import numpy as np

from rcc.compiler.frontend.context import LowerContext
from rcc.compiler.frontend.registry import rule
from rcc.ir.core import Value
from rcc.ir.inputs import NONFINITE_HINT


def scaled(ctx: LowerContext, index: int, factor: float) -> Value:
    """Input `index` times `factor` (folded into the constant when the input is one)."""
    if factor == 1.0:
        return ctx.input(index)
    if ctx.is_constant(index):
        data = ctx.constant(index, f"#{index}")
        return ctx.builder.constant(ctx.node.input[index], (data * data.dtype.type(factor)).astype(data.dtype))
    value = ctx.input(index)
    factor_value = ctx.builder.constant("factor", np.array(factor, dtype=value.type.np_dtype))
    return ctx.op("nn.mul", [value, factor_value])


def transposed(ctx: LowerContext, index: int, value: Value) -> Value:
    if ctx.is_constant(index) and value.is_constant:
        return ctx.builder.constant(value.name + ".T", np.ascontiguousarray(value.data.T))
    return ctx.op("nn.transpose", [value], {"perm": (1, 0)}, name=value.name + ".T")


def finite_scale(ctx: LowerContext, name: str) -> float:
    """The float attribute `name` (default 1); an error naming it when NaN or Inf, unless --allow-nonfinite:
    it is folded into weights, so it is refused as a NaN/Inf weight initializer is."""
    value = float(ctx.attr(name, 1.0))
    if not math.isfinite(value) and not ctx.allow_nonfinite:
        raise ctx.error(f"attribute {name} is {value}; {NONFINITE_HINT}")
    return value


@rule("Gemm")
def lower_gemm(ctx: LowerContext) -> None:
    """Y = alpha · A' · B' + beta · C, with A' and B' optionally transposed."""
    alpha = finite_scale(ctx, "alpha")
    a = ctx.input(0)
    if ctx.attr("transA", 0):
        a = transposed(ctx, 0, a)
    b = scaled(ctx, 1, alpha)
    if ctx.attr("transB", 0):
        b = transposed(ctx, 1, b)
    y = ctx.op("nn.matmul", [a, b])
    beta = finite_scale(ctx, "beta") if ctx.has_input(2) else 0.0  # without C, beta scales nothing
    if beta != 0.0:
        y = ctx.op("nn.add", [y, scaled(ctx, 2, beta)], name=ctx.node.output[0])
    ctx.bind(0, y)


@rule("MatMul")
def lower_matmul(ctx: LowerContext) -> None:
    ctx.bind(0, ctx.op("nn.matmul", [ctx.input(0), ctx.input(1)]))


@rule("BatchNormalization")
def lower_batch_norm(ctx: LowerContext) -> None:
    """Inference: the given statistics. Training mode (opset 14 on, as a model exported in training mode has it):
    the batch's own mean and population variance over every axis but 1, and where read the running statistics
    mean·momentum + batch mean·(1 − momentum) and likewise the variance, as ONNX and onnxruntime define them."""
    if ctx.attr("is_test", 1) == 0:
        raise ctx.unsupported("BatchNormalization with is_test 0 (opsets 1–6 training mode; from opset 14 on, "
                              "training_mode 1 is supported)")
    operands = [ctx.input(i) for i in range(5)]
    epsilon = {"epsilon": ctx.attr("epsilon", 1e-5)}
    if not ctx.attr("training_mode", 0):
        ctx.refuse_used_outputs(1, "BatchNormalization's running-statistics outputs")
        ctx.bind(0, ctx.op("nn.batch_norm", operands, epsilon))
        return
    x = operands[0]
    if x.type.rank < 2 or x.type.dtype not in ("f32", "f64", "f16"):
        raise ctx.error(f"training-mode BatchNormalization takes a float tensor of rank 2 or more, got {x.type}")
    base = ctx.node.output[0] or ctx.node.name
    channels = (x.type.shape[1],)
    kept = {"axes": (0, *range(2, x.type.rank)), "keepdims": True}
    mean = ctx.op("nn.reduce_mean", [x], kept, name=f"{base}.batch_mean")
    centered = ctx.op("nn.sub", [x, mean], name=f"{base}.centered")
    variance = ctx.op("nn.reduce_mean", [ctx.op("nn.mul", [centered, centered], name=f"{base}.squares")], kept,
                      name=f"{base}.batch_variance")
    batch = [ctx.op("nn.reshape", [v], {"shape": channels}, name=f"{v.name}.per_channel") for v in (mean, variance)]
    ctx.bind(0, ctx.op("nn.batch_norm", [*operands[:3], *batch], epsilon))
    used = [index for index in (1, 2) if len(ctx.node.output) > index and ctx.node.output[index] in ctx.used]
    if not used:
        return
    momentum = float(ctx.attr("momentum", 0.9))
    kept_part = ctx.builder.constant(f"{base}.momentum", np.array(momentum, x.type.np_dtype))
    new_part = ctx.builder.constant(f"{base}.one_minus_momentum", np.array(1 - momentum, x.type.np_dtype))
    for index in used:
        given, current = operands[2 + index], batch[index - 1]
        ctx.bind(index, ctx.op("nn.add", [ctx.op("nn.mul", [given, kept_part]), ctx.op("nn.mul", [current, new_part])]))


_UNARY = {"Relu": "nn.relu", "Sigmoid": "nn.sigmoid", "Tanh": "nn.tanh"}


@rule(*_UNARY)
def lower_unary(ctx: LowerContext) -> None:
    ctx.bind(0, ctx.op(_UNARY[ctx.node.op_type], [ctx.input(0)]))


@rule("LeakyRelu")
def lower_leaky_relu(ctx: LowerContext) -> None:
    ctx.bind(0, ctx.op("nn.leaky_relu", [ctx.input(0)], {"alpha": ctx.attr("alpha", 0.01)}))


@rule("PRelu")
def lower_prelu(ctx: LowerContext) -> None:
    ctx.bind(0, ctx.op("nn.prelu", [ctx.input(0), ctx.input(1)]))


@rule("Clip")
def lower_clip(ctx: LowerContext) -> None:
    """An absent bound is the input type's lowest or largest finite value from opset 11 on, float32's before (as
    ONNX defines them; onnxruntime clamps +inf to 3.4e38 when max is absent); an integer input's bounds are clamped
    to its range by nn.clip itself. Bounds computed at run time are an element-wise maximum and minimum."""
    x = ctx.input(0)
    dtype = np.dtype(np.float32) if ctx.opset < 11 else x.type.np_dtype
    lowest, largest = (float(np.finfo(dtype).min), float(np.finfo(dtype).max)) if dtype.kind == "f" else \
        (float("-inf"), float("inf"))
    if any(ctx.opset >= 11 and ctx.has_input(index) and not ctx.is_constant(index) for index in (1, 2)):
        # a bound computed at run time (a spectrogram's floor at its maximum − 80 dB): max, then min
        y = ctx.op("nn.maximum", [x, ctx.input(1)]) if ctx.has_input(1) else x
        ctx.bind(0, ctx.op("nn.minimum", [y, ctx.input(2)]) if ctx.has_input(2) else y)
        return
    if ctx.opset < 11:
        low, high = ctx.attr("min", lowest), ctx.attr("max", largest)
    else:
        low_data, high_data = ctx.optional_constant(1, "min"), ctx.optional_constant(2, "max")
        low = lowest if low_data is None else float(low_data)
        high = largest if high_data is None else float(high_data)
    ctx.bind(0, ctx.op("nn.clip", [x], {"min": low, "max": high}))


_BINARY = {"Add": "nn.add", "Sub": "nn.sub", "Mul": "nn.mul", "Div": "nn.div"}


@rule(*_BINARY)
def lower_binary(ctx: LowerContext) -> None:
    if ctx.attr("broadcast", 0) and ctx.attr("axis") is not None:
        raise ctx.unsupported("legacy broadcast with an axis attribute (opset < 7)")
    ctx.bind(0, ctx.op(_BINARY[ctx.node.op_type], [ctx.input(0), ctx.input(1)]))


def lower_variadic(ctx: LowerContext, opname: str) -> None:
    """A variadic node (Sum, Min, Max) as a chain of the binary `opname`; one input is its own result."""
    total = ctx.input(0)
    count = len(ctx.node.input)
    if count == 1:
        total = ctx.op("nn.identity", [total])
    for index in range(1, count):
        total = ctx.op(opname, [total, ctx.input(index)],
                       name=ctx.node.output[0] if index == count - 1 else f"{ctx.node.output[0]}.partial")
    ctx.bind(0, total)


@rule("Sum")
def lower_sum(ctx: LowerContext) -> None:
    lower_variadic(ctx, "nn.add")


_NORMALIZERS = {"Softmax": "nn.softmax", "LogSoftmax": "nn.log_softmax", "Hardmax": "nn.hardmax"}


@rule(*_NORMALIZERS)
def lower_softmax(ctx: LowerContext) -> None:
    """Opset ≥ 13 normalises along one axis; older opsets flatten to 2-D at `axis` first."""
    x = ctx.input(0)
    rank = x.type.rank
    axis = int(ctx.attr("axis", -1 if ctx.opset >= 13 else 1))
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis < max(rank, 1):
        raise ctx.error(f"axis {ctx.attr('axis')} is out of range for rank {rank}")
    opname = _NORMALIZERS[ctx.node.op_type]
    if ctx.opset >= 13 or axis == rank - 1:
        ctx.bind(0, ctx.op(opname, [x], {"axis": axis}))
        return
    shape = x.type.shape
    flat = ctx.op("nn.reshape", [x], {"shape": (math.prod(shape[:axis]), math.prod(shape[axis:]))},
                  name=x.name + ".2d")
    normalised = ctx.op(opname, [flat], {"axis": 1}, name=ctx.node.output[0] + ".2d")
    ctx.bind(0, ctx.op("nn.reshape", [normalised], {"shape": shape}))


@rule("Identity", "Dropout")
def lower_identity(ctx: LowerContext) -> None:
    if ctx.node.op_type == "Identity" and ctx.node.input[0] in ctx.sequences:
        ctx.sequences[ctx.node.output[0]] = list(ctx.sequences[ctx.node.input[0]])
        return
    if ctx.node.op_type == "Dropout":
        _check_dropout(ctx)
    ctx.bind(0, ctx.op("nn.identity", [ctx.input(0)]))
    if ctx.node.op_type == "Dropout" and len(ctx.node.output) > 1 and ctx.node.output[1] in ctx.used:
        # nothing is dropped, and the mask says so from opset 12; before, onnxruntime's Dropout-7 to -11 (an
        # identity) gives a mask of zeros: False from opset 10, x's type before
        x = ctx.input(0).type
        fill = np.ones if ctx.opset >= 12 else np.zeros
        ctx.bind(1, ctx.builder.constant(ctx.node.output[1], fill(x.shape, bool if ctx.opset >= 10 else x.np_dtype)))


def _check_dropout(ctx: LowerContext) -> None:
    """Dropout is the identity at inference, and in training mode with a ratio of 0; a ratio above 0 in training
    mode drops random elements, which rcc does not model."""
    if not (ctx.has_input(2) and ctx.is_constant(2) and bool(ctx.constant(2, "training_mode"))):
        return
    if not ctx.has_input(1):
        ratio = 0.5   # ONNX's default
    else:
        ratio = float(ctx.constant(1, "ratio")) if ctx.is_constant(1) else None
    if ratio != 0.0:
        raise ctx.unsupported("Dropout in training mode (with a ratio above 0 it drops random elements)")
