"""Graph-level float activations of transformers and mobile networks: erf, GELU (exact and tanh), hard
sigmoid, hard swish, mish, reciprocal, natural logarithm, and hardmax (one-hot of the first maximum).

All are float-only as in ONNX; computed in float64 where float32 would round differently from
onnxruntime's kernels, then brought back to the operand's dtype.
"""

from __future__ import annotations

import math

import numpy as np

from rcc.ir.ops.nn_activation import _float_infer, _float_op  # the float-only shape rule and decorator
from rcc.ir.ops.nn_elementwise import _axis_infer, float32_if_half
from rcc.ir.optable import Attr, define
from rcc.ir.types import TensorType

SQRT_2_OVER_PI = math.sqrt(2 / math.pi)

# erf(x)/x for |x| ≤ 2 as a polynomial in u = x²/2 − 1, and erfc(a)·exp(a²) for 2 ≤ a ≤ 6 as a polynomial in
# t = (a − 4)/2 (highest power first): least-squares fits of degree 16 and 22 on 600 Chebyshev nodes against
# math.erf and math.erfc, converted to powers (their coefficients fall off, so Horner's rule stays accurate).
# Relative error below 1.4e-15 (tests/ops/test_erf.py checks it against math.erf, and that float32 results
# round the same); beyond 6, 1 − erf(a) < 2^-55 and erf is ±1 in float64.
_ERF_NEAR = (1.8865279773269562e-11, -1.4678993447307485e-10, 1.1263713662889768e-09, -8.608705598867722e-09,
             6.120861982864009e-08, -4.045151519261484e-07, 2.4757914540394618e-06, -1.3946272193179076e-05,
             7.180101326665375e-05, -0.0003351435335988258, 0.0014050914224446502, -0.005234875836173378,
             0.017128344571974707, -0.04866277744916037, 0.11947913860984245, -0.26111186093124483,
             0.6749332360396554)
_ERFCX_FAR = (3.523877904240174e-10, -7.995690405384733e-10, 4.2401615432604703e-10, -2.527155611880734e-09,
              1.1760035972821706e-08, -3.028661464907224e-08, 7.859486215743031e-08, -2.208239326486765e-07,
              6.067281882103312e-07, -1.6278611327481841e-06, 4.312702283689988e-06, -1.1270614786977092e-05,
              2.9012186204497797e-05, -7.352144565364156e-05, 0.00018330764046580866, -0.00044932692162825136,
              0.0010819615585578785, -0.0025570841705246992, 0.005925639503546856, -0.013449456613942139,
              0.0298617329799118, -0.0647670121900431, 0.13699945762506135)


def _horner(coefficients: tuple[float, ...], t: np.ndarray) -> np.ndarray:
    """The polynomial with `coefficients` (highest power first) at every element of float64 `t`."""
    acc = np.full_like(t, coefficients[0])
    for coefficient in coefficients[1:]:
        acc *= t
        acc += coefficient
    return acc


def erf_wide(x: np.ndarray) -> np.ndarray:
    """The error function of `x` in float64 (numpy has none), vectorised: x·P(x²) below 2, 1 − exp(−x²)·Q(|x|)
    from 2 to 6 (only for the elements there), ±1 beyond; NaN stays NaN."""
    shape = np.shape(x)
    x = np.asarray(x, np.float64).reshape(-1)   # 1-D: a 0-d array's arithmetic gives scalars, not arrays
    magnitude = np.abs(x)
    near = np.minimum(magnitude, 2.0)
    out = x * _horner(_ERF_NEAR, near * near * 0.5 - 1.0)
    far = magnitude >= 2.0
    if far.any():
        out[far] = erf_far(x[far])
    return out.reshape(shape)


def erf_far(x: np.ndarray) -> np.ndarray:
    """`erf_wide` of float64 elements with |x| ≥ 2: ±(1 − exp(−a²)·Q(a)), a = min(|x|, 6)."""
    a = np.minimum(np.abs(x), 6.0)
    return np.copysign(1.0 - np.exp(-a * a) * _horner(_ERFCX_FAR, (a - 4.0) * 0.5), x)


@_float_op("nn.erf")
def erf(x: np.ndarray) -> np.ndarray:
    """The Gauss error function."""
    return np.asarray(erf_wide(x).astype(x.dtype))


def _gelu_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    if attrs["approximate"] not in ("none", "tanh"):
        raise ValueError(f"approximate {attrs['approximate']!r} is not 'none' or 'tanh'")
    return _float_infer(types, attrs)


@define("nn.gelu", operands=("x",), infer=_gelu_infer, attrs={"approximate": Attr("str", "none")},
        tags=("elementwise",))
def gelu(x: np.ndarray, *, approximate: str) -> np.ndarray:
    """x · Φ(x): 0.5·x·(1 + erf(x/√2)), or with approximate "tanh" 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))."""
    wide = x.astype(np.float64)
    if approximate == "tanh":
        inner = np.tanh(SQRT_2_OVER_PI * (wide + 0.044715 * wide ** 3))
    else:
        inner = erf_wide(wide / math.sqrt(2))
    return (0.5 * wide * (1 + inner)).astype(x.dtype)


@_float_op("nn.hard_sigmoid", {"alpha": Attr("float", 0.2), "beta": Attr("float", 0.5)})
def hard_sigmoid(x: np.ndarray, *, alpha: float, beta: float) -> np.ndarray:
    """max(0, min(1, alpha·x + beta)) (float16 in float32, rounded once)."""
    wide = float32_if_half(x)
    linear = wide * wide.dtype.type(alpha) + wide.dtype.type(beta)
    return linear.clip(0, 1).astype(x.dtype, copy=False)


@_float_op("nn.hard_swish")
def hard_swish(x: np.ndarray) -> np.ndarray:
    """x · max(0, min(1, x/6 + 1/2)) (float16 in float32, rounded once; −inf · 0 is NaN, as in onnxruntime)."""
    wide = float32_if_half(x)
    with np.errstate(invalid="ignore"):
        return (wide * (wide * wide.dtype.type(1 / 6) + wide.dtype.type(0.5)).clip(0, 1)).astype(x.dtype, copy=False)


@_float_op("nn.mish")
def mish(x: np.ndarray) -> np.ndarray:
    """x · tanh(softplus(x))."""
    wide = x.astype(np.float64)
    return (wide * np.tanh(np.logaddexp(wide, 0.0))).astype(x.dtype)


def _define_quiet(name: str, function, doc: str) -> None:
    """A float op whose numpy function warns at its poles (1/0, log 0), computed with those warnings silenced."""

    def impl(x: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(function(x))

    impl.__doc__ = doc
    _float_op(name)(impl)


_define_quiet("nn.reciprocal", np.reciprocal, "1 / x (±inf at zero).")
_define_quiet("nn.log", np.log, "Natural logarithm (−inf at zero, NaN below).")


@define("nn.hardmax", operands=("x",), infer=_axis_infer, attrs={"axis": Attr("int")})
def hardmax(x: np.ndarray, *, axis: int) -> np.ndarray:
    """1 at the first maximum along `axis`, 0 elsewhere."""
    first = np.argmax(x, axis=axis, keepdims=True)
    positions = np.arange(x.shape[axis]).reshape([-1 if i == axis else 1 for i in range(x.ndim)])
    return (positions == first).astype(x.dtype)
