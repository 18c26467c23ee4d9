"""Graph-level comparisons, boolean logic, selection and dtype conversion: the ops of mask paths.

Comparisons (`nn.equal`, `nn.less`, ...) take two operands of one dtype and give a bool tensor of their
broadcast shape; `nn.logical_and`/`or`/`xor`/`not` take and give bool; `nn.where` picks from two
operands of one dtype by a bool condition (all three broadcast); `nn.cast` converts to any dtype the IR
carries, as onnxruntime's Cast does (floats to integers truncate toward zero, anything non-zero is true).
"""

from __future__ import annotations

import numpy as np

from rcc.ir.ops.narrow_cast import ROUND_MODES, convert
from rcc.ir.optable import Attr, broadcast_shapes, define
from rcc.ir.types import DTYPES, TensorType


def _comparison_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    lhs, rhs = types
    if lhs.dtype != rhs.dtype:
        raise ValueError(f"operand dtypes differ: {lhs.dtype} and {rhs.dtype}")
    return [TensorType(broadcast_shapes(lhs.shape, rhs.shape), "bool")]


def _logic_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    for t in types:
        if t.dtype != "bool":
            raise ValueError(f"operands must be bool tensors, got {t}")
    return [TensorType(broadcast_shapes(*(t.shape for t in types)), "bool")]


def _comparison(name: str, compare, doc: str) -> None:
    def impl(lhs: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        return np.asarray(compare(lhs, rhs))

    impl.__doc__ = doc
    define(name, operands=("lhs", "rhs"), infer=_comparison_infer, tags=("elementwise",))(impl)


def _logic(name: str, combine, doc: str) -> None:
    def impl(lhs: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        return np.asarray(combine(lhs, rhs))

    impl.__doc__ = doc
    define(name, operands=("lhs", "rhs"), infer=_logic_infer, tags=("elementwise",))(impl)


_comparison("nn.equal", np.equal, "lhs == rhs, element-wise with broadcasting (NaN equals nothing).")
_comparison("nn.less", np.less, "lhs < rhs, element-wise with broadcasting.")
_comparison("nn.less_equal", np.less_equal, "lhs ≤ rhs, element-wise with broadcasting.")
_comparison("nn.greater", np.greater, "lhs > rhs, element-wise with broadcasting.")
_comparison("nn.greater_equal", np.greater_equal, "lhs ≥ rhs, element-wise with broadcasting.")
_logic("nn.logical_and", np.logical_and, "lhs and rhs (bool), with broadcasting.")
_logic("nn.logical_or", np.logical_or, "lhs or rhs (bool), with broadcasting.")
_logic("nn.logical_xor", np.logical_xor, "lhs xor rhs (bool), with broadcasting.")


@define("nn.logical_not", operands=("x",), infer=_logic_infer, tags=("elementwise",))
def logical_not(x: np.ndarray) -> np.ndarray:
    """not x (bool)."""
    return np.logical_not(x)


def _where_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    condition, lhs, rhs = types
    if condition.dtype != "bool":
        raise ValueError(f"condition must be a bool tensor, got {condition}")
    if lhs.dtype != rhs.dtype:
        raise ValueError(f"operand dtypes differ: {lhs.dtype} and {rhs.dtype}")
    return [TensorType(broadcast_shapes(condition.shape, lhs.shape, rhs.shape), lhs.dtype)]


@define("nn.where", operands=("condition", "lhs", "rhs"), infer=_where_infer, tags=("elementwise",))
def where(condition: np.ndarray, lhs: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """lhs where condition is true, rhs elsewhere (all three broadcast)."""
    return np.asarray(np.where(condition, lhs, rhs), dtype=lhs.dtype)


def _cast_infer(types: list[TensorType], attrs: dict) -> list[TensorType]:
    if attrs["to"] not in DTYPES:
        raise ValueError(f"cannot cast to {attrs['to']!r}; rcc carries {', '.join(DTYPES)}")
    if attrs.get("round_mode", "up") not in ROUND_MODES or attrs.get("saturate", 1) not in (0, 1):
        raise ValueError(f"round_mode must be one of {ROUND_MODES} and saturate 0 or 1, got {attrs}")
    return [TensorType(types[0].shape, attrs["to"])]


@define("nn.cast", operands=("x",), infer=_cast_infer, tags=("elementwise",),
        attrs={"to": Attr("str"), "saturate": Attr("int", 1), "round_mode": Attr("str", "up")})
def cast(x: np.ndarray, *, to: str, saturate: int = 1, round_mode: str = "up") -> np.ndarray:
    """x converted to dtype `to`: floats to integers truncate toward zero, non-zero (and NaN) is true;
    NaN and out-of-range values give what the CPU's conversion gives, as in onnxruntime. Narrow types
    (`saturate` for float8, `round_mode` for float8 e8m0) convert as `narrow_cast` says."""
    return convert(x, to, bool(saturate), round_mode)
