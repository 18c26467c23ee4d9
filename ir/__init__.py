"""rcc's intermediate representation: types, values, ops (one table), modules, text form, interpreter.

The text form (lark) and the interpreter are imported when first used (PEP 562 `__getattr__`), so code
that only runs programs (`rcc run`) starts without them.
"""

import importlib

from rcc.ir import ops as _ops  # noqa: F401  (fills the op table)
from rcc.ir.builder import Builder, make_op
from rcc.ir.core import Module, Op, Value, modules_equal
from rcc.ir.errors import IRParseError, RccError, UnsupportedError, VerifyError
from rcc.ir.optable import OPS
from rcc.ir.types import TensorType
from rcc.ir.verifier import verify

_ON_FIRST_USE = {"run": "rcc.ir.interpreter", "load_module": "rcc.ir.parser", "parse_module": "rcc.ir.parser",
                 "print_module": "rcc.ir.printer", "save_module": "rcc.ir.printer"}

__all__ = ["Builder", "IRParseError", "Module", "OPS", "Op", "RccError", "TensorType", "UnsupportedError",
           "Value", "VerifyError", "load_module", "make_op", "modules_equal", "parse_module", "print_module",
           "run", "save_module", "verify"]


def __getattr__(name: str):
    if name not in _ON_FIRST_USE:
        raise AttributeError(f"module 'rcc.ir' has no attribute {name!r}")
    return getattr(importlib.import_module(_ON_FIRST_USE[name]), name)
