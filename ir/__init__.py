"""rcc's intermediate representation: types, values, ops (one table), modules, text form, interpreter."""

from rcc.ir import ops as _ops  # noqa: F401  (fills the op table)
from rcc.ir.builder import Builder, make_op
from rcc.ir.core import Module, Op, Value, modules_equal
from rcc.ir.errors import IRParseError, RccError, UnsupportedError, VerifyError
from rcc.ir.interpreter import run
from rcc.ir.optable import OPS
from rcc.ir.parser import load_module, parse_module
from rcc.ir.printer import print_module, save_module
from rcc.ir.types import TensorType
from rcc.ir.verifier import verify

__all__ = ["Builder", "IRParseError", "Module", "OPS", "Op", "RccError", "TensorType", "UnsupportedError",
           "Value", "VerifyError", "load_module", "make_op", "modules_equal", "parse_module", "print_module",
           "run", "save_module", "verify"]
