"""Graph-level element-wise activations and math beyond nn_elementwise: the ELU family, softplus and
softsign, shrinkage, sign, negation, absolute value, exp, sqrt, power, and binary minimum/maximum.

Semantics follow onnxruntime. Ops defined on floats only (the ELU family, softplus, exp, sqrt, ...)
refuse other dtypes in `infer`; sign, negation, absolute value, shrink, power and min/max also take
integers (negation and absolute value wrap around as two's complement does; shrink and power compute in
float and truncate toward zero, as onnxruntime's static_cast does).
"""

from __future__ import annotations

import numpy as np

from rcc.ir.ops.nn_elementwise import _binary_infer  # the shape rule of nn.add and its kin
from rcc.ir.optable import Attr, broadcast_shapes, define
from rcc.ir.types import TensorType

SELU_ALPHA = 1.67326319217681884765625
SELU_GAMMA = 1.05070102214813232421875


def _float_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    if types[0].np_dtype.kind != "f":
        raise ValueError(f"operand must be a float tensor, got {types[0]}")
    return [types[0]]


def _numeric_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    if types[0].np_dtype.kind not in "fiu":
        raise ValueError(f"operand must be a numeric tensor, got {types[0]}")
    return [types[0]]


def _float_op(name: str, attrs: dict[str, Attr] | None = None):
    return define(name, operands=("x",), infer=_float_infer, attrs=attrs, tags=("elementwise",))


@_float_op("nn.elu", {"alpha": Attr("float", 1.0)})
def elu(x: np.ndarray, *, alpha: float) -> np.ndarray:
    """x where x ≥ 0, alpha·(exp(x) − 1) elsewhere."""
    with np.errstate(over="ignore"):
        return np.where(x >= 0, x, x.dtype.type(alpha) * np.expm1(np.minimum(x, 0))).astype(x.dtype)


@_float_op("nn.selu", {"alpha": Attr("float", SELU_ALPHA), "gamma": Attr("float", SELU_GAMMA)})
def selu(x: np.ndarray, *, alpha: float, gamma: float) -> np.ndarray:
    """gamma·x where x > 0, gamma·alpha·(exp(x) − 1) elsewhere."""
    negative = alpha * np.expm1(np.minimum(x, 0).astype(np.float64))
    return (gamma * np.where(x > 0, x.astype(np.float64), negative)).astype(x.dtype)


@_float_op("nn.celu", {"alpha": Attr("float", 1.0)})
def celu(x: np.ndarray, *, alpha: float) -> np.ndarray:
    """max(0, x) + min(0, alpha·(exp(x / alpha) − 1))."""
    wide = x.astype(np.float64)
    return (np.maximum(wide, 0) + np.minimum(alpha * np.expm1(np.minimum(wide, 0) / alpha), 0)).astype(x.dtype)


@_float_op("nn.softplus")
def softplus(x: np.ndarray) -> np.ndarray:
    """log(1 + exp(x)), without overflow for large x."""
    return np.logaddexp(x.astype(np.float64), 0.0).astype(x.dtype)


@_float_op("nn.softsign")
def softsign(x: np.ndarray) -> np.ndarray:
    """x / (1 + |x|)."""
    return (x / (1 + np.abs(x))).astype(x.dtype)


@_float_op("nn.thresholded_relu", {"alpha": Attr("float", 1.0)})
def thresholded_relu(x: np.ndarray, *, alpha: float) -> np.ndarray:
    """x where x > alpha, 0 elsewhere."""
    return np.where(x > x.dtype.type(alpha), x, np.zeros((), x.dtype)).astype(x.dtype)


@_float_op("nn.exp")
def exp(x: np.ndarray) -> np.ndarray:
    """e to the power x."""
    with np.errstate(over="ignore"):
        return np.exp(x)


@_float_op("nn.sqrt")
def sqrt(x: np.ndarray) -> np.ndarray:
    """Square root; NaN for negative operands."""
    with np.errstate(invalid="ignore"):
        return np.sqrt(x)


@define("nn.shrink", operands=("x",), infer=_numeric_infer,
        attrs={"bias": Attr("float", 0.0), "lambd": Attr("float", 0.5)}, tags=("elementwise",))
