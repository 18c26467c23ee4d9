"""Errors a user can cause. Everything the user can fix is an `RccError`; internal invariants are asserts.

The CLI prints `str(error)` as one line and exits with `error.exit_code`; any other exception, an
`InternalError` included, is a bug in rcc: the CLI prints its traceback and exits 3.
"""


class RccError(Exception):
    """A mistake in the user's input (file, model, option); printed as one line, exit code 2."""

    exit_code = 2


class IRParseError(RccError):
    """IR text that does not parse; the message carries file, line and column."""


class VerifyError(RccError):
    """An IR module that breaks an invariant; the message names the offending op. Bad input when the user
    wrote the IR (`rcc opt`); on IR that rcc built, the caller raises an `InternalError` instead."""


class UnsupportedError(RccError):
    """A construct rcc does not handle (an ONNX op, an attribute value); the message names the node."""


class InternalError(AssertionError):
    """A broken invariant of rcc itself, such as IR that the frontend or a pass built failing the verifier:
    never the user's input, so not an RccError (exit 3 with the traceback)."""


def one_line(err: BaseException, limit: int = 300) -> str:
    """An exception's whole message on one line, for wrapping a library's error in an RccError (onnx's
    checker names the node on its last line; tomllib spreads context over several)."""
    text = " ".join(str(err).replace("==>", "").split())
    return text[:limit] if text else err.__class__.__name__
