"""Errors a user can cause. Everything the user can fix is an `RccError`; internal invariants are asserts.

The CLI prints `str(error)` as one line and exits with `error.exit_code`.
"""


class RccError(Exception):
    """A mistake in the user's input (file, model, option); printed as one line, exit code 2."""

    exit_code = 2


class IRParseError(RccError):
    """IR text that does not parse; the message carries file, line and column."""


class VerifyError(RccError):
    """An IR module that breaks an invariant; the message names the offending op."""


class UnsupportedError(RccError):
    """A construct rcc does not handle (an ONNX op, an attribute value); the message names the node."""


def one_line(err: BaseException, limit: int = 300) -> str:
    """An exception's whole message on one line, for wrapping a library's error in an RccError (onnx's
    checker names the node on its last line; tomllib spreads context over several)."""
    text = " ".join(str(err).replace("==>", "").split())
    return text[:limit] if text else err.__class__.__name__
