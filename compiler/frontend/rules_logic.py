"""Lowering of ONNX's comparisons (Equal, Less, LessOrEqual, Greater, GreaterOrEqual), boolean logic
(And, Or, Xor, Not), Where, the tests IsNaN and IsInf, integer bits (BitwiseAnd, BitwiseOr, BitwiseXor,
BitwiseNot, BitShift), the remainder Mod, and the dtype conversions Cast and CastLike."""

from __future__ import annotations

import onnx

from rcc.compiler.frontend.context import LowerContext
from rcc.compiler.frontend.registry import rule
from rcc.ir.ops.narrow_cast import ROUND_MODES
from rcc.ir.types import TensorType, dtype_name

_BINARY = {"Equal": "nn.equal", "Less": "nn.less", "LessOrEqual": "nn.less_equal", "Greater": "nn.greater",
           "GreaterOrEqual": "nn.greater_equal", "And": "nn.logical_and", "Or": "nn.logical_or",
           "Xor": "nn.logical_xor"}


@rule(*_BINARY)
def lower_comparison(ctx: LowerContext) -> None:
    if ctx.attr("broadcast", 0) and ctx.attr("axis") is not None:
        raise ctx.unsupported("legacy broadcast with an axis attribute (opset < 7)")
    ctx.bind(0, ctx.op(_BINARY[ctx.node.op_type], [ctx.input(0), ctx.input(1)]))


_BITWISE = {"BitwiseAnd": "nn.bitwise_and", "BitwiseOr": "nn.bitwise_or", "BitwiseXor": "nn.bitwise_xor"}


@rule(*_BITWISE)
def lower_bitwise(ctx: LowerContext) -> None:
    ctx.bind(0, ctx.op(_BITWISE[ctx.node.op_type], [ctx.input(0), ctx.input(1)]))


@rule("BitwiseNot", "IsNaN")
def lower_bit_test(ctx: LowerContext) -> None:
    ctx.bind(0, ctx.op("nn.bitwise_not" if ctx.node.op_type == "BitwiseNot" else "nn.isnan", [ctx.input(0)]))


@rule("IsInf")
def lower_isinf(ctx: LowerContext) -> None:
    flags = {key: ctx.flag(key, 1) for key in ("detect_negative", "detect_positive")}
    ctx.bind(0, ctx.op("nn.isinf", [ctx.input(0)], flags))


@rule("BitShift")
def lower_bit_shift(ctx: LowerContext) -> None:
    direction = ctx.attr("direction")
    if direction not in ("LEFT", "RIGHT"):
        raise ctx.error(f"attribute direction={direction!r} is not LEFT or RIGHT")
    x = ctx.input(0)
    if ctx.opset < 28 and x.type.dtype[0] != "u":
        raise ctx.error(f"BitShift-{ctx.opset} shifts unsigned integers only, got {x.type.dtype} (signed: opset 28)")
    ctx.bind(0, ctx.op("nn.bit_shift", [x, ctx.input(1)], {"direction": direction}))


@rule("Mod")
def lower_mod(ctx: LowerContext) -> None:
    fmod = ctx.flag("fmod", 0)
    lhs = ctx.input(0)
    divisor = ctx.constant(1, "divisor") if ctx.is_constant(1) else None
    if divisor is not None and divisor.dtype.kind in "iu" and not divisor.all():
        raise ctx.error("integer modulo by zero: the constant divisor holds a 0 (onnxruntime refuses it too)")
    if ctx.opset < 28 and not fmod and lhs.type.dtype.startswith("f"):
        raise ctx.error(f"Mod-{ctx.opset} of {lhs.type.dtype} needs fmod=1 (a float remainder with fmod=0: opset 28)")
    ctx.bind(0, ctx.op("nn.mod", [lhs, ctx.input(1)], {"fmod": fmod}))


@rule("Not")
def lower_not(ctx: LowerContext) -> None:
    ctx.bind(0, ctx.op("nn.logical_not", [ctx.input(0)]))


@rule("Where")
def lower_where(ctx: LowerContext) -> None:
    ctx.bind(0, ctx.op("nn.where", [ctx.input(0), ctx.input(1), ctx.input(2)]))


def _ir_dtype(ctx: LowerContext, elem_type: int) -> str:
    """The IR dtype of ONNX element type `elem_type`; UnsupportedError naming it when rcc does not carry it."""
    try:
        return dtype_name(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, ValueError, TypeError):
        try:
            name = onnx.TensorProto.DataType.Name(elem_type)
        except ValueError:
            raise ctx.error(f"attribute to={elem_type} is not an ONNX element type") from None
        raise ctx.unsupported(f"cast to {name}, an element type rcc does not carry") from None


def _cast_to(ctx: LowerContext, to: str) -> None:
    saturate = ctx.flag("saturate", 1)   # changes casts to float8 types only
    round_mode = ctx.attr("round_mode", "up")   # changes casts to float8 e8m0 only (Cast-24)
    if round_mode not in ROUND_MODES:
        raise ctx.error(f"attribute round_mode={round_mode!r} is not one of {', '.join(ROUND_MODES)}")
    x = ctx.input(0)
    if x.type == TensorType(x.type.shape, to):
        ctx.bind(0, ctx.op("nn.identity", [x]))
        return
    ctx.bind(0, ctx.op("nn.cast", [x], {"to": to, "saturate": int(saturate), "round_mode": round_mode}))


@rule("Cast")
def lower_cast(ctx: LowerContext) -> None:
    to = ctx.attr("to")
    if not isinstance(to, int):  # Cast-1's type names are gone once the model is converted to opset 7
        raise ctx.error(f"attribute to={to!r} is not an ONNX element type")
    _cast_to(ctx, _ir_dtype(ctx, to))


@rule("CastLike")
def lower_cast_like(ctx: LowerContext) -> None:
    _cast_to(ctx, ctx.input_type(1).dtype)
