"""What a pass is: a small named object with its options as dataclass fields.

`run(module, ctx)` rewrites the module in place and returns whether it changed anything; it reads the
compile settings from the `PassContext` and writes what it did into `ctx.report`. Options are plain
configuration (int, float, bool or str fields, optionally `| None` for "take it from the context"; a
field's `metadata={"choices": (...)}` lists the values allowed), settable from a pipeline spec
`name{key=value;...}`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rcc.compiler.pass_context import PassContext
from rcc.ir.core import Module


@dataclass
class Pass:
    name: ClassVar[str] = ""

    def run(self, module: Module, ctx: PassContext) -> bool:
        raise NotImplementedError
