"""Running pipelines of passes: the default pipeline as data, parsing pipeline specs, running each pass
with a `PassContext`, verifying after each and naming the pass that broke the IR.

A pipeline is a sequence of pass specs (or `Pass` objects); a spec is a pass name with optional options
in braces, and a string may hold several specs separated by commas:
`constant-fold,fold-batch-norm,dce` or `constant-fold{max_elements=1000},pack-crossbars{mode=compact}`.

Only user mistakes reach the user as errors: an `RccError` a pass raises (as it is), or a module that is
invalid before the first pass (its `VerifyError`). IR the verifier rejects after a pass is a bug in that
pass, since its input was valid: a `PassError` naming the pass, which like any other exception propagates
with its traceback (exit 3).
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Sequence
from typing import TextIO, Union

from rcc.compiler.pass_context import DECONV_PASSES, PassContext
from rcc.compiler.passes import PASSES, Pass
from rcc.ir.core import Module
from rcc.ir.errors import InternalError, RccError, VerifyError
from rcc.ir.printer import print_module
from rcc.ir.progress import stage
from rcc.ir.verifier import verify

GRAPH_PIPELINE: tuple[str, ...] = ("fuse-qdq", "constant-fold", "fold-batch-norm", "remove-identity", "dce")
XBAR_PIPELINE: tuple[str, ...] = ("prune-crossbars", "mixed-precision", "lower-to-xbar", "lower-quantized",
                                  "pack-crossbars", "dce", "replicate", "place-attention")


def default_pipeline(deconv: str = "pixelwise", graph: str | Sequence[str] = GRAPH_PIPELINE) -> tuple[str, ...]:
    """The whole compile as data: graph passes, the deconvolution rewrite chosen by `deconv`, pruning (a
    no-op without a budget), per-layer input widths (a no-op without a goal), lowering onto crossbars, packing, dce and the schedule (replication, phases,
    pipelining)."""
    if deconv not in DECONV_PASSES:
        raise RccError(f"--deconv {deconv!r}: choose {' or '.join(DECONV_PASSES)}")
    return (*([graph] if isinstance(graph, str) else graph), DECONV_PASSES[deconv], *XBAR_PIPELINE)


DEFAULT_PIPELINE: tuple[str, ...] = default_pipeline()

PipelineSpec = Union[str, Sequence[Union[str, Pass]]]

_SPEC_ITEM = re.compile(r"\s*([a-z0-9\-]+)\s*(?:\{([^}]*)\})?\s*(?:,|$)")
_OPTION_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


class PassError(InternalError):
    """A pass left the IR invalid (a bug in rcc, never the user's input); the message names the pass."""


def option_fields(cls: type[Pass]) -> dict[str, dataclasses.Field]:
    """The options of a pass: its dataclass fields typed int, float, bool or str (optionally `| None`)."""
    return {f.name: f for f in dataclasses.fields(cls) if f.init and _option_type(f) is not None}


def _option_type(field: dataclasses.Field) -> type | None:
    annotation = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
    return _OPTION_TYPES.get(annotation.removesuffix(" | None"))


def _option_value(name: str, field: dataclasses.Field, text: str):
    kind = _option_type(field)
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            value = text.lower() in ("true", "1")
        else:
            value = kind(text)
    except ValueError:
        raise RccError(f"pass {name!r} option {field.name!r}: bad value {text!r} ({kind.__name__})") from None
    _check_choice(name, field, value)
    return value


def _check_choice(name: str, field: dataclasses.Field, value) -> None:
    choices = field.metadata.get("choices")
    if choices is not None and value is not None and value not in choices:
        raise RccError(f"pass {name!r} option {field.name!r}: {value!r} is not one of {', '.join(map(str, choices))}")


def check_options(pass_: Pass) -> None:
    """RccError when an option of a pass object built in Python holds a value outside its choices."""
    for field in option_fields(type(pass_)).values():
        _check_choice(pass_.name, field, getattr(pass_, field.name))


def make_pass(name: str, options: dict[str, str] | None = None) -> Pass:
    """An instance of pass `name` with string options converted to the options' types."""
    cls = PASSES.get(name)
    if cls is None:
        raise RccError(f"unknown pass {name!r}; known passes: {', '.join(sorted(PASSES))}")
    fields = option_fields(cls)
    values = {}
    for key, text in (options or {}).items():
        if key not in fields:
            raise RccError(f"pass {name!r} has no option {key!r}; options: {', '.join(fields) or 'none'}")
        values[key] = _option_value(name, fields[key], text)
    return cls(**values)


def _parse_spec(spec: str) -> list[Pass]:
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


def parse_pipeline(spec: PipelineSpec) -> list[Pass]:
    """Pass objects from a spec string (`a,b{opt=1}`) or a sequence of specs and `Pass` objects."""
    if isinstance(spec, str):
        return _parse_spec(spec)
    passes: list[Pass] = []
    for item in spec:
        if isinstance(item, Pass):
            check_options(item)
            passes.append(item)
        else:
            passes.extend(_parse_spec(item))
    return passes


def run_pipeline(module: Module, pipeline: PipelineSpec, ctx: PassContext | None = None,
                 print_after_all: bool = False, stream: TextIO | None = None) -> Module:
    """Run each pass in order with `ctx` (a default `PassContext` when None), recording its report there
    and verifying the module before the first and after each; VerifyError when `module` is invalid as given,
    PassError naming the pass that broke the IR."""
    ctx = PassContext() if ctx is None else ctx
    passes = parse_pipeline(pipeline)
    verify(module)  # so that a verifier error after a pass is that pass's
    for pass_ in passes:
        report = ctx.begin(pass_.name)
        try:
            with stage(f"pass {pass_.name}"):
                changed = pass_.run(module, ctx)
            verify(module)
        except VerifyError as err:
            raise PassError(f"pass {pass_.name!r} left invalid IR: {err}") from err
        assert isinstance(changed, bool), f"pass {pass_.name!r} returned {changed!r}, not whether it changed the IR"
        report.changed = changed
        if print_after_all:
            print(f"// ----- IR after {pass_.name} -----", file=stream or sys.stdout)
            print(print_module(module), file=stream or sys.stdout, end="")
    return module
