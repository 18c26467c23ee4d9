"""The parser of the textual IR: lark grammar `grammar.lark`, one transformer method per rule."""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path

import lark
import numpy as np

from rcc.ir.core import Module, Op, Value
from rcc.ir.errors import IRParseError
from rcc.ir.limits import load_npz, read_bounded, regular_file_problem
from rcc.ir.optable import OPS, coerce_attr, normalize_attrs
from rcc.ir.printer import weights_path
from rcc.ir.types import DTYPES, TensorType, from_storage
from rcc.ir.verifier import verify


@cache
def _lark() -> lark.Lark:
    grammar = (Path(__file__).parent / "grammar.lark").read_text()
    return lark.Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=True)


def _name(token: lark.Token) -> str:
    text = token[1:]
    return json.loads(text) if text.startswith('"') else text


class _SemanticError(Exception):
    def __init__(self, token: lark.Token | None, message: str) -> None:
        super().__init__(message)
        self.token = token


class _ToModule(lark.Transformer):
    """Builds a Module; names resolve in definition order, so a use before definition is an error."""

    def __init__(self, weights: dict[str, np.ndarray] | None) -> None:
        super().__init__()
        self.weights = weights
        self.values: dict[str, Value] = {}
        self.module = Module("")

    def _lookup(self, token: lark.Token) -> Value:
        value = self.values.get(_name(token))
        if value is None:
            raise _SemanticError(token, f"value {token} is not defined before this use")
        return value

    def _define(self, token: lark.Token, value: Value) -> Value:
        if value.name in self.values:
            raise _SemanticError(token, f"value {token} is defined twice")
        self.values[value.name] = value
        return value

    # literals
    def int(self, items):
        return int(items[0])

    def float(self, items):
        return float(items[0])

    def string(self, items):
        return json.loads(items[0])

    def true(self, items):
        return True

    def false(self, items):
        return False

    def list(self, items):
        return [] if items == [None] else list(items)

    def type(self, items):
        dtype, *dims = items
        return TensorType(tuple(int(d) for d in dims if d is not None), str(dtype))

    def attr(self, items):
        return (str(items[0]), items[1])

    def attrs(self, items):
        return [item for item in items if item is not None]

    # statements
    def default(self, items):
        return ("default", items[0])

    def input(self, items):
        token, type_, default = items
        if _name(token) in self.module.baked_inputs:
            raise _SemanticError(token, f"input {token} is also listed as baked (compiled in, so not an input)")
        self.module.inputs.append(self._define(token, Value(_name(token), type_)))
        if default is not None:
            self.module.input_defaults[_name(token)] = self._data(token, type_, default[1], "the default of input")

    def baked(self, items):
        inputs = {value.name for value in self.module.inputs}
        for token in items:
            name = _name(token)
            if name in inputs or name in self.module.baked_inputs:
                raise _SemanticError(token, f"baked {token} is {'an input' if name in inputs else 'listed twice'}: "
                                            f"a baked input was compiled in and is listed once")
            self.module.baked_inputs.append(name)

    def const(self, items):
        token, type_, inline = items
        data = self._data(token, type_, inline, "constant")
        self.module.constants.append(self._define(token, Value(_name(token), type_, data=data)))

    def _data(self, token: lark.Token, type_: TensorType, inline: list | None, what: str) -> np.ndarray:
        """The array of a constant or an input's default: inline, or from the weights file by name."""
        name = _name(token)
        if inline is not None:
            try:
                data = np.array(inline, dtype=DTYPES[type_.dtype]).reshape(type_.shape)
            except (ValueError, TypeError, OverflowError):
                raise _SemanticError(token, f"inline data of {token} does not fit {type_}") from None
        elif self.weights is None or name not in self.weights:
            raise _SemanticError(token, f"no data for {what} {token} in the weights file")
        else:
            data = from_storage(self.weights[name], type_.dtype)
            if data.shape != type_.shape or data.dtype != type_.np_dtype:
                raise _SemanticError(token, f"weights file holds {TensorType.of(data)} for {token}, "
                                            f"the text says {type_}")
        return np.asarray(data, order="C")

    def output(self, items):
        self.module.outputs.extend(self._lookup(token) for token in items)

    def op(self, items):
        opname_at = next(i for i, item in enumerate(items) if isinstance(item, lark.Token) and item.type == "OPNAME")
        result_tokens, opname = items[:opname_at], items[opname_at]
        rest = items[opname_at + 1:]
        operand_tokens = [t for t in rest if isinstance(t, lark.Token) and t.type == "VALUE"]
        attr_list = next((r for r in rest if isinstance(r, list)), None) or []
        types = [r for r in rest if isinstance(r, TensorType)]
        if len(types) != len(result_tokens):
            raise _SemanticError(opname, f"{len(result_tokens)} results but {len(types)} types")
        attrs = dict(attr_list)
        opdef = OPS.get(str(opname))
        if opdef is None:
            raise _SemanticError(opname, f"unknown op {opname}")
        for key, value in attrs.items():
            spec = opdef.attrs.get(key)
            if spec is None:
                raise _SemanticError(opname, f"{opname} has no attribute {key!r}")
            try:
                attrs[key] = coerce_attr(spec.kind, value)
            except ValueError as err:
                raise _SemanticError(opname, f"{opname} attribute {key!r}: {err}") from None
        operands = [self._lookup(t) for t in operand_tokens]
        if opdef.operand_count_ok(len(operands)):  # else the verifier names the operand count
            try:  # fill the defaults (and derived attributes) a fixture leaves out
                attrs = normalize_attrs(opdef, attrs, [v.type for v in operands])
            except ValueError as err:
                raise _SemanticError(opname, f"{opname}: {err}") from None
        op = Op(str(opname), operands, types, [_name(t) for t in result_tokens], attrs)
        for token, result in zip(result_tokens, op.results):
            self._define(token, result)
        self.module.ops.append(op)

    def start(self, items):
        self.module.name = str(items[0])[1:]
        return self.module


