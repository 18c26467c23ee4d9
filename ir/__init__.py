"""rcc's intermediate representation: types, values, ops (one table), modules, text form, interpreter."""

from ir import ops as _ops  # noqa: F401  (fills the op table)
from ir.builder import Builder, make_op
from ir.core import Module, Op, Value, modules_equal
from ir.errors import IRParseError, RccError, UnsupportedError, VerifyError
from ir.interpreter import run
from ir.optable import OPS
from ir.parser import load_module, parse_module
from ir.printer import print_module, save_module
from ir.types import TensorType
from ir.verifier import verify

__all__ = ["Builder", "IRParseError", "Module", "OPS", "Op", "RccError", "TensorType", "UnsupportedError",
           "Value", "VerifyError", "load_module", "make_op", "modules_equal", "parse_module", "print_module",
           "run", "save_module", "verify"]