def shrink(x: np.ndarray, *, bias: float, lambd: float) -> np.ndarray:
    """x + bias where x < −lambd, x − bias where x > lambd, 0 elsewhere (integers computed in float32, as C
    promotes int + float in onnxruntime, and truncated)."""
    wide = x if x.dtype.kind == "f" else x.astype(np.float32)
    low, high, shift = (wide.dtype.type(v) for v in (-lambd, lambd, bias))
    shrunk = np.where(wide < low, wide + shift, np.where(wide > high, wide - shift, wide.dtype.type(0)))
    return _to_dtype(shrunk, x.dtype)


@define("nn.sign", operands=("x",), infer=_numeric_infer, tags=("elementwise",))
def sign(x: np.ndarray) -> np.ndarray:
    """−1, 0 or 1 by the sign of x (0 or 1 for unsigned integers)."""
    return np.sign(x).astype(x.dtype)


@define("nn.neg", operands=("x",), infer=_numeric_infer, tags=("elementwise",))
def neg(x: np.ndarray) -> np.ndarray:
    """−x (integers wrap around)."""
    return np.negative(x)


@define("nn.abs", operands=("x",), infer=_numeric_infer, tags=("elementwise",))
def abs_(x: np.ndarray) -> np.ndarray:
    """|x| (the most negative integer stays itself)."""
    return np.abs(x)


def _to_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float values in `dtype`, integers truncated toward zero as a C cast does (NaN and out-of-range values
    give what the CPU's conversion gives, as in onnxruntime)."""
    with np.errstate(invalid="ignore"):
        return np.asarray(values).astype(dtype)


def _pow_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    base, exponent = types
    for t in types:
        if t.np_dtype.kind not in "fiu":
            raise ValueError(f"operands must be numeric tensors, got {t}")
    return [TensorType(broadcast_shapes(base.shape, exponent.shape), base.dtype)]


def _scalar_power(base: np.ndarray, power: float, exponent: np.ndarray) -> np.ndarray:
    """A float base raised to the single value `power` (held in `exponent`, of the base's dtype)."""
    if power == 2.0:
        return base * base
    if power == 3.0:
        return base * base * base
    if power == 0.5:
        root = np.sqrt(base + base.dtype.type(0.0))     # −0 + 0 is +0
        return np.where(np.isneginf(base), np.inf, root)   # (a 0-d base's root is a scalar: no item assignment)
    return np.power(base, exponent)


@define("nn.pow", operands=("base", "exponent"), infer=_pow_infer, tags=("elementwise",))
def pow_(base: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """base ** exponent with broadcasting, in the base's dtype (the exponent's dtype may differ). A base raised to
    one exponent of 2 or 3 is x·x or x·x·x, as onnxruntime's Pow computes it (integers exactly, wrapping on
    overflow; through float64 they would lose digits above 2^53); a float base to 0.5, the square root (what pow
    gives: correctly rounded, +0 at −0, +inf at −inf)."""
    single = exponent.size == 1 and exponent.ndim <= base.ndim
    if base.dtype.kind in "iu" and single and float(exponent.reshape(-1)[0]) in (2.0, 3.0):
        with np.errstate(over="ignore"):
            return base * base if float(exponent.reshape(-1)[0]) == 2.0 else base * base * base
    if base.dtype.kind == "f" and exponent.dtype.kind != "f":
        exponent = exponent.astype(base.dtype)
    with np.errstate(all="ignore"):
        if base.dtype.kind == "f" and exponent.dtype == base.dtype:
            if single:
                return _scalar_power(base, float(exponent.reshape(-1)[0]), exponent)
            return np.power(base, exponent)
        return _to_dtype(np.power(base.astype(np.float64), exponent.astype(np.float64)), base.dtype)


@define("nn.minimum", operands=("lhs", "rhs"), infer=_binary_infer, tags=("elementwise",))
def minimum(lhs: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Element-wise minimum with broadcasting; NaN wins."""
    return np.minimum(lhs, rhs)


@define("nn.maximum", operands=("lhs", "rhs"), infer=_binary_infer, tags=("elementwise",))
def maximum(lhs: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Element-wise maximum with broadcasting; NaN wins."""
    return np.maximum(lhs, rhs)

