"""The one op table: for every IR op, its operands, attributes, shape rule, verifier and numpy semantics.

An op is defined once with `define`; the interpreter, constant folding, the verifier, the parser and
the tests all read `OPS`. Operand names ending in `?` are optional (only trailing ones), a name ending
in `*` takes any number of values (only as the last operand).

    @define("nn.relu", operands=("x",), infer=same_as_operand(0))
    def relu(x):
        return np.maximum(x, 0)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rcc.ir.types import TensorType

ATTR_KINDS = ("int", "float", "str", "bool", "ints", "floats")
REQUIRED = object()
DERIVED = object()  # the default is the op's `derive` rule applied to its operand types and other attributes

InferRule = Callable[[list[TensorType], dict[str, Any]], list[TensorType]]
DeriveRule = Callable[[list[TensorType], dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Attr:
    """An attribute's kind (one of ATTR_KINDS) and its default (REQUIRED when it has none, DERIVED when the
    op's `derive` rule computes it)."""

    kind: str
    default: Any = REQUIRED

    def __post_init__(self) -> None:
        assert self.kind in ATTR_KINDS, self.kind


@dataclass(frozen=True)
class OpDef:
    """Everything rcc knows about one op."""

    name: str
    operands: tuple[str, ...]
    attrs: dict[str, Attr]
    infer: InferRule
    impl: Callable[..., Any]
    doc: str = ""
    results: int = 1
    tags: frozenset[str] = field(default_factory=frozenset)
    derive: DeriveRule | None = None  # values of the DERIVED attributes, from operand types and the others

    def operand_count_ok(self, count: int) -> bool:
        required = sum(1 for o in self.operands if not o.endswith(("?", "*")))
        if self.operands and self.operands[-1].endswith("*"):
            return count >= required
        return required <= count <= len(self.operands)

    def run(self, arrays: list[np.ndarray], attrs: dict[str, Any]) -> list[np.ndarray]:
        """Apply the op's semantics; always returns a list of results."""
        out = self.impl(*arrays, **attrs)
        return list(out) if self.results != 1 else [out]


OPS: dict[str, OpDef] = {}


def define(name: str, operands: tuple[str, ...], infer: InferRule, attrs: dict[str, Attr] | None = None,
           results: int = 1, tags: tuple[str, ...] = (), derive: DeriveRule | None = None
           ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated numpy function as the semantics of op `name`."""

    def register(impl: Callable[..., Any]) -> Callable[..., Any]:
        assert name not in OPS, f"op {name} defined twice"
        assert derive is not None or all(a.default is not DERIVED for a in (attrs or {}).values()), name
        OPS[name] = OpDef(name, tuple(operands), dict(attrs or {}), infer, impl,
                          (impl.__doc__ or "").strip(), results, frozenset(tags), derive)
        return impl

    return register


def coerce_attr(kind: str, value: Any) -> Any:
    """Bring an attribute value to its canonical python form; ValueError if it is not of `kind`."""
    if kind == "int" and isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    if kind == "float" and isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return float(value)
    if kind == "str" and isinstance(value, str):
        return value
    if kind == "bool" and isinstance(value, (bool, np.bool_)):
        return bool(value)
    if kind in ("ints", "floats") and isinstance(value, (list, tuple, np.ndarray)):
        return tuple(coerce_attr(kind[:-1], v) for v in value)
    raise ValueError(f"expected {kind}, got {value!r}")


def normalize_attrs(opdef: OpDef, attrs: dict[str, Any], types: list[TensorType] | None = None) -> dict[str, Any]:
    """Fill defaults and coerce kinds; ValueError naming the attribute when one is unknown or wrong.
    DERIVED attributes that are missing are computed from the operand `types` (required for them)."""
    unknown = sorted(set(attrs) - set(opdef.attrs))
    if unknown:
        raise ValueError(f"unknown attribute {unknown[0]!r}")
    out: dict[str, Any] = {}
    missing_derived = []
    for key, spec in opdef.attrs.items():
        if key in attrs:
            try:
                out[key] = coerce_attr(spec.kind, attrs[key])
            except ValueError as err:
                raise ValueError(f"attribute {key!r}: {err}") from None
        elif spec.default is REQUIRED or (spec.default is DERIVED and types is None):
            raise ValueError(f"missing attribute {key!r}")
        elif spec.default is DERIVED:
            missing_derived.append(key)
        else:
            out[key] = spec.default
    if missing_derived:
        derived = opdef.derive(types, out)
        out.update({key: derived[key] for key in missing_derived})
        out = {key: out[key] for key in opdef.attrs}  # the table's order, whatever was derived
    return out


def same_as_operand(index: int = 0) -> InferRule:
    """Shape rule of ops whose one result has the type of operand `index`."""
    return lambda types, attrs: [types[index]]


def broadcast_shapes(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """Numpy broadcasting of static shapes; ValueError when they do not broadcast."""
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*shapes))
    except ValueError:
        raise ValueError(f"shapes {', '.join(str(list(s)) for s in shapes)} do not broadcast") from None
