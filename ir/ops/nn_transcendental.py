"""Graph-level float activations of transformers and mobile networks: erf, GELU (exact and tanh), hard
sigmoid, hard swish, mish, reciprocal, natural logarithm, and hardmax (one-hot of the first maximum).

All are float-only as in ONNX; computed in float64 where float32 would round differently from
onnxruntime's kernels, then brought back to the operand's dtype.
"""

from __future__ import annotations

import math

import numpy as np

from rcc.ir.ops.nn_activation import _float_infer, _float_op  # the float-only shape rule and decorator
from rcc.ir.ops.nn_elementwise import _axis_infer
from rcc.ir.optable import Attr, define
from rcc.ir.types import TensorType

_erf = np.frompyfunc(math.erf, 1, 1)
SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


def erf_wide(x: np.ndarray) -> np.ndarray:
    """The error function of `x` in float64 (numpy has none; math.erf is exact to a float64 ulp)."""
    return np.asarray(_erf(np.asarray(x, np.float64)), dtype=np.float64)


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
    """max(0, min(1, alpha·x + beta))."""
    linear = x * x.dtype.type(alpha) + x.dtype.type(beta)
    return np.clip(linear, 0, 1).astype(x.dtype)


@_float_op("nn.hard_swish")
def hard_swish(x: np.ndarray) -> np.ndarray:
    """x · max(0, min(1, x/6 + 1/2))."""
    return (x * np.clip(x * x.dtype.type(1 / 6) + x.dtype.type(0.5), 0, 1)).astype(x.dtype)


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
