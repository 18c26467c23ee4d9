"""Graph-level element-wise math of the remaining ONNX ops: trigonometric and hyperbolic functions and their
inverses, rounding (floor, ceil, round half to even), the NaN and infinity tests, the remainder (`nn.mod`,
integer or C fmod), and the integer bit operations (and, or, xor, not, shifts).

Each op takes the dtypes onnxruntime 1.32's CPU provider has kernels for (float16 reaches the float ops
through the frontend, computed in float32 as onnxruntime computes it); another dtype is refused as
onnxruntime refuses it. Signed shifts and a float remainder with the divisor's sign are ONNX 28's; the
frontend refuses them in older opsets, as onnxruntime does. Floats are computed in their own dtype by
numpy: the transcendental ones within a few ulps of onnxruntime's vectorised kernels (up to ~9 for float64
sin and cos), the others exactly.
"""

from __future__ import annotations

import numpy as np

from rcc.ir.errors import RccError
from rcc.ir.optable import Attr, broadcast_shapes, define
from rcc.ir.types import TensorType

_FLOATS = ("f16", "f32", "f64")
_INTEGERS = ("i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64")


def _unary_infer(dtypes: tuple[str, ...], result: str | None = None):
    def infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
        if types[0].dtype not in dtypes:
            raise ValueError(f"operand must be one of {', '.join(dtypes)}, got {types[0]}")
        return [TensorType(types[0].shape, result or types[0].dtype)]
    return infer


def _binary_infer(dtypes: tuple[str, ...]):
    def infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
        lhs, rhs = types
        if lhs.dtype != rhs.dtype or lhs.dtype not in dtypes:
            raise ValueError(f"operands must be one of {', '.join(dtypes)} and of one dtype, got {lhs} and {rhs}")
        return [TensorType(broadcast_shapes(lhs.shape, rhs.shape), lhs.dtype)]
    return infer


def _unary(name: str, function, dtypes: tuple[str, ...], doc: str) -> None:
    def impl(x: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            return np.asarray(function(x)).astype(x.dtype, copy=False)

    impl.__doc__ = doc
    define(name, operands=("x",), infer=_unary_infer(dtypes), tags=("elementwise",))(impl)


# IR op → (numpy function, dtypes onnxruntime computes it in)
TRANSCENDENTAL = {
    "nn.sin": (np.sin, _FLOATS), "nn.cos": (np.cos, _FLOATS), "nn.tan": (np.tan, ("f16", "f32")),
    "nn.asin": (np.arcsin, ("f16", "f32")), "nn.acos": (np.arccos, ("f16", "f32")),
    "nn.atan": (np.arctan, ("f16", "f32")), "nn.sinh": (np.sinh, ("f16", "f32")),
    "nn.cosh": (np.cosh, ("f16", "f32")), "nn.asinh": (np.arcsinh, ("f16", "f32")),
    "nn.acosh": (np.arccosh, ("f16", "f32")), "nn.atanh": (np.arctanh, ("f16", "f32")),
}
for _name, (_function, _dtypes) in TRANSCENDENTAL.items():
    _unary(_name, _function, _dtypes, f"numpy's {_function.__name__} of x (NaN outside its domain).")
_unary("nn.floor", np.floor, _FLOATS, "The largest integer not above x.")
_unary("nn.ceil", np.ceil, _FLOATS, "The smallest integer not below x.")
_unary("nn.round", np.rint, _FLOATS, "x rounded to the nearest integer, halves to the even one.")
_unary("nn.bitwise_not", np.invert, _INTEGERS, "The bits of x inverted.")


@define("nn.isnan", operands=("x",), infer=_unary_infer(_FLOATS, "bool"), tags=("elementwise",))
def isnan(x: np.ndarray) -> np.ndarray:
    """True where x is NaN."""
    return np.isnan(x)


@define("nn.isinf", operands=("x",), infer=_unary_infer(("f32", "f64"), "bool"), tags=("elementwise",),
        attrs={"detect_negative": Attr("bool", True), "detect_positive": Attr("bool", True)})
def isinf(x: np.ndarray, *, detect_negative: bool, detect_positive: bool) -> np.ndarray:
    """True where x is −inf (if `detect_negative`) or +inf (if `detect_positive`)."""
    return np.isinf(x) & (((x < 0) & detect_negative) | ((x > 0) & detect_positive))


@define("nn.mod", operands=("lhs", "rhs"), infer=_binary_infer(_FLOATS + _INTEGERS), attrs={"fmod": Attr("bool", False)},
        tags=("elementwise",))
def mod(lhs: np.ndarray, rhs: np.ndarray, *, fmod: bool) -> np.ndarray:
    """The remainder of lhs / rhs: with the divisor's sign (Python's %), or with `fmod` the dividend's (C's
    fmod). An integer remainder by 0 is an RccError, as onnxruntime refuses it."""
    if rhs.dtype.kind in "iu" and not np.all(rhs):
        raise RccError("nn.mod: integer modulo by zero")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.fmod(lhs, rhs) if fmod else np.mod(lhs, rhs))


def _bitwise(name: str, function, doc: str) -> None:
    def impl(lhs: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        return np.asarray(function(lhs, rhs))

    impl.__doc__ = doc
    define(name, operands=("lhs", "rhs"), infer=_binary_infer(_INTEGERS), tags=("elementwise",))(impl)


_bitwise("nn.bitwise_and", np.bitwise_and, "The bits set in both lhs and rhs, with broadcasting.")
_bitwise("nn.bitwise_or", np.bitwise_or, "The bits set in lhs or rhs, with broadcasting.")
_bitwise("nn.bitwise_xor", np.bitwise_xor, "The bits set in exactly one of lhs and rhs, with broadcasting.")


def _shift_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    if attrs["direction"] not in ("LEFT", "RIGHT"):
        raise ValueError(f"direction {attrs['direction']!r} is not LEFT or RIGHT")
    return _binary_infer(_INTEGERS)(types, attrs)


@define("nn.bit_shift", operands=("x", "shift"), infer=_shift_infer, attrs={"direction": Attr("str")},
        tags=("elementwise",))
def bit_shift(x: np.ndarray, shift: np.ndarray, *, direction: str) -> np.ndarray:
    """x's bits moved `shift` places left, or right (arithmetic for signed x); bits moved out are lost. A shift
    by the width or more, or by a negative amount, leaves nothing: 0, or right of a negative x, −1 (ONNX 28)."""
    width = x.dtype.itemsize * 8
    x, shift = np.broadcast_arrays(x, shift)
    out_of_range = (shift < 0) | (shift >= width)
    places = np.where(out_of_range, 0, shift).astype(x.dtype)
    if direction == "LEFT":
        return np.where(out_of_range, x.dtype.type(0), np.left_shift(x, places)).astype(x.dtype)
    fill = np.where(x < 0, x.dtype.type(-1) if x.dtype.kind == "i" else 0, 0).astype(x.dtype)
    return np.where(out_of_range, fill, np.right_shift(x, places)).astype(x.dtype)
