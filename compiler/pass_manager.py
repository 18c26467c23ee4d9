"""Running pipelines of passes: parse a pipeline spec, run each pass, verify after each, name failures.

A pipeline spec is a comma-separated list of pass names, each optionally with options in braces:
`constant-fold,fold-batch-norm,dce` or `constant-fold{max_elements=1000},dce`.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Sequence
from typing import TextIO

from rcc.compiler.passes import PASSES, Pass
from rcc.ir.core import Module
from rcc.ir.errors import RccError, VerifyError
from rcc.ir.printer import print_module
from rcc.ir.progress import stage
from rcc.ir.verifier import verify

GRAPH_PIPELINE: tuple[str, ...] = ("constant-fold", "fold-batch-norm", "remove-identity", "dce")

_SPEC_ITEM = re.compile(r"\s*([a-z0-9\-]+)\s*(?:\{([^}]*)\})?\s*(?:,|$)")


class PassError(RccError):
    """A pass failed or left the IR invalid; the message names the pass."""


def _option_value(field: dataclasses.Field, text: str):
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "str")
    if kind == "bool":
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(text)
        return text.lower() in ("true", "1")
    return {"int": int, "float": float}.get(kind, str)(text)


def make_pass(name: str, options: dict[str, str] | None = None) -> Pass:
    """An instance of pass `name` with string options converted to the fields' types."""
    cls = PASSES.get(name)
    if cls is None:
        raise RccError(f"unknown pass {name!r}; known passes: {', '.join(sorted(PASSES))}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, text in (options or {}).items():
        if key not in fields:
            raise RccError(f"pass {name!r} has no option {key!r}; options: {', '.join(fields) or 'none'}")
        try:
            values[key] = _option_value(fields[key], text)
        except ValueError:
            raise RccError(f"pass {name!r} option {key!r}: bad value {text!r}") from None
    return cls(**values)


def parse_pipeline(spec: str | Sequence[str]) -> list[Pass]:
    """Passes from a spec string (`a,b{opt=1}`) or a sequence of names."""
    if not isinstance(spec, str):
        return [make_pass(name) for name in spec]
    passes, position = [], 0
    spec = spec.strip()
    while position < len(spec):
        match = _SPEC_ITEM.match(spec, position)
        if not match or match.end() == position:
            raise RccError(f"pipeline {spec!r}: cannot read a pass name at column {position + 1}")
        options = {}
        for item in filter(None, (s.strip() for s in (match.group(2) or "").split(";"))):
            key, sep, value = item.partition("=")
            if not sep:
                raise RccError(f"pipeline {spec!r}: option {item!r} is not key=value")
            options[key.strip()] = value.strip()
        passes.append(make_pass(match.group(1), options))
        position = match.end()
    return passes


def run_pipeline(module: Module, pipeline: str | Sequence[str] | Sequence[Pass], print_after_all: bool = False,
                 stream: TextIO | None = None) -> Module:
    """Run each pass in order, verifying the module after each; PassError names the pass that broke it."""
    passes = pipeline if pipeline and isinstance(pipeline[0], Pass) else parse_pipeline(pipeline)
    for pass_ in passes:
        try:
            with stage(f"pass {pass_.name}"):
                pass_.run(module)
            verify(module)
        except VerifyError as err:
            raise PassError(f"pass {pass_.name!r} left invalid IR: {err}") from None
        except RccError:
            raise
        except Exception as err:
            raise PassError(f"pass {pass_.name!r} failed: {err.__class__.__name__}: {err}") from err
        if print_after_all:
            print(f"// ----- IR after {pass_.name} -----", file=stream or sys.stdout)
            print(print_module(module), file=stream or sys.stdout, end="")
    return module