def parse_module(text: str, weights: dict[str, np.ndarray] | None = None, filename: str = "<text>") -> Module:
    """Parse IR text (constants not inlined come from `weights`) and verify it; IRParseError/VerifyError."""
    try:
        tree = _lark().parse(text)
    except RecursionError:
        raise IRParseError(f"{filename}: nested too deeply to read") from None
    except lark.exceptions.UnexpectedInput as err:
        found = getattr(err, "token", None) or getattr(err, "char", None)
        what = f"unexpected {str(found)!r}" if found else "unexpected end of input"
        raise IRParseError(f"{filename}:{err.line}:{err.column}: syntax error: {what}") from None
    try:
        module = _ToModule(weights).transform(tree)
    except RecursionError:
        raise IRParseError(f"{filename}: nested too deeply to read") from None
    except lark.exceptions.VisitError as err:
        cause = err.orig_exc
        if isinstance(cause, _SemanticError):
            where = f"{cause.token.line}:{cause.token.column}" if cause.token is not None else "?"
            raise IRParseError(f"{filename}:{where}: {cause}") from None
        raise
    verify(module)
    return module


def load_weights(path: str | os.PathLike) -> dict[str, np.ndarray] | None:
    npz = weights_path(path)
    if not npz.exists():
        return None
    return load_npz(npz, "weights")


def load_module(path: str | os.PathLike) -> Module:
    """Read IR text from `path` and its weights from the .npz beside it."""
    path = Path(path)
    problem = regular_file_problem(path)
    if problem:
        raise IRParseError(f"{path}: {problem}")
    try:
        text = read_bounded(path, "IR text").decode()
    except FileNotFoundError:
        raise IRParseError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise IRParseError(f"{path}: cannot read IR text ({err.__class__.__name__})") from None
    return parse_module(text, load_weights(path), str(path))
